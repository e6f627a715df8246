"""Weight formats: safetensors only. Pickle-based files are findings; GGUF / ONNX are recorded for their
runtimes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registry import finding_codes as codes
from registry.schema import Finding, Severity
from scanners.paths import display_path
from scanners.pickles import PICKLE_SUFFIXES

SCANNER = "formats"

# suffix -> format name, for every weight-like file the scanner recognises.
FORMATS: dict[str, str] = {
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".onnx_data": "onnx",
    ".h5": "keras-h5",
    ".keras": "keras",
    ".msgpack": "flax-msgpack",
    ".tflite": "tflite",
    ".mlmodel": "coreml",
    ".npz": "numpy",
    ".npy": "numpy",
    ".ot": "rust-tch",
    **{suffix: "pickle" for suffix in PICKLE_SUFFIXES},
}
# Files that look like weights by suffix but are not (kept out of the format list).
_NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")


@dataclass(frozen=True)
class FormatScan:
    formats: tuple[str, ...]
    findings: tuple[Finding, ...]
    pickle_files: tuple[str, ...]
    safetensors_files: tuple[str, ...]


def format_of(path: str) -> str | None:
    lower = path.lower()
    for suffix, name in FORMATS.items():
        if lower.endswith(suffix):
            return name
    return None


def _finding(code: str, severity: Severity, message: str, path: str | None = None) -> Finding:
    return Finding(scanner=SCANNER, code=code, severity=severity, message=message, path=path)


def _file_finding(path: str, kind: str) -> Finding | None:
    """The finding one weight-like file of format `kind` leads to (None for safetensors)."""
    shown = display_path(path)
    if kind == "pickle":
        return _finding(
            codes.FORMAT_PICKLE,
            Severity.MEDIUM,
            f"{shown} is pickle-based: it is never loaded or staged (safetensors only); its opcodes are inspected "
            "for imports",
            shown,
        )
    if kind in ("gguf", "onnx"):
        return _finding(
            codes.FORMAT_GGUF if kind == "gguf" else codes.FORMAT_ONNX,
            Severity.INFO,
            f"{shown} is {kind.upper()}: recorded for runtimes that use it (never loaded here)",
            shown,
        )
    if kind != "safetensors":
        return _finding(codes.FORMAT_OTHER, Severity.INFO, f"{shown} is {kind}: not staged (safetensors only)", shown)
    return None


def _no_safetensors(formats: Iterable[str]) -> Finding:
    shown = ", ".join(formats)
    if shown:
        return _finding(
            codes.WEIGHTS_NO_SAFETENSORS,
            Severity.HIGH,
            f"no *.safetensors weights (only {shown}): nothing the pipeline may stage",
        )
    return _finding(codes.WEIGHTS_MISSING, Severity.HIGH, "the repository has no weight files at all")


def scan_formats(paths: Iterable[str]) -> FormatScan:
    """Which weight formats the repository ships, and the findings that implies."""
    formats: dict[str, None] = {}
    findings: list[Finding] = []
    pickles: list[str] = []
    safetensors: list[str] = []
    for path in sorted(paths):
        kind = format_of(path)
        if kind is None:
            continue
        finding = _file_finding(path, kind)
        if finding is not None:
            findings.append(finding)
        if kind == "pickle":
            pickles.append(path)
            if path.rsplit("/", 1)[-1].lower() in _NOT_WEIGHTS:
                continue
        elif kind == "safetensors":
            safetensors.append(path)
        formats[kind] = None
    if not safetensors:
        findings.append(_no_safetensors(formats))
    return FormatScan(tuple(sorted(formats)), tuple(findings), tuple(pickles), tuple(safetensors))
