from __future__ import annotations

import pytest

from registry import finding_codes as codes
from scanners.paths import check_path, display_path, scan_paths


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("../../etc/passwd", codes.PATH_TRAVERSAL),
        ("weights/../../x.safetensors", codes.PATH_TRAVERSAL),
        ("/etc/passwd", codes.PATH_ABSOLUTE),
        ("C:/Windows/evil.dll", codes.PATH_ABSOLUTE),
        ("..\\..\\evil.bat", codes.PATH_BACKSLASH),
        ("..\\..\\evil.bat", codes.PATH_TRAVERSAL),
        ("model\x00.safetensors", codes.PATH_CONTROL_CHARS),
        ("read\nme.md", codes.PATH_CONTROL_CHARS),
        ("model\u202etxt.safetensors", codes.PATH_UNICODE),
        ("\uff0e\uff0e/secret", codes.PATH_UNICODE),
        ("zero\u200bwidth.json", codes.PATH_UNICODE),
        ("a" * 300, codes.PATH_TOO_LONG),
        ("/".join(["d"] * 600), codes.PATH_TOO_LONG),
    ],
)
def test_hostile_names(path: str, code: str) -> None:
    assert code in {f.code for f in check_path(path)}


def test_plain_names_pass() -> None:
    assert scan_paths(["config.json", "onnx/model.onnx", "1_Pooling/config.json", "README.md", ".gitattributes"]) == []


def test_display_path_is_printable_and_bounded() -> None:
    shown = display_path("evil\x1b[31m\u202e" + "x" * 500)
    assert shown.isprintable() and shown.isascii()
    assert len(shown) <= 160
