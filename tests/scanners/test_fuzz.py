"""Hostile bytes never crash a scanner: every input ends as findings (or none), never as an exception."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from registry.settings import load_settings
from scanners.licenses import scan_licenses
from scanners.paths import check_path, display_path
from scanners.pickles import scan_pickle_file
from scanners.remote_code import scan_remote_code
from scanners.safetensors_headers import check_index, scan_safetensors_file

POLICY = load_settings().licenses


def _read(data: bytes):
    return lambda start, length: data[start : start + length]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_pickle_scanner_never_raises(data: bytes) -> None:
    for prefix in (b"", b"\x80\x02", b"PK\x03\x04", b"\x80\x04\x95"):
        blob = prefix + data
        assert isinstance(scan_pickle_file("x.bin", len(blob), _read(blob), budget=4096), list)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1024), st.integers(min_value=0, max_value=2**64 - 1))
def test_safetensors_scanner_never_raises(header: bytes, claimed: int) -> None:
    for length in (claimed, len(header)):
        blob = struct.pack("<Q", length) + header
        scan = scan_safetensors_file("m.safetensors", len(blob), _read(blob), max_header_bytes=100_000_000)
        assert scan.ok or scan.findings


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_json_shaped_garbage_in_configs_and_index(value: object) -> None:
    import json

    raw = json.dumps({"auto_map": value, "weight_map": value, "dtype": value}).encode()
    assert isinstance(scan_remote_code([], {"config.json": raw}, {}, None), list)
    assert isinstance(check_index("model.safetensors.index.json", raw, {}, set()), list)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.text(max_size=80), st.lists(st.text(max_size=20), max_size=3), st.integers()),
    st.text(max_size=300),
    st.binary(max_size=300),
)
def test_licence_scanner_never_raises(declared: object, readme: str, license_text: bytes) -> None:
    result = scan_licenses({"license": declared, "license_name": "x"}, readme, {"LICENSE": license_text}, POLICY)
    assert result.findings


@given(st.text(max_size=400))
def test_paths_are_always_displayable(name: str) -> None:
    check_path(name)
    shown = display_path(name)
    assert shown.isascii() and shown.isprintable() and len(shown) <= 160
