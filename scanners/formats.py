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
        shown = display_path(path)
        name = path.rsplit("/", 1)[-1].lower()
        if kind == "pickle":
            pickles.append(path)
            findings.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.FORMAT_PICKLE,
                    severity=Severity.MEDIUM,
                    message=f"{shown} is pickle-based: it is never loaded or staged (safetensors only); "
                        "its opcodes "
                    "are inspected for imports",
                    path=shown,
                )
            )
            if name in _NOT_WEIGHTS:
                continue
        elif kind == "safetensors":
            safetensors.append(path)
        elif kind in ("gguf", "onnx"):
            findings.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.FORMAT_GGUF if kind == "gguf" else codes.FORMAT_ONNX,
                    severity=Severity.INFO,
                    message=f"{shown} is {kind.upper()}: recorded for runtimes that use it (never loaded "
                        "here)",
                    path=shown,
                )
            )
        else:
            findings.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.FORMAT_OTHER,
                    severity=Severity.INFO,
                    message=f"{shown} is {kind}: not staged (safetensors only)",
                    path=shown,
                )
            )
        formats[kind] = None
    if not safetensors:
        if formats:
            findings.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.WEIGHTS_NO_SAFETENSORS,
                    severity=Severity.HIGH,
                    message=f"no *.safetensors weights (only {', '.join(formats)}): nothing the pipeline "
                        "may stage",
                )
            )
        else:
            findings.append(
                Finding(
                    scanner=SCANNER,
                    code=codes.WEIGHTS_MISSING,
                    severity=Severity.HIGH,
                    message="the repository has no weight files at all",
                )
            )
    return FormatScan(tuple(sorted(formats)), tuple(findings), tuple(pickles), tuple(safetensors))
