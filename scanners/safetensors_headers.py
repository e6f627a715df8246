"""Safetensors headers, read by HTTP range: the first 8 bytes (header length), then the JSON header only.

Checks: header length within `screening.max_header_bytes` and inside the file; valid UTF-8 JSON object without
duplicate keys; known dtypes; shape x dtype size = byte span; offsets inside the data section, sorted without
overlaps or gaps and covering it exactly; `__metadata__` string -> string only. Sharded checkpoints: the
index's weight map must name existing shards and agree with their headers. Parameter totals are compared with
the Hub's safetensors metadata and with an estimate from config.json.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from registry import finding_codes as codes
from registry.schema import Finding, Severity
from scanners.paths import check_path, display_path

SCANNER = "safetensors"
INDEX_SUFFIX = ".safetensors.index.json"

# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
_MAX_TENSORS = 1_000_000

RangeReader = Callable[[int, int], bytes]


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {display_path(key)!r}")
        result[key] = value
    return result


@dataclass
class HeaderScan:
    """The result of reading one safetensors header."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # name -> (dtype, shape)
    parameters: dict[str, int] = field(default_factory=dict)  # dtype -> element count
    header_bytes: int = 0
    ok: bool = False

    @property
    def total_parameters(self) -> int:
        return sum(self.parameters.values())


def _finding(code: str, path: str, message: str, severity: Severity = Severity.HIGH) -> Finding:
    shown = display_path(path)
    return Finding(scanner=SCANNER, code=code, severity=severity, message=f"{shown}: {message}", path=shown)


def _parse(path: str, header: bytes) -> dict[str, Any] | Finding:
    """The header as a JSON object without duplicate keys, or the finding that says why it is not one."""
    try:
        parsed = json.loads(header.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _finding(codes.ST_HEADER_INVALID, path, f"header is not valid UTF-8 JSON ({str(exc)[:120]})")
    if not isinstance(parsed, dict):
        return _finding(codes.ST_HEADER_INVALID, path, "header is not a JSON object")
    if len(parsed) > _MAX_TENSORS:
        return _finding(codes.ST_HEADER_INVALID, path, f"header lists {len(parsed)} tensors")
    return parsed


def _well_formed(path: str, name: str, info: object) -> tuple[str, list[int], list[int]] | Finding:
    """(dtype, shape, offsets) of one tensor entry, or the finding that says what is wrong with it."""
    shown = display_path(name)
    if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
        return _finding(codes.ST_HEADER_INVALID, path, f"tensor {shown!r} entry is malformed")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        unknown = display_path(str(dtype))
        return _finding(codes.ST_UNKNOWN_DTYPE, path, f"tensor {shown!r} has unknown dtype {unknown!r}")
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
    ):
        return _finding(codes.ST_HEADER_INVALID, path, f"tensor {shown!r} has a malformed shape or data_offsets")
    return dtype, shape, offsets


def _check_tensor(scan: HeaderScan, name: str, info: object, data_size: int | None) -> tuple[int, int, str] | None:
    """Check one tensor entry into `scan`; its (begin, end, name) byte span when it has one."""
    path, shown = scan.path, display_path(name)
    entry = _well_formed(path, name, info)
    if isinstance(entry, Finding):
        scan.findings.append(entry)
        return None
    dtype, shape, (begin, end) = entry
    if end < begin:
        scan.findings.append(_finding(codes.ST_OFFSET_OUT_OF_RANGE, path, f"tensor {shown!r} ends before it begins"))
        return None
    elements = math.prod(shape)
    bits = elements * DTYPE_BITS[dtype]
    if bits % 8 != 0 or bits // 8 != end - begin:
        scan.findings.append(
            _finding(
                codes.ST_SHAPE_MISMATCH,
                path,
                f"tensor {shown!r} is {dtype}{shape} = {bits / 8:g} bytes but spans {end - begin} bytes",
            )
        )
    if data_size is not None and end > data_size:
        scan.findings.append(
            _finding(
                codes.ST_OFFSET_OUT_OF_RANGE,
                path,
                f"tensor {shown!r} ends at byte {end} of a {max(data_size, 0)}-byte data section",
            )
        )
    scan.tensors[name] = (dtype, tuple(shape))
    scan.parameters[dtype] = scan.parameters.get(dtype, 0) + elements
    return begin, end, name


