"""The file sets of every sample repository, as plain bytes or paths (no execution, no network).

The tiny and "must be rejected" repos share the tiny models' files; each reject repo changes only what its
finding is about, so a scanner that flags it flags it for that one reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from devstack.samples import expectations as ex
from devstack.samples import licenses
from devstack.samples.cards import FrontValue, dump_json, model_card

# The custom-code sample's Python files start with a tripwire: importing them raises at once, so a stage that
# wrongly imports repository code fails loudly instead of running anything.
TRIPWIRE = 'raise RuntimeError("curation sample: repository code must never be imported or executed")\n'

CONFIGURATION_CUSTOM = (
    TRIPWIRE
    + """
from transformers import LlamaConfig


class CustomLlamaConfig(LlamaConfig):
    model_type = "custom-llama"
"""
)

MODELING_CUSTOM = (
    TRIPWIRE
    + """
from transformers import LlamaForCausalLM

from .configuration_custom import CustomLlamaConfig


class CustomLlamaForCausalLM(LlamaForCausalLM):
    config_class = CustomLlamaConfig
"""
)

AUTO_MAP = {
    "AutoConfig": "configuration_custom.CustomLlamaConfig",
    "AutoModelForCausalLM": "modeling_custom.CustomLlamaForCausalLM",
}

Files = dict[str, bytes | Path]


def _card(expect: ex.Expectation, title: str, body: str, extra: Mapping[str, FrontValue] | None = None) -> bytes:
    fields: dict[str, FrontValue] = {"license": expect.license}
    fields.update(extra or {})
    chat = expect.task == "text-generation"
    fields.update(
        {
            "language": ["en"],
            "library_name": expect.library_name,
            "pipeline_tag": expect.task,
            "tags": ["text-generation", "conversational", "curation-sample"]
            if chat
            else [expect.task, "curation-sample"],
        }
    )
    return model_card(fields, title, body)


def _generated_repo(expect: ex.Expectation, model: Mapping[str, bytes], body: str) -> Files:
    """A generated model's files, its licence and a card whose body is `body`."""
    files: Files = dict(model)
    files["LICENSE"] = (licenses.APACHE_2_0 if expect.license == "apache-2.0" else licenses.MIT).encode()
    files["README.md"] = _card(expect, expect.repo_id.split("/")[1], body)
    return files


def tiny_repo(expect: ex.Expectation, model: Mapping[str, bytes], arch: str) -> Files:
    return _generated_repo(
        expect,
        model,
        f"A 2-layer {arch} chat model with random weights and a byte-level BPE tokenizer (vocabulary 4096),\n"
        "generated offline for fast tests of the curation pipeline. It produces no meaningful text.\n",
    )


def media_repo(expect: ex.Expectation, model: Mapping[str, bytes], what: str) -> Files:
    """A tiny speech or vision-language repo: the model's files, a licence and a card saying `what` it is."""
    return _generated_repo(
        expect,
        model,
        f"{what}, with random weights, generated offline for fast tests of the curation pipeline.\n"
        "Its outputs mean nothing.\n",
    )


def gated_repo(expect: ex.Expectation, model: Mapping[str, bytes]) -> Files:
    files = tiny_repo(expect, model, "Llama")
    files["README.md"] = _card(
        expect,
        "gated-model",
        "A fine model behind a manual access gate: you must accept the conditions and use a token.\n",
        {"extra_gated_prompt": "You agree to use this model responsibly."},
    )
    return files


def private_repo(expect: ex.Expectation, model: Mapping[str, bytes]) -> Files:
    files = tiny_repo(expect, model, "Llama")
    files["README.md"] = _card(expect, "private-model", "A private model: only visible with a token.\n")
    return files


def custom_code_repo(expect: ex.Expectation, model: Mapping[str, bytes], llama_config: bytes) -> Files:
    config = json.loads(llama_config)
    config.update(
        {
            "auto_map": AUTO_MAP,
            "model_type": "custom-llama",
            "architectures": ["CustomLlamaForCausalLM"],
        }
    )
    files = tiny_repo(expect, model, "Llama")
    files["config.json"] = dump_json(config)
    files["configuration_custom.py"] = CONFIGURATION_CUSTOM.encode()
    files["modeling_custom.py"] = MODELING_CUSTOM.encode()
    files["README.md"] = _card(
        expect,
        "custom-code-model",
        "Needs `trust_remote_code=True`: config.json maps the Auto classes to code in this repository.\n",
    )
    return files


def pickle_repo(expect: ex.Expectation, model: Mapping[str, bytes], pickle_weights: bytes) -> Files:
    files = tiny_repo(expect, model, "Llama")
    del files["model.safetensors"]
    files["pytorch_model.bin"] = pickle_weights
    files["README.md"] = _card(
        expect,
        "pickle-only-model",
        "Weights only as a PyTorch pickle (`pytorch_model.bin`, plain tensors); no safetensors.\n",
    )
    return files


def noncommercial_repo(expect: ex.Expectation, model: Mapping[str, bytes]) -> Files:
    files = tiny_repo(expect, model, "Llama")
    files["LICENSE"] = licenses.CC_BY_NC_4_0.encode()
    files["README.md"] = _card(
        expect,
        "noncommercial-model",
        "Licensed CC BY-NC 4.0: no commercial use.\n",
    )
    return files


def llama3_license_repo(expect: ex.Expectation, model: Mapping[str, bytes]) -> Files:
    files = tiny_repo(expect, model, "Llama")
    files["LICENSE"] = licenses.LLAMA3_EXCERPT.encode()
    files["README.md"] = _card(
        expect,
        "llama3-licensed-model",
        "Released under the Meta Llama 3 Community License (see LICENSE): a custom licence.\n",
        {"license_name": "llama3", "license_link": "LICENSE"},
    )
    return files
