"""Unit tests of what the Hub test server derives from repo files, and of its Range parsing."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.hub.app import HubError, parse_range
from devstack.hub.cards import (
    exposed_config,
    front_matter,
    infer_library,
    infer_pipeline,
    load_json_object,
    repo_tags,
    safetensors_info,
)
from devstack.hub.control import Faults
from tests.fixtures.hub import model_card, tiny_safetensors


def test_front_matter_parses_a_card_and_normalizes_values() -> None:
    card = front_matter(b"---\nlicense: mit\ndate: 2024-01-02\ntags: [a, b]\n---\n# body\n")
    assert card == {"license": "mit", "date": "2024-01-02", "tags": ["a", "b"]}
    assert front_matter(model_card({"x": 1})) == {"x": 1}


@pytest.mark.parametrize(
    "readme",
    [
        None,
        b"",
        b"# no front matter\n",
        b"---\nunterminated: yes\n",
        b"---\n- a list\n---\n",
        b"---\nkey: [unclosed\n---\n",
        b"---\n!!python/object/apply:os.system ['echo hacked']\n---\n",
        b"---\na: &a [*a]\n---\n",  # a recursive node
    ],
)
def test_front_matter_rejects_malformed_or_hostile(readme: bytes | None) -> None:
    assert front_matter(readme) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_front_matter_never_raises(raw: bytes) -> None:
    result = front_matter(b"---\n" + raw + b"\n---\n")
    assert result is None or isinstance(result, dict)
    if result is not None:
        json.dumps(result)  # always serializable


def test_exposed_config_keeps_only_hub_keys_with_valid_types() -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "auto_map": {"AutoModel": "modeling.Model", "bad": 3},
        "hidden_size": 64,
        "quantization_config": {"quant_method": "gptq", "bits": 4, "secret": "x"},
    }
    tokenizer = {"eos_token": {"content": "</s>"}, "chat_template": "{{ x }}", "model_max_length": 5}
    out = exposed_config(config, tokenizer, None)
    assert out == {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "auto_map": {"AutoModel": "modeling.Model"},
        "quantization_config": {"quant_method": "gptq", "bits": 4},
        "tokenizer_config": {
            "eos_token": {"content": "</s>", "__type": "AddedToken"},
            "chat_template": "{{ x }}",
        },
    }
    assert exposed_config({"architectures": "not-a-list"}, None, None) is None
    assert load_json_object(b"[1]") is None and load_json_object(b"{bad") is None


def test_safetensors_info_counts_and_rejects_bad_headers() -> None:
    files = {"model.safetensors": tiny_safetensors(), "sub/other.safetensors": b"ignored: root files win"}

    def read(path: str, n: int) -> bytes | None:
        data = files.get(path)
        return data[:n] if data is not None else None

    assert safetensors_info(sorted(files), read) == {"parameters": {"F32": 128, "F16": 72}, "total": 200}
    negative = json.dumps({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}).encode()
    files["model.safetensors"] = struct.pack("<Q", len(negative)) + negative
    assert safetensors_info(sorted(files), read) is None
    files["model.safetensors"] = b"\x01"
    assert safetensors_info(sorted(files), read) is None
    assert safetensors_info(["README.md"], read) is None


def test_library_pipeline_and_tags_inference() -> None:
    paths = ["config.json", "model.safetensors"]
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
    assert infer_library(None, paths) == "transformers"
    assert infer_library({"library_name": "timm"}, paths) == "timm"
    assert infer_library(None, ["model_index.json"]) == "diffusers"
    assert infer_pipeline(None, config) == "text-generation"
    assert infer_pipeline({"pipeline_tag": "fill-mask"}, config) == "fill-mask"
    card = {"tags": ["x"], "license": "mit", "datasets": ["d"], "base_model": "org/base", "language": ["en"]}
    tags = repo_tags(card, "transformers", "text-generation", paths, config)
    assert tags == [
        "transformers",
        "safetensors",
        "x",
        "text-generation",
        "gpt2",
        "en",
        "dataset:d",
        "base_model:org/base",
        "license:mit",
    ]


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-7", 10, (0, 7)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=0-100000", 10, (0, 9)),
        ("bytes=0-1,4-5", 10, None),  # multi-range: whole file
        ("items=0-1", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=5-2", "bytes=0-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    size = 0 if header == "bytes=0-0" else 10
    with pytest.raises(HubError) as error:
        parse_range(header, size)
    assert error.value.status == 416 and error.value.headers["Content-Range"] == f"bytes */{size}"


def test_faults_are_spent_after_times_and_filter_by_method() -> None:
    faults = Faults()
    faults.add(r"/resolve/", status=429, times=2, method="head")
    assert faults.take("GET", "/o/n/resolve/main/x") is None
    assert faults.take("HEAD", "/o/n/resolve/main/x") is not None
    assert faults.take("HEAD", "/o/n/resolve/main/x") is not None
    assert faults.take("HEAD", "/o/n/resolve/main/x") is None
    with pytest.raises(ValueError):
        faults.add("x", status=42)
