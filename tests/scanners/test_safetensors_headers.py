from __future__ import annotations

import struct

import pytest

from registry import finding_codes as codes
from scanners.safetensors_headers import (
    check_index,
    estimate_parameters,
    parameter_findings,
    scan_safetensors_file,
)
from tests.fixtures.hub import tiny_safetensors
from tests.scanners.hostile import safetensors_bytes, tensor


def _scan(data: bytes, *, size: int | None = None, max_header: int = 100_000_000):
    reads: list[tuple[int, int]] = []

    def read(start: int, length: int) -> bytes:
        reads.append((start, length))
        return data[start : start + length]

    scan = scan_safetensors_file(
        "model.safetensors", len(data) if size is None else size, read, max_header_bytes=max_header
    )
    return scan, reads


def _codes(data: bytes, **kwargs) -> list[str]:
    scan, _ = _scan(data, **kwargs)
    return [f.code for f in scan.findings]


def test_valid_file_counts_parameters_and_reads_only_the_header() -> None:
    data = tiny_safetensors()
    scan, reads = _scan(data)
    assert scan.ok and scan.findings == []
    assert scan.total_parameters == 200
    assert scan.parameters == {"F32": 128, "F16": 72}
    header_len = struct.unpack("<Q", data[:8])[0]
    assert reads == [(0, 8), (8, header_len)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (
            safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, claimed_length=100_000_001),
            codes.ST_HEADER_TOO_LARGE,
        ),
        (
            safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, claimed_length=5000),
            codes.ST_HEADER_BEYOND_FILE,
        ),
        (b"\x10\x00\x00", codes.ST_HEADER_TRUNCATED),
        (safetensors_bytes(header=b"{not json at all"), codes.ST_HEADER_INVALID),
        (safetensors_bytes(header=b'["a list"]'), codes.ST_HEADER_INVALID),
        (
            safetensors_bytes(
                header=b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                data_size=4,
            ),
            codes.ST_HEADER_INVALID,
        ),
        (safetensors_bytes({"a": tensor("F128", [4], 0, 64)}), codes.ST_UNKNOWN_DTYPE),
        (safetensors_bytes({"a": tensor("F32", [4, 4], 0, 32)}), codes.ST_SHAPE_MISMATCH),
        (
            safetensors_bytes({"a": tensor("F32", [8], 0, 32), "b": tensor("F32", [8], 16, 48)}),
            codes.ST_OVERLAP,
        ),
        (safetensors_bytes({"a": tensor("F32", [4], 0, 16), "b": tensor("F32", [4], 32, 48)}), codes.ST_GAP),
        (safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, data_size=40), codes.ST_GAP),
        (safetensors_bytes({"a": tensor("F32", [64], 0, 256)}, data_size=16), codes.ST_OFFSET_OUT_OF_RANGE),
        (
            safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, metadata={"format": 1}),
            codes.ST_METADATA_INVALID,
        ),
        (safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, metadata=["x"]), codes.ST_METADATA_INVALID),
        (
            safetensors_bytes({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}),
            codes.ST_HEADER_INVALID,
        ),
        (safetensors_bytes({"a": tensor("F32", [4], 16, 0)}), codes.ST_OFFSET_OUT_OF_RANGE),
    ],
    ids=[
        "100MB-claim",
        "beyond-file",
        "truncated",
        "not-json",
        "not-object",
        "duplicate-keys",
        "unknown-dtype",
        "shape-lies",
        "overlap",
        "gap",
        "trailing-bytes",
        "out-of-range",
        "metadata-int",
        "metadata-list",
        "negative-dim",
        "reversed-offsets",
    ],
)
def test_broken_headers(data: bytes, code: str) -> None:
    assert code in _codes(data)


def test_oversized_claim_is_not_read() -> None:
    data = safetensors_bytes({"a": tensor("F32", [4], 0, 16)}, claimed_length=100_000_000)
    scan, reads = _scan(data, max_header=1000)
    assert [f.code for f in scan.findings] == [codes.ST_HEADER_TOO_LARGE]
    assert reads == [(0, 8)]


def test_sub_byte_dtype() -> None:
    assert _codes(safetensors_bytes({"a": tensor("F4", [8], 0, 4)})) == []


def test_index_checks() -> None:
    good = safetensors_bytes({"a": tensor("F32", [4], 0, 16)})
    scan, _ = _scan(good)
    shards = {"model-00001-of-00001.safetensors": scan}
    repo = {"model-00001-of-00001.safetensors"}
    ok = b'{"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}'
    assert check_index("model.safetensors.index.json", ok, shards, repo) == []
    missing = b'{"weight_map": {"a": "model-00001-of-00001.safetensors", "b": "model-00002.safetensors"}}'
    assert {f.code for f in check_index("model.safetensors.index.json", missing, shards, repo)} == {
        codes.ST_INDEX_MISMATCH
    }
    hostile = b'{"weight_map": {"a": "../../etc/passwd"}}'
    assert [f.code for f in check_index("model.safetensors.index.json", hostile, shards, repo)] == [
        codes.ST_INDEX_INVALID
    ]
    assert [f.code for f in check_index("x.index.json", b"nope", shards, repo)] == [codes.ST_INDEX_INVALID]


def test_parameter_counts() -> None:
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "vocab_size": 1000,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
    }
    (estimate,) = estimate_parameters(config)
    assert estimate == 2 * 1000 * 64 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128 + 2 * 64) + 64
    assert parameter_findings(estimate, estimate, config, 0.02) == []
    lying = parameter_findings(estimate, estimate * 2, config, 0.02)
    assert [f.code for f in lying] == [codes.ST_PARAMETER_MISMATCH]
    assert [f.code for f in parameter_findings(10, None, config, 0.02)] == [codes.ST_PARAMETER_MISMATCH]
    assert estimate_parameters({"model_type": "bert", "hidden_size": 4}) == ()