def _check_spans(path: str, spans: list[tuple[int, int, str]], data_size: int | None) -> list[Finding]:
    """The tensors' byte spans, sorted, must cover the data section exactly: no overlap, no gap."""
    findings: list[Finding] = []
    cursor = 0
    overlap_reported = gap_reported = False
    for begin, end, name in sorted(spans):
        if begin < cursor and not overlap_reported:
            message = f"tensor {display_path(name)!r} overlaps the previous tensor's bytes"
            findings.append(_finding(codes.ST_OVERLAP, path, message))
            overlap_reported = True
        elif begin > cursor and not gap_reported:
            message = f"{begin - cursor} unaccounted bytes before tensor {display_path(name)!r}"
            findings.append(_finding(codes.ST_GAP, path, message))
            gap_reported = True
        cursor = max(cursor, end)
    if data_size is not None and spans and cursor < data_size and not gap_reported:
        findings.append(_finding(codes.ST_GAP, path, f"{data_size - cursor} unaccounted bytes after the last tensor"))
    return findings


def check_header(path: str, header: bytes, *, file_size: int | None, header_len: int) -> HeaderScan:
    """Validate a header's bytes (already read) against the file size. Pure: no I/O."""
    scan = HeaderScan(path=path, header_bytes=header_len)
    parsed = _parse(path, header)
    if isinstance(parsed, Finding):
        scan.findings.append(parsed)
        return scan
    metadata = parsed.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        scan.findings.append(_finding(codes.ST_METADATA_INVALID, path, "__metadata__ must map strings to strings only"))
    data_size = None if file_size is None else file_size - 8 - header_len
    spans = [span for name, info in parsed.items() if (span := _check_tensor(scan, name, info, data_size))]
    scan.findings.extend(_check_spans(path, spans, data_size))
    scan.ok = not scan.findings
    return scan


def scan_safetensors_file(path: str, file_size: int | None, read: RangeReader, *, max_header_bytes: int) -> HeaderScan:
    """Read and check one file's header by range: 8 bytes, then at most `max_header_bytes`."""
    prefix = read(0, 8)
    if len(prefix) < 8:
        scan = HeaderScan(path=path)
        scan.findings.append(
            _finding(
                codes.ST_HEADER_TRUNCATED,
                path,
                f"file is {len(prefix)} bytes, shorter than the 8-byte length prefix",
            )
        )
        return scan
    (header_len,) = struct.unpack("<Q", prefix)
    scan = HeaderScan(path=path, header_bytes=header_len)
    if header_len > max_header_bytes:
        scan.findings.append(
            _finding(
                codes.ST_HEADER_TOO_LARGE,
                path,
                f"header claims {header_len} bytes, over screening.max_header_bytes={max_header_bytes}; not read",
                Severity.CRITICAL,
            )
        )
        return scan
    if file_size is not None and 8 + header_len > file_size:
        scan.findings.append(
            _finding(
                codes.ST_HEADER_BEYOND_FILE,
                path,
                f"header claims {header_len} bytes but the file is only {file_size} bytes",
                Severity.CRITICAL,
            )
        )
        return scan
    if header_len < 2:
        scan.findings.append(_finding(codes.ST_HEADER_INVALID, path, f"header length {header_len} is too small"))
        return scan
    header = read(8, header_len)
    if len(header) < header_len:
        scan.findings.append(
            _finding(
                codes.ST_HEADER_TRUNCATED,
                path,
                f"header claims {header_len} bytes but only {len(header)} could be read",
            )
        )
        return scan
    return check_header(path, header, file_size=file_size, header_len=header_len)


# ------------------------------------------------------------------------------------------ sharded index


