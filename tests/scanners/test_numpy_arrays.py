"""Numpy files in repositories (scanners/numpy_arrays.py): numeric arrays are data, object arrays are pickles."""

from __future__ import annotations

import io

import numpy as np

from registry import finding_codes as codes
from scanners.numpy_arrays import MAX_MEMBERS, parse_header, scan_numpy_file
from tests.scanners.hostile import global_call, npy, npz


class Reads:
    """A range reader over bytes that counts what it served."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.served = 0

    def __call__(self, start: int, length: int) -> bytes:
        chunk = self.data[start : start + length]
        self.served += len(chunk)
        return chunk


def _scan(name: str, data: bytes, budget: int = 1 << 20) -> tuple[set[str], Reads]:
    reads = Reads(data)
    return {f.code for f in scan_numpy_file(name, len(data), reads, budget=budget)}, reads


def test_numeric_arrays_written_by_numpy_are_data() -> None:
    plain, compressed = io.BytesIO(), io.BytesIO()
    np.save(plain, np.zeros((300, 80), dtype=np.float32))
    np.savez_compressed(compressed, mel_80=np.ones((80, 201), dtype=np.float32), mel_128=np.ones(3))
    found, reads = _scan("mel.npy", plain.getvalue())
    assert found == set() and reads.served < 70_000  # the header only, never the 96 KB of data
    assert _scan("mel_filters.npz", compressed.getvalue())[0] == set()


def test_an_object_array_saved_by_numpy_needs_review() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"speaker": 1}, None], dtype=object), allow_pickle=True)
    found, _ = _scan("speakers.npy", buffer.getvalue())
    assert codes.FORMAT_NUMPY_OBJECT in found and codes.PICKLE_DANGEROUS_IMPORT not in found


def test_a_planted_object_array_is_a_dangerous_pickle_in_every_container() -> None:
    payload = npy("|O", global_call("os", "system", "touch /tmp/never"))
    assert {codes.FORMAT_NUMPY_OBJECT, codes.PICKLE_DANGEROUS_IMPORT} <= _scan("x.npy", payload)[0]
    v2 = npy("|O", global_call("subprocess", "call", "x"), version=2)
    assert codes.PICKLE_DANGEROUS_IMPORT in _scan("x.npy", v2)[0]
    for compress in (False, True):
        archive = npz({"a.npy": npy("<f8", b"\x00" * 8), "b.npy": payload}, compress=compress)
        assert codes.PICKLE_DANGEROUS_IMPORT in _scan("x.npz", archive)[0]


def test_headers_are_matched_never_evaluated_and_bounded() -> None:
    text, offset = parse_header(npy("<f4", b""))
    assert "'descr': '<f4'" in text and offset % 64 == 0
    hostile = npy("<f4", b"", shape="__import__('os').system('touch /tmp/never')")
    assert _scan("x.npy", hostile)[0] == set()  # a literal to match, not code to run
    assert _scan("x.npy", b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 100)[0] == {codes.PICKLE_MALFORMED}
    assert _scan("x.npy", b"\x93NUMPY\x09\x00")[0] == {codes.PICKLE_MALFORMED}
    assert _scan("x.npz", b"PK not really a zip")[0] == {codes.PICKLE_MALFORMED}


def test_an_npz_is_read_member_by_member_within_the_budget() -> None:
    members = {f"m{i}.npy": npy("<f4", b"\x00" * 4096) for i in range(MAX_MEMBERS + 4)}
    members["zz.npy"] = npy("|O", global_call("os", "system", "x"))  # past MAX_MEMBERS: not read, but said
    found, reads = _scan("many.npz", npz(members))
    assert found == {codes.PICKLE_UNSCANNED} and reads.served < 200_000
    assert _scan("few.npz", npz(dict(list(members.items())[:MAX_MEMBERS])))[0] == set()
    big = npz({"big.npy": npy("|O", global_call("os", "system", "x") + b"\x00" * 50_000)})
    found, _ = _scan("big.npz", big, budget=20_000)  # the object member is over the budget: header only
    assert codes.FORMAT_NUMPY_OBJECT in found
