"""Download and verify a pinned revision's safetensors weights and serving files.

`download_weights` fetches the safetensors files and the files a runtime needs to serve the model (config,
generation config, licence, card, and everything its processor needs: tokenizer, chat template, feature-extractor
/ image / video processor configs; registry/processor_files.py) of one pinned revision, and checks every
file's size and hash against what the Hub reported: the LFS sha256 for LFS files, the git blob oid for small
files. `check_tensors` opens the safetensors files with the `safetensors` library (headers only, never pickle)
and checks them against config.json: the architecture's expected tensor names and shapes where known
(llama-style decoders and BERT encoders), layer count, dtypes, the shard index, and the total parameter
count against the Hub's safetensors metadata. Any blocking mismatch raises `WeightsRejectedError` with the
findings.

Everything read here comes from a model repository and is hostile: names are validated before they become
paths, the safetensors header size is bounded before it is parsed, config.json is size-bounded JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open

from registry.hub import HubSource, RepoFile, RepoInfo
from registry.identifiers import is_safe_repo_file
from registry.processor_files import PROCESSOR_CONFIG_FILES, TOKENIZER_FILES, is_processor_file
from registry.schema import Finding, ModelRef, Severity, StagedFile
from registry.settings import ScreeningSettings
from validators.errors import ValidatorError

SCANNER = "weights"
# Beside the weights: config, generation config, index, sentence-transformers pooling, the card; plus every file
# the model's processor needs (tokenizer, chat template, feature-extractor / image / video processor configs).
SERVING_FILES = (
    frozenset(
        {
            "config.json",
            "generation_config.json",
            "model.safetensors.index.json",
            "modules.json",
            "sentence_bert_config.json",
            "config_sentence_transformers.json",
            "README.md",
            "1_Pooling/config.json",
        }
    )
    | PROCESSOR_CONFIG_FILES
    | TOKENIZER_FILES
)
_LICENSE = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE)(\.[A-Za-z0-9]+)?$", re.IGNORECASE)
_KNOWN_DTYPES = frozenset(
    {
        "F64",
        "F32",
        "F16",
        "BF16",
        "F8_E4M3",
        "F8_E5M2",
        "F8_E8M0",
        "F4",
        "I64",
        "I32",
        "I16",
        "I8",
        "U8",
        "U16",
        "U32",
        "U64",
        "BOOL",
    }
)
_CONFIG_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64"}
_DECODERS = frozenset({"llama", "mistral", "qwen2", "qwen3"})
_MAX_CONFIG_BYTES = 2 * 1024 * 1024
_CHUNK = 1 << 20


class WeightsError(ValidatorError):
    """The weights could not be verified (download or file-system problem); the message says what to do."""


class WeightsRejectedError(WeightsError):
    """The weights do not match what the Hub advertised or what config.json describes; see `findings`."""

    def __init__(self, ref: ModelRef, findings: Sequence[Finding]) -> None:
        blocking = [f for f in findings if f.severity.rank >= Severity.HIGH.rank]
        shown = "; ".join(f"{f.code}: {f.message}" for f in (blocking or list(findings))[:5])
        super().__init__(f"{ref} rejected: {shown}")
        self.ref = ref
        self.findings = tuple(findings)


class TensorReport(BaseModel):
    """What the safetensors headers say about the weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    parameters: int = 0
    tensors: int = 0
    dtypes: dict[str, int] = Field(default_factory=dict, description="dtype -> parameter count")
    findings: tuple[Finding, ...] = ()

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity.rank >= Severity.HIGH.rank)


