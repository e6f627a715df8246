from __future__ import annotations

import json

import pytest

from registry import finding_codes as codes
from scanners.remote_code import AUTO_MAP_FILES, scan_remote_code


@pytest.mark.parametrize("name", AUTO_MAP_FILES)
def test_auto_map_in_every_config_kind(name: str) -> None:
    config = json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}).encode()
    found = scan_remote_code([name], {name: config}, {}, None)
    assert [f.code for f in found] == [codes.REMOTE_CODE_AUTO_MAP]
    assert found[0].path == name


def test_cross_repo_reference_in_tokenizer_list() -> None:
    config = json.dumps({"auto_map": {"AutoTokenizer": ["evil/repo--tokenization_x.Tok", None]}}).encode()
    found = {f.code for f in scan_remote_code([], {"tokenizer_config.json": config}, {}, None)}
    assert found == {codes.REMOTE_CODE_AUTO_MAP, codes.REMOTE_CODE_CROSS_REPO}


def test_hub_config_auto_map_counts_even_without_the_file() -> None:
    found = scan_remote_code([], {}, {}, None, hub_config={"tokenizer_config": {"auto_map": {"AutoTokenizer": "t.T"}}})
    assert [f.path for f in found] == ["tokenizer_config.json"]


def test_python_files_anywhere_and_handlers() -> None:
    found = scan_remote_code(["src/deep/nested/modeling.py", "handler.py", "lib/ext.so", "README.md"], {}, {}, None)
    codes_by_path = {(f.code, f.path) for f in found}
    assert (codes.REMOTE_CODE_PYTHON_FILE, "src/deep/nested/modeling.py") in codes_by_path
    assert (codes.REMOTE_CODE_HANDLER, "handler.py") in codes_by_path
    assert (codes.REMOTE_CODE_PYTHON_FILE, "lib/ext.so") in codes_by_path
    assert not any(p == "README.md" for _, p in codes_by_path)


def test_card_hints() -> None:
    readme = "```python\nAutoModel.from_pretrained('x', trust_remote_code=True)\n```"
    assert [f.code for f in scan_remote_code([], {}, {}, readme)] == [codes.REMOTE_CODE_CARD_HINT]
    assert [f.code for f in scan_remote_code([], {}, {"tags": ["custom_code"]}, None)] == [codes.REMOTE_CODE_CARD_HINT]


def test_clean_and_garbage_configs() -> None:
    assert scan_remote_code(["config.json"], {"config.json": b'{"model_type": "llama"}'}, {}, "Use it.") == []
    assert scan_remote_code(["config.json"], {"config.json": b"\xff\xfe not json"}, {}, None) == []


def test_hub_config_nested_processor_config_auto_map_counts() -> None:
    hub_config = {
        "architectures": ["LlavaForConditionalGeneration"],
        "processor_config": {"auto_map": {"AutoProcessor": "evil/repo--processing.P"}},
    }
    found = scan_remote_code([], {}, {}, None, hub_config=hub_config)
    assert {(f.code, f.path) for f in found} == {
        (codes.REMOTE_CODE_AUTO_MAP, "processor_config.json"),
        (codes.REMOTE_CODE_CROSS_REPO, "processor_config.json"),
    }