def check_index(index_path: str, data: bytes, shards: Mapping[str, HeaderScan], repo_paths: set[str]) -> list[Finding]:
    """The index's weight map against the repository's files and the shards' headers."""
    try:
        index = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [_finding(codes.ST_INDEX_INVALID, index_path, f"not valid JSON ({str(exc)[:120]})")]
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        return [_finding(codes.ST_INDEX_INVALID, index_path, "has no weight_map of tensor -> shard file names")]
    found: list[Finding] = []
    base = index_path.rsplit("/", 1)[0] + "/" if "/" in index_path else ""
    named = {base + v for v in weight_map.values()}
    for shard in sorted(named):
        if check_path(shard):
            found.append(
                _finding(
                    codes.ST_INDEX_INVALID,
                    index_path,
                    f"names a hostile shard path {display_path(shard)!r}",
                    Severity.CRITICAL,
                )
            )
        elif shard not in repo_paths:
            found.append(
                _finding(
                    codes.ST_INDEX_MISMATCH,
                    index_path,
                    f"names shard {display_path(shard)!r}, which is not in the repository",
                )
            )
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(base + shard, set()).add(tensor)
    for shard, tensors in sorted(by_shard.items()):
        scan = shards.get(shard)
        if scan is None or not scan.ok:
            continue
        missing = tensors - set(scan.tensors)
        extra = set(scan.tensors) - tensors
        if missing or extra:
            found.append(
                _finding(
                    codes.ST_INDEX_MISMATCH,
                    index_path,
                    f"weight map and {display_path(shard)} disagree ({len(missing)} tensors missing from "
                    "the shard, "
                    f"{len(extra)} not in the index)",
                )
            )
    return found


# ------------------------------------------------------------------------------------------ parameter counts


def estimate_parameters(config: Mapping[str, Any]) -> tuple[int, ...]:
    """Plausible parameter counts of a decoder-only transformer from config.json (Llama / Qwen / Mistral
    shape): one value, or two (tied and untied embeddings) when the config does not say; () when unknown."""

    def number(*keys: str) -> int | None:
        for key in keys:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    hidden = number("hidden_size", "n_embd", "d_model")
    layers = number("num_hidden_layers", "n_layer")
    vocab = number("vocab_size")
    inter = number("intermediate_size")
    heads = number("num_attention_heads", "n_head")
    if None in (hidden, layers, vocab, inter, heads) or config.get("num_experts") or config.get("num_local_experts"):
        return ()
    assert hidden is not None and layers is not None and vocab is not None and inter is not None and heads is not None
    if config.get("model_type") not in (
        "llama",
        "qwen2",
        "qwen3",
        "mistral",
        "gemma",
        "gemma2",
        "phi3",
        "olmo",
        "granite",
    ):
        return ()
    kv_heads = number("num_key_value_heads") or heads
    head_dim = number("head_dim") or hidden // heads
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * inter
    per_layer = attention + mlp + 2 * hidden
    body = layers * per_layer + hidden
    tied = config.get("tie_word_embeddings")
    if tied is None:
        return (vocab * hidden + body, 2 * vocab * hidden + body)
    return ((1 if tied else 2) * vocab * hidden + body,)


def parameter_findings(
    header_total: int,
    hub_total: int | None,
    config: Mapping[str, Any] | None,
    tolerance: float,
) -> list[Finding]:
    """Disagreements between the headers' parameter total, the Hub's metadata and config.json."""
    found: list[Finding] = []

    def off(a: int, b: int) -> bool:
        return abs(a - b) > tolerance * max(a, b, 1)

    if hub_total is not None and hub_total > 0 and off(header_total, hub_total):
        found.append(
            Finding(
                scanner=SCANNER,
                code=codes.ST_PARAMETER_MISMATCH,
                severity=Severity.MEDIUM,
                message=f"the headers hold {header_total} parameters but the Hub's metadata says {hub_total}",
            )
        )
    estimates = estimate_parameters(config) if config else ()
    if estimates and header_total > 0 and all(off(header_total, e) for e in estimates):
        estimate = " or ".join(str(e) for e in estimates)
        found.append(
            Finding(
                scanner=SCANNER,
                code=codes.ST_PARAMETER_MISMATCH,
                severity=Severity.MEDIUM,
                message=f"the headers hold {header_total} parameters but config.json describes about {estimate}",
                path="config.json",
            )
        )
    return found
