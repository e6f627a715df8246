"""Builders of hostile and broken repository content, made from bytes by the tests (never downloaded)."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

# ------------------------------------------------------------------------------------------ pickles

PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."
TUPLE1 = b"\x85"
REDUCE = b"R"


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _short_binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def global_call(module: str, name: str, arg: str) -> bytes:
    """`module.name(arg)` via GLOBAL + REDUCE (protocol 2)."""
    return PROTO2 + f"c{module}\n{name}\n".encode() + _binunicode(arg) + TUPLE1 + REDUCE + STOP


def stack_global_call(module: str, name: str, arg: str) -> bytes:
    """`module.name(arg)` via STACK_GLOBAL (protocol 4), operands memoized as the pickler does."""
    return (
        PROTO4
        + _short_binunicode(module)
        + b"\x94"
        + _short_binunicode(name)
        + b"\x94"
        + b"\x93"
        + b"\x94"
        + _short_binunicode(arg)
        + b"\x94"
        + TUPLE1
        + REDUCE
        + STOP
    )


def stack_global_via_memo(module: str, name: str, arg: str) -> bytes:
    """STACK_GLOBAL whose operands come back from the memo (BINPUT/POP then BINGET): harder to track."""
    return (
        PROTO4
        + _short_binunicode(module)
        + b"q\x00"  # BINPUT 0
        + b"0"  # POP
        + _short_binunicode(name)
        + b"q\x01"  # BINPUT 1
        + b"0"
        + b"h\x00"  # BINGET 0
        + b"h\x01"  # BINGET 1
        + b"\x93"
        + _short_binunicode(arg)
        + TUPLE1
        + REDUCE
        + STOP
    )


def inst_call(module: str, name: str, arg: str) -> bytes:
    """`module.name(arg)` via INST (protocol 0 text opcodes)."""
    return b"(" + f"V{arg}\n".encode() + f"i{module}\n{name}\n".encode() + STOP


def torch_zip(
    data_pkl: bytes, *, member: str = "archive/data.pkl", compress: bool = False, data_size: int = 64
) -> bytes:
    """A torch-style zip checkpoint whose pickle member is `data_pkl` (plus the usual small members)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr(member, data_pkl)
        archive.writestr("archive/byteorder", b"little")
        archive.writestr("archive/data/0", b"\x00" * data_size)
        archive.writestr("archive/version", b"3\n")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ numpy


def npy(descr: str, payload: bytes, *, shape: str = "(1,)", version: int = 1) -> bytes:
    """An .npy file: magic, version, a padded header dict naming `descr`, then `payload` as the data."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    preamble = 10 if version == 1 else 12
    header += " " * ((64 - (preamble + len(header) + 1) % 64) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin-1") + payload


def npz(members: Mapping[str, bytes], *, compress: bool = False) -> bytes:
    """An .npz archive (a zip of .npy members), as numpy.savez / savez_compressed write it."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ safetensors


def safetensors_bytes(
    tensors: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    data_size: int | None = None,
    metadata: Any = None,
    header: bytes | None = None,
    claimed_length: int | None = None,
) -> bytes:
    """A safetensors file from an explicit header (which may lie), followed by `data_size` zero bytes."""
    if header is None:
        body: dict[str, Any] = {}
        if metadata is not None:
            body["__metadata__"] = metadata
        body.update(tensors or {})
        header = json.dumps(body).encode()
    if data_size is None:
        ends = [int(t["data_offsets"][1]) for t in (tensors or {}).values() if "data_offsets" in t]
        data_size = max(ends, default=0)
    length = len(header) if claimed_length is None else claimed_length
    return struct.pack("<Q", length) + header + b"\x00" * data_size


def tensor(dtype: str, shape: Sequence[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}