def _finding(code: str, message: str, path: str | None = None, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(scanner=SCANNER, code=code, severity=severity, message=message[:500], path=path)


def _clip(name: str, limit: int = 80) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


# --------------------------------------------------------------------------------------------- selection


def select_files(info: RepoInfo) -> list[RepoFile]:
    """The safetensors and serving files of the revision, in a stable order. Unsafe names are refused."""
    ref = info.ref()
    chosen: list[RepoFile] = []
    bad: list[Finding] = []
    for entry in info.files:
        name = entry.path
        wanted = name.endswith(".safetensors") or name in SERVING_FILES or is_processor_file(name)
        wanted = wanted or _LICENSE.match(name) is not None
        if not wanted:
            continue
        if not is_safe_repo_file(name):
            bad.append(_finding("weights.unsafe-name", f"file name {_clip(name)} is not a safe relative path"))
            continue
        chosen.append(entry)
    if not any(f.path.endswith(".safetensors") for f in chosen):
        bad.append(
            _finding(
                "weights.no-safetensors",
                "the revision has no .safetensors files; only safetensors weights are staged",
            )
        )
    if not any(f.path == "config.json" for f in chosen):
        bad.append(_finding("weights.no-config", "the revision has no config.json"))
    if bad:
        raise WeightsRejectedError(ref, bad)
    return sorted(chosen, key=lambda f: f.path)


# --------------------------------------------------------------------------------------------- download


def file_digests(path: Path) -> tuple[str, str, int]:
    """(sha256, git blob oid, size) of a local file, read in chunks."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            sha256.update(chunk)
            git.update(chunk)
    return sha256.hexdigest(), git.hexdigest(), size


def verify_file(path: Path, expected: RepoFile) -> tuple[StagedFile | None, list[Finding]]:
    """Check a downloaded file against the Hub's size and LFS sha256 (or git blob oid for small files)."""
    sha256, git_oid, size = file_digests(path)
    findings: list[Finding] = []
    if expected.size is not None and size != expected.size:
        findings.append(
            _finding(
                "weights.size-mismatch",
                f"{expected.path}: downloaded {size} bytes but the Hub lists {expected.size} (truncated or "
                "altered download); retry later",
                expected.path,
            )
        )
    if expected.lfs or expected.sha256:
        if not expected.sha256:
            findings.append(
                _finding("weights.no-lfs-hash", f"{expected.path}: the Hub gave no LFS sha256", expected.path)
            )
        elif sha256 != expected.sha256:
            findings.append(
                _finding(
                    "weights.hash-mismatch",
                    f"{expected.path}: sha256 {sha256[:16]}... does not match the Hub's LFS oid "
                    f"{expected.sha256[:16]}...",
                    expected.path,
                )
            )
    elif expected.git_oid is None:
        findings.append(_finding("weights.no-hash", f"{expected.path}: the Hub gave no hash to check", expected.path))
    elif git_oid != expected.git_oid:
        findings.append(
            _finding(
                "weights.hash-mismatch",
                f"{expected.path}: git blob oid {git_oid[:12]} does not match the Hub's {expected.git_oid[:12]}",
                expected.path,
            )
        )
    if findings:
        return None, findings
    return StagedFile(name=expected.path, size=size, sha256=sha256), []


def download_weights(
    source: HubSource,
    info: RepoInfo,
    files: Sequence[RepoFile],
    dest: Path,
    *,
    on_file: Callable[[RepoFile], None] | None = None,
) -> list[StagedFile]:
    """Download `files` of the pinned revision into `dest` (exactly those files), verifying each one.

    Files are fetched into a scratch directory next to `dest` and moved into place once verified; `dest`
    ends up holding the verified set and nothing else. Raises WeightsRejectedError on a size/hash mismatch.
    """
    ref = info.ref()
    dest = Path(dest)
    scratch = dest.parent / f".{dest.name}.download"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    staged: list[StagedFile] = []
    findings: list[Finding] = []
    try:
        for entry in files:
            local = source.download(ref, entry.path, scratch)
            if not local.resolve().is_relative_to(scratch.resolve()):
                raise WeightsError(f"the download of {_clip(entry.path)} landed outside {scratch}; refusing it")
            record, problems = verify_file(local, entry)
            findings.extend(problems)
            if record is not None:
                staged.append(record)
            if on_file is not None:
                on_file(entry)
        if findings:
            raise WeightsRejectedError(ref, findings)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for record in staged:
            target = dest / record.name
            target.parent.mkdir(parents=True, exist_ok=True)
            (scratch / record.name).replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return staged


# --------------------------------------------------------------------------------------------- tensors


def read_config(path: Path) -> dict[str, Any]:
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise WeightsError(f"{path.name} is larger than {_MAX_CONFIG_BYTES} bytes; refusing to parse it")
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise WeightsError(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path.name} is not a JSON object")
    return data


def _header_length(path: Path) -> int:
    with path.open("rb") as handle:
        raw = handle.read(8)
    if len(raw) < 8:
        return -1
    value: int = struct.unpack("<Q", raw)[0]
    return value


def read_tensors(path: Path, max_header_bytes: int) -> tuple[dict[str, tuple[str, tuple[int, ...]]], list[Finding]]:
    """name -> (dtype, shape) of one safetensors file, from its header (via the safetensors library)."""
    rel = path.name
    length = _header_length(path)
    if length < 0 or length > max_header_bytes or length + 8 > path.stat().st_size:
        return {}, [
            _finding(
                "weights.bad-header",
                f"{rel}: safetensors header length {length} is invalid or larger "
                f"than screening.max_header_bytes ({max_header_bytes})",
                rel,
                Severity.CRITICAL,
            )
        ]
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    try:
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                view = handle.get_slice(name)
                tensors[name] = (str(view.get_dtype()), tuple(int(d) for d in view.get_shape()))
    except (OSError, ValueError, RuntimeError) as exc:
        return {}, [
            _finding(
                "weights.bad-safetensors",
                f"{rel}: not a valid safetensors file ({exc})",
                rel,
                Severity.CRITICAL,
            )
        ]
    except Exception as exc:  # safetensors raises its own SafetensorError (not exported as a type)
        if type(exc).__name__ != "SafetensorError":
            raise
        return {}, [
            _finding(
                "weights.bad-safetensors",
                f"{rel}: not a valid safetensors file ({exc})",
                rel,
                Severity.CRITICAL,
            )
        ]
    return tensors, []


def _expect(
    tensors: dict[str, tuple[str, tuple[int, ...]]],
    name: str,
    shape: tuple[int, ...],
    findings: list[Finding],
) -> None:
    found = tensors.get(name)
    if found is None:
        findings.append(_finding("weights.missing-tensor", f"tensor {name} expected by config.json is missing"))
    elif found[1] != shape:
        findings.append(
            _finding(
                "weights.shape-mismatch",
                f"tensor {name} has shape {list(found[1])}, config.json implies {list(shape)}",
            )
        )


def _layer_indices(tensors: Iterable[str], prefix: str) -> set[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return {int(m.group(1)) for name in tensors if (m := pattern.match(name))}


def _int(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _check_layers(found: set[int], expected: int, findings: list[Finding]) -> None:
    if found != set(range(expected)):
        findings.append(
            _finding(
                "weights.layer-count",
                f"the weights hold {len(found)} layers (indices {sorted(found)[:8]}...), "
                f"config.json says num_hidden_layers={expected}",
            )
        )


def check_decoder(config: dict[str, Any], tensors: dict[str, tuple[str, tuple[int, ...]]]) -> list[Finding]:
    """Llama-style decoders (llama, mistral, qwen2, qwen3): embeddings, lm_head, per-layer projections."""
    findings: list[Finding] = []
    hidden, vocab, layers = (
        _int(config, "hidden_size"),
        _int(config, "vocab_size"),
        _int(config, "num_hidden_layers"),
    )
    heads, inter = _int(config, "num_attention_heads"), _int(config, "intermediate_size")
    if None in (hidden, vocab, layers, heads, inter):
        return [
            _finding(
                "weights.config-incomplete",
                "config.json lacks hidden_size, vocab_size, num_hidden_layers, "
                "num_attention_heads or intermediate_size",
                "config.json",
            )
        ]
    assert hidden and vocab and layers and heads and inter
    kv = _int(config, "num_key_value_heads") or heads
    head_dim = _int(config, "head_dim") or hidden // heads
    _expect(tensors, "model.embed_tokens.weight", (vocab, hidden), findings)
    _expect(tensors, "model.norm.weight", (hidden,), findings)
    if not config.get("tie_word_embeddings", False):
        _expect(tensors, "lm_head.weight", (vocab, hidden), findings)
    _check_layers(_layer_indices(tensors, "model.layers."), layers, findings)
    for i in range(min(layers, 256)):
        p = f"model.layers.{i}."
        _expect(tensors, p + "self_attn.q_proj.weight", (heads * head_dim, hidden), findings)
        _expect(tensors, p + "self_attn.k_proj.weight", (kv * head_dim, hidden), findings)
        _expect(tensors, p + "self_attn.v_proj.weight", (kv * head_dim, hidden), findings)
        _expect(tensors, p + "self_attn.o_proj.weight", (hidden, heads * head_dim), findings)
        _expect(tensors, p + "mlp.gate_proj.weight", (inter, hidden), findings)
        _expect(tensors, p + "mlp.up_proj.weight", (inter, hidden), findings)
        _expect(tensors, p + "mlp.down_proj.weight", (hidden, inter), findings)
        _expect(tensors, p + "input_layernorm.weight", (hidden,), findings)
        _expect(tensors, p + "post_attention_layernorm.weight", (hidden,), findings)
        if len(findings) > 20:
            break
    return findings


def check_bert(config: dict[str, Any], tensors: dict[str, tuple[str, tuple[int, ...]]]) -> list[Finding]:
    findings: list[Finding] = []
    hidden, vocab, layers = (
        _int(config, "hidden_size"),
        _int(config, "vocab_size"),
        _int(config, "num_hidden_layers"),
    )
    inter = _int(config, "intermediate_size")
    if None in (hidden, vocab, layers, inter):
        return [
            _finding(
                "weights.config-incomplete",
                "config.json lacks hidden_size, vocab_size, num_hidden_layers or intermediate_size",
                "config.json",
            )
        ]
    assert hidden and vocab and layers and inter
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
    _expect(tensors, prefix + "embeddings.word_embeddings.weight", (vocab, hidden), findings)
    _check_layers(_layer_indices(tensors, prefix + "encoder.layer."), layers, findings)
    for i in range(min(layers, 256)):
        p = f"{prefix}encoder.layer.{i}."
        for part in ("query", "key", "value"):
            _expect(tensors, p + f"attention.self.{part}.weight", (hidden, hidden), findings)
        _expect(tensors, p + "intermediate.dense.weight", (inter, hidden), findings)
        _expect(tensors, p + "output.dense.weight", (hidden, inter), findings)
        if len(findings) > 20:
            break
    return findings


def _check_index(model_dir: Path, shards: dict[str, set[str]], findings: list[Finding]) -> None:
    index_path = model_dir / "model.safetensors.index.json"
    if not index_path.is_file():
        if len(shards) > 1:
            findings.append(
                _finding(
                    "weights.no-index",
                    "several safetensors files but no model.safetensors.index.json",
                    None,
                    Severity.MEDIUM,
                )
            )
        return
    try:
        data = read_config(index_path)
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (WeightsError, KeyError, TypeError) as exc:
        findings.append(
            _finding(
                "weights.bad-index",
                f"model.safetensors.index.json is unusable: {exc}",
                "model.safetensors.index.json",
            )
        )
        return
    mapped: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        mapped.setdefault(str(shard), set()).add(str(tensor))
    missing = sorted(set(mapped) - set(shards))
    if missing:
        findings.append(
            _finding(
                "weights.index-missing-shard",
                f"the index names shards that are not staged: {', '.join(_clip(m, 60) for m in missing[:5])}",
                "model.safetensors.index.json",
            )
        )
    for shard, names in shards.items():
        if shard in mapped and mapped[shard] != names:
            findings.append(
                _finding(
                    "weights.index-mismatch",
                    f"{shard}: its tensors differ from the index's weight_map",
                    "model.safetensors.index.json",
                )
            )


def _read_shards(
    model_dir: Path, max_header_bytes: int, findings: list[Finding]
) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, set[str]]]:
    """(tensor name -> (dtype, shape) over every shard, shard -> its tensor names); problems into `findings`."""
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    shards: dict[str, set[str]] = {}
    for path in sorted(model_dir.rglob("*.safetensors")):
        rel = path.relative_to(model_dir).as_posix()
        found, problems = read_tensors(path, max_header_bytes)
        findings.extend(problems)
        duplicated = sorted(set(found) & set(tensors))
        if duplicated:
            repeated = ", ".join(_clip(d, 60) for d in duplicated[:3])
            message = f"{rel} repeats tensors of another shard: {repeated}"
            findings.append(_finding("weights.duplicate-tensor", message, rel))
        tensors.update(found)
        shards[rel] = set(found)
    return tensors, shards


def _dtype_findings(config: dict[str, Any], dtypes: dict[str, int]) -> list[Finding]:
    """The dominant dtype against config.json's declared one (unquantized models only)."""
    declared = config.get("torch_dtype") or config.get("dtype")
    expected_dtype = _CONFIG_DTYPES.get(str(declared)) if declared else None
    if not expected_dtype or not dtypes or "quantization_config" in config:
        return []
    dominant = max(dtypes.items(), key=lambda item: item[1])[0]
    if dominant == expected_dtype:
        return []
    message = f"most parameters are {dominant}, config.json declares {declared}"
    return [_finding("weights.dtype-mismatch", message, "config.json", Severity.LOW)]


def check_tensors(model_dir: Path, info: RepoInfo, screening: ScreeningSettings) -> TensorReport:
    """Check the staged safetensors against config.json, the shard index and the Hub's parameter count."""
    model_dir = Path(model_dir)
    config = read_config(model_dir / "config.json")
    findings: list[Finding] = []
    tensors, shards = _read_shards(model_dir, screening.max_header_bytes, findings)
    dtypes: dict[str, int] = {}
    parameters = 0
    for name, (dtype, shape) in tensors.items():
        count = math.prod(shape)
        parameters += count
        dtypes[dtype] = dtypes.get(dtype, 0) + count
        if dtype not in _KNOWN_DTYPES:
            findings.append(_finding("weights.unknown-dtype", f"tensor {_clip(name)} has unknown dtype {dtype!r}"))
    _check_index(model_dir, shards, findings)
    quantized = "quantization_config" in config
    model_type = str(config.get("model_type", ""))
    if not quantized and model_type in _DECODERS:
        findings.extend(check_decoder(config, tensors))
    elif not quantized and model_type == "bert":
        findings.extend(check_bert(config, tensors))
    findings.extend(_dtype_findings(config, dtypes))
    hub_total = info.safetensors_total
    if hub_total and abs(parameters - hub_total) > screening.parameter_tolerance * hub_total:
        message = f"the safetensors headers hold {parameters} parameters, the Hub's metadata says {hub_total}"
        findings.append(_finding("weights.parameters-mismatch", message))
    return TensorReport(parameters=parameters, tensors=len(tensors), dtypes=dtypes, findings=tuple(findings))
