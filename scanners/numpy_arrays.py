"""Numpy arrays a repository carries (`.npy`, `.npz`: mel filters, speaker embeddings, preprocessor tables).

A numeric array is data. An array of Python objects (dtype `O`, alone or inside a structured dtype) stores its
data as a pickle, which `numpy.load(..., allow_pickle=True)` would run: it is a `format.numpy-object` finding
(a maintainer reviews it) and its pickle's imports are reported like any pickle's (`pickle.*`, a dangerous
import rejects). Nothing is loaded: the `.npy` header (magic, version, a Python-literal dict) is read by range
and matched as text, never evaluated; `.npz` archives are read through their zip directory, member by member
(at most `MAX_MEMBERS`; more is a `pickle.unscanned` finding), within the byte budget.
"""

from __future__ import annotations

import re
import struct
import zlib

from registry import finding_codes as codes
from registry.schema import Finding, Severity
from scanners import pickles
from scanners.paths import display_path

SCANNER = "numpy"
NUMPY_SUFFIXES = (".npy", ".npz")
MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 65_536
MAX_MEMBERS = 32
_OBJECT_DESCR = re.compile(r"""['"][|<>=]?O\d*['"]""")


class _NotNumpy(Exception):
    """The bytes do not start with a well-formed .npy header."""


def is_numpy_path(path: str) -> bool:
    return path.lower().endswith(NUMPY_SUFFIXES)


def numpy_files(paths: list[str]) -> list[str]:
    return sorted(p for p in paths if is_numpy_path(p))


def parse_header(head: bytes) -> tuple[str, int]:
    """(header text, offset of the array data) of an .npy file from its first bytes; raises _NotNumpy."""
    if head[:6] != MAGIC or len(head) < 10:
        raise _NotNumpy("no .npy magic")
    major = head[6]
    if major == 1:
        (length,), start = struct.unpack_from("<H", head, 8), 10
    elif major in (2, 3):
        if len(head) < 12:
            raise _NotNumpy("truncated .npy preamble")
        (length,), start = struct.unpack_from("<I", head, 8), 12
    else:
        raise _NotNumpy(f".npy format version {major} is unknown")
    if length > MAX_HEADER_BYTES or start + length > len(head):
        raise _NotNumpy(f".npy header of {length} bytes is out of bounds")
    text = head[start : start + length].decode("latin-1")
    if "descr" not in text:
        raise _NotNumpy(".npy header names no dtype")
    return text, start + length


def _object_findings(path: str, where: str, payload: bytes, truncated: bool) -> list[Finding]:
    shown = display_path(path)
    finding = Finding(
        scanner=SCANNER,
        code=codes.FORMAT_NUMPY_OBJECT,
        severity=Severity.MEDIUM,
        message=f"{shown}{where} is a numpy array of Python objects: its data is a pickle that "
        "numpy.load(allow_pickle=True) would run; it is never loaded here, a maintainer must review it",
        path=shown,
    )
    return [finding, *pickles.scan_pickle_bytes(path, payload, truncated=truncated, where=where)]


def _scan_npy(path: str, data: bytes, *, truncated: bool, where: str = "") -> list[Finding]:
    text, offset = parse_header(data)
    if not _OBJECT_DESCR.search(text):
        return []
    return _object_findings(path, where, data[offset:], truncated)


def _member_prefix(read: pickles.RangeReader, member: pickles.ZipMember, size: int, limit: int) -> bytes:
    """Up to `limit` bytes from the start of one member (stored or deflated)."""
    header = read(member.local_offset, 30)
    if header[:4] != pickles.ZIP_MAGIC:
        raise pickles.MalformedArchive("bad local file header")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    start = member.local_offset + 30 + name_len + extra_len
    raw = read(start, min(member.compressed_size, limit, max(0, size - start)))
    if member.method == 0:
        return raw
    if member.method == 8:
        try:
            return zlib.decompressobj(-15).decompress(raw, limit)
        except zlib.error as exc:
            raise pickles.MalformedArchive(f"{member.name}: bad deflate data ({exc})") from exc
    raise pickles.MalformedArchive(f"{member.name} uses zip compression method {member.method}")


def _scan_npz(path: str, size: int, read: pickles.RangeReader, budget: int) -> list[Finding]:
    members = [m for m in pickles.read_zip_directory(read, size, budget=budget) if m.name.endswith(".npy")]
    found: list[Finding] = []
    for member in members[:MAX_MEMBERS]:
        where = f" [{display_path(member.name)}]"
        data = _member_prefix(read, member, size, min(budget, MAX_HEADER_BYTES + 16))
        text, _ = parse_header(data)
        if _OBJECT_DESCR.search(text):
            whole = pickles.read_zip_member(read, member, size, budget=budget) if member.size <= budget else data
            found += _scan_npy(path, whole, truncated=member.size > budget, where=where)
    if len(members) > MAX_MEMBERS:
        shown = display_path(path)
        found.append(
            Finding(
                scanner=SCANNER,
                code=codes.PICKLE_UNSCANNED,
                severity=Severity.MEDIUM,
                message=f"{shown} holds {len(members)} arrays; only the first {MAX_MEMBERS} were inspected: it is "
                "never loaded, but a maintainer must review the rest",
                path=shown,
            )
        )
    return found


def _malformed(path: str, why: str) -> Finding:
    shown = display_path(path)
    return Finding(
        scanner=SCANNER,
        code=codes.PICKLE_MALFORMED,
        severity=Severity.MEDIUM,
        message=f"{shown} is not a readable numpy file ({display_path(why)}); it is never loaded, but a "
        "maintainer must review it",
        path=shown,
    )


def scan_numpy_file(
    path: str, size: int | None, read: pickles.RangeReader, *, budget: int = pickles.DEFAULT_BUDGET
) -> list[Finding]:
    """Findings for one .npy / .npz file read through `read(start, length)` within `budget` bytes."""
    try:
        if path.lower().endswith(".npz"):
            if not size:
                return [_malformed(path, "the Hub gave no size for the archive")]
            return _scan_npz(path, size, read, budget)
        head = read(0, min(size or budget, MAX_HEADER_BYTES + 16))
        text, _ = parse_header(head)
        if not _OBJECT_DESCR.search(text):
            return []
        whole = read(0, min(size or budget, budget))
        return _scan_npy(path, whole, truncated=size is None or size > budget)
    except (_NotNumpy, pickles.MalformedArchive) as exc:
        return [_malformed(path, str(exc))]
