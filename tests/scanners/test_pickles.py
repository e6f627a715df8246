from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from registry import finding_codes as codes
from scanners.pickles import classify_global, scan_pickle_file, scan_pickle_stream
from tests.scanners.hostile import global_call, inst_call, stack_global_call, stack_global_via_memo, torch_zip


def _reader(data: bytes):
    reads: list[tuple[int, int]] = []

    def read(start: int, length: int) -> bytes:
        reads.append((start, length))
        return data[start : start + length]

    return read, reads


@pytest.mark.parametrize(
    ("builder", "module", "name"),
    [
        (global_call, "os", "system"),
        (global_call, "builtins", "exec"),
        (stack_global_call, "subprocess", "call"),
        (stack_global_via_memo, "builtins", "eval"),
        (inst_call, "os", "system"),
        (inst_call, "subprocess", "check_output"),
    ],
)
def test_dangerous_imports_are_found_by_every_opcode(builder, module, name) -> None:
    data = builder(module, name, "touch /nonexistent/marker")
    result = scan_pickle_stream(data, truncated=False)
    assert (module, name) in {(m, n) for m, n, _ in result.imports}
    read, _ = _reader(data)
    found = scan_pickle_file("pytorch_model.bin", len(data), read)
    assert [f.code for f in found] == [codes.PICKLE_DANGEROUS_IMPORT]
    assert f"{module}.{name}" in found[0].message


def test_payload_would_run_if_unpickled_but_scanning_does_not_run_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = global_call("os", "system", f"touch {marker}")
    read, _ = _reader(data)
    assert scan_pickle_file("model.pkl", len(data), read)
    assert not marker.exists()
    # Proof that the payload is live: a separate interpreter that does unpickle it creates the marker.
    subprocess.run(
        [sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
        input=data,
        check=False,
        timeout=30,
    )
    assert marker.exists()


def test_torch_zip_member_is_read_by_range_and_bounded() -> None:
    evil = global_call("os", "system", "echo hi")
    data = torch_zip(evil, data_size=4 * 1024 * 1024)  # 4 MiB of "tensor data" that must not be read
    read, reads = _reader(data)
    found = scan_pickle_file("pytorch_model.bin", len(data), read, budget=1_000_000)
    assert [f.code for f in found] == [codes.PICKLE_DANGEROUS_IMPORT]
    assert "archive/data.pkl" in found[0].message
    assert sum(length for _, length in reads) < 70_000


def test_deflated_torch_zip_is_inflated_within_budget() -> None:
    data = torch_zip(stack_global_call("posix", "system", "id"), compress=True)
    read, _ = _reader(data)
    assert [f.code for f in scan_pickle_file("x.pt", len(data), read)] == [codes.PICKLE_DANGEROUS_IMPORT]


def test_real_torch_checkpoints_are_clean() -> None:
    torch = pytest.importorskip("torch")
    for zip_format in (True, False):
        buffer = io.BytesIO()
        torch.save({"w": torch.zeros(4, 4), "b": torch.ones(3)}, buffer, _use_new_zipfile_serialization=zip_format)
        data = buffer.getvalue()
        read, _ = _reader(data)
        assert scan_pickle_file("pytorch_model.bin", len(data), read) == [], zip_format


def test_plain_data_pickle_is_clean_and_unknown_class_needs_review() -> None:
    data = pickle.dumps({"a": [1, 2.0, "x"], "b": (1, 2)}, protocol=4)
    read, _ = _reader(data)
    assert scan_pickle_file("state.pkl", len(data), read) == []
    odd = global_call("mylib.layers", "Dense", "x")
    read, _ = _reader(odd)
    assert [f.code for f in scan_pickle_file("odd.pkl", len(odd), read)] == [codes.PICKLE_UNKNOWN_IMPORT]


def test_malformed_and_over_budget_pickles() -> None:
    junk = b"\x80\x02\xff\xff garbage"
    read, _ = _reader(junk)
    assert [f.code for f in scan_pickle_file("junk.pkl", len(junk), read)] == [codes.PICKLE_MALFORMED]
    big = pickle.dumps(list(range(50_000)), protocol=2)
    read, reads = _reader(big)
    found = scan_pickle_file("big.pkl", len(big), read, budget=1024)
    assert [f.code for f in found] == [codes.PICKLE_UNSCANNED]
    assert sum(length for _, length in reads) <= 4 + 1024


def test_bad_zip_is_malformed_not_a_crash() -> None:
    data = b"PK\x03\x04" + b"\x00" * 100
    read, _ = _reader(data)
    assert [f.code for f in scan_pickle_file("bad.pt", len(data), read)] == [codes.PICKLE_MALFORMED]


def test_classify_global() -> None:
    assert classify_global("torch._utils", "_rebuild_tensor_v2") == "safe"
    assert classify_global("torch", "BFloat16Storage") == "safe"
    assert classify_global("collections", "OrderedDict") == "safe"
    assert classify_global("os.path", "join") == "dangerous"
    assert classify_global("builtins", "getattr") == "dangerous"
    assert classify_global("builtins", "set") == "safe"
    assert classify_global("numpy", "load") == "dangerous"
    assert classify_global("transformers.training_args", "TrainingArguments") == "unknown"
