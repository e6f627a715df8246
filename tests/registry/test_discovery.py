"""Unit tests of stage 1's input: the policy's requested models."""

from __future__ import annotations

import pytest

from registry.discovery import DiscoveryError, RequestedModel

SHA = "a" * 40


@pytest.mark.parametrize(
    ("text", "repo", "rev"),
    [("org/name", "org/name", None), (f"org/name@{SHA}", "org/name", SHA), ("  org/n.a-m_e  ", "org/n.a-m_e", None)],
)
def test_requested_entries_parse(text: str, repo: str, rev: str | None) -> None:
    parsed = RequestedModel.parse(text)
    assert (parsed.repo_id, parsed.revision) == (repo, rev)


@pytest.mark.parametrize("text", ["name-only", "org/name@main", "org/name@abc", "a/b/c", ""])
def test_malformed_requested_entries_are_errors_that_say_where(text: str) -> None:
    with pytest.raises(DiscoveryError, match=r"discovery\.requested"):
        RequestedModel.parse(text)
