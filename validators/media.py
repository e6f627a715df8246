"""Small generated media for the conformance checks and benchmarks: a WAV chirp and solid-colour PNGs.

Pure functions of their arguments (standard library only, no randomness), so every run sends the same bytes.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
import zlib

SAMPLE_RATE = 16_000


def chirp_wav(
    seconds: float = 2.0, *, rate: int = SAMPLE_RATE, start_hz: float = 220.0, end_hz: float = 880.0
) -> bytes:
    """A mono 16-bit PCM WAV: a linear chirp from `start_hz` to `end_hz` at 0.3 full scale."""
    frames = max(1, int(seconds * rate))
    sweep = (end_hz - start_hz) / (2 * seconds)
    times = (i / rate for i in range(frames))
    samples = (int(0.3 * 32767 * math.sin(2 * math.pi * (start_hz * t + sweep * t * t))) for t in times)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def wav_seconds(data: bytes) -> float:
    """The duration of a PCM WAV (as written by `chirp_wav`)."""
    with wave.open(io.BytesIO(data), "rb") as source:
        return source.getnframes() / source.getframerate()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def solid_png(width: int = 48, height: int = 40, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """An 8-bit RGB PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * height, 9))
        + _chunk(b"IEND", b"")
    )


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
