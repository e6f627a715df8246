"""registry/identifiers.py: one rule per identifier, and messages that stay on one line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.identifiers import (
    MAX_SHOWN,
    InvalidIdentifierError,
    check_entry_id,
    check_http_url,
    check_region,
    check_repo_file,
    check_repo_id,
    check_revision,
    check_sha,
    check_sha256,
    check_template_id,
    is_safe_repo_file,
    shown,
)

TRAVERSALS = ["..", "../x", "a/../b", "/etc/passwd", "a//b", "", ".", "a\nb", "a\\b", "a\x00b", "\uff41/\uff42", "a b"]


@pytest.mark.parametrize("value", ["Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct", "a/b", "o_1/x.y_"])
def test_hub_ids_the_hub_allows_pass(value: str) -> None:
    assert check_repo_id(value) == value


@pytest.mark.parametrize(
    "value", [*TRAVERSALS, "a/b/c", "org/", "/name", "-org/x", "org/x-", "org/x.", "a--b/c", "a/b--c", "o" * 97 + "/x"]
)
def test_malformed_repo_ids_fail(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="not a Hub model id"):
        check_repo_id(value)


def test_a_double_dash_would_make_two_repositories_share_an_entry_id() -> None:
    # a--b/c and a/b--c would both be entry `a--b--c`: the Hub forbids '--' and so does the rule.
    for value in ("a--b/c", "a/b--c"):
        with pytest.raises(InvalidIdentifierError):
            check_repo_id(value)


@pytest.mark.parametrize("value", ["main", "v1.0", "refs/pr/3", "0" * 40, "release_2"])
def test_revisions(value: str) -> None:
    assert check_revision(value) == value


@pytest.mark.parametrize("value", [*TRAVERSALS, "main/", "x.lock", "refs/.hidden", "-main", "a" * 201])
def test_bad_revisions(value: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="not a revision"):
        check_revision(value)


def test_shas() -> None:
    assert check_sha("a" * 40) and check_sha256("b" * 64)
    for bad in ("A" * 40, "a" * 39, "g" * 40, "a" * 40 + "\n"):
        with pytest.raises(InvalidIdentifierError, match="40-hex"):
            check_sha(bad)
    with pytest.raises(InvalidIdentifierError, match="sha256"):
        check_sha256("../../keys/x")


@pytest.mark.parametrize("value", ["model.safetensors", "1_Pooling/config.json", "onnx/model.onnx", "a/b/c/d.json"])
def test_repo_files(value: str) -> None:
    assert check_repo_file(value) == value and is_safe_repo_file(value)


@pytest.mark.parametrize("value", [*TRAVERSALS, "a/b/c/d/e.json", ".hidden", "x" * 129])
def test_repo_files_that_could_escape_a_directory(value: str) -> None:
    assert not is_safe_repo_file(value)
    with pytest.raises(InvalidIdentifierError):
        check_repo_file(value)


def test_service_urls() -> None:
    assert check_http_url("http://127.0.0.1:8000/v1") and check_http_url("https://huggingface.co")
    for bad in ("127.0.0.1:8000/v1", "file:///etc/passwd", "http://", "ftp://x/v1", "", "http://[::1", "http://a\nb"):
        with pytest.raises(InvalidIdentifierError, match="http"):
            check_http_url(bad)


def test_catalog_slugs_and_regions() -> None:
    assert check_template_id("qwen--qwen3-32b--128k-nvidia-2xh100")
    assert check_template_id("qwen--qwen3-32b--0.5k-cpu")
    assert check_entry_id("huggingfacetb--smollm2-135m-instruct")
    assert check_region("eastus") and check_region("west-europe-2")
    for bad in ("../x", "Qwen--X", "a..b", "x/y", ""):
        with pytest.raises(InvalidIdentifierError):
            check_template_id(bad)
        with pytest.raises(InvalidIdentifierError):
            check_entry_id(bad)
    with pytest.raises(InvalidIdentifierError, match="entry id"):
        check_entry_id("nodashes")
    for bad in ("EastUS", "east us", "-east", "../x", "a" * 64):
        with pytest.raises(InvalidIdentifierError, match="region"):
            check_region(bad)


@given(st.text(max_size=5000))
def test_every_message_is_one_bounded_printable_line(value: str) -> None:
    try:
        check_repo_id(value)
    except InvalidIdentifierError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message and "\x1b" not in message
        assert message.isascii() and message.isprintable()
        assert len(message) < MAX_SHOWN + 200
    assert len(shown(value)) <= MAX_SHOWN
