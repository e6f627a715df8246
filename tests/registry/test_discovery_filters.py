"""Unit tests of stage 1's policy filters (pure logic on Candidate records)."""

from __future__ import annotations

import pytest

from registry.discovery import DiscoveryError, RequestedModel, decide, policy_filters
from registry.schema import Candidate, CandidateSource, Decision, ModelRef
from registry.settings import DiscoverySettings

SHA = "a" * 40


def make(repo_id: str = "org/model", **fields: object) -> Candidate:
    base: dict[str, object] = {
        "ref": ModelRef(repo_id=repo_id, revision=SHA),
        "rank": 1,
        "pipeline_tag": "text-generation",
        "library_name": "transformers",
        "parameters": 1_000_000,
    }
    base.update(fields)
    return Candidate.model_validate(base)


POLICY = DiscoverySettings(
    pipeline_tags=("text-generation",),
    libraries=("transformers",),
    max_parameters=10_000_000,
    include_gated=False,
    excluded_orgs=("BadOrg",),
)


def test_candidate_passing_every_filter_is_selected_with_its_rank() -> None:
    decided = decide(make(), policy_filters(POLICY))
    assert decided.decision is Decision.SELECTED
    assert "trending #1" in decided.reason


@pytest.mark.parametrize(
    ("candidate", "fragment"),
    [
        (make("badorg/x"), "organisation 'badorg' is excluded"),
        (make(gated=True), "gated repository"),
        (make(pipeline_tag="image-classification"), "task 'image-classification' is not curated"),
        (make(pipeline_tag=None), "task 'none' is not curated"),
        (make(library_name="diffusers"), "library 'diffusers' is not curated"),
        (make(parameters=20_000_000), "20,000,000 parameters exceeds"),
    ],
)
def test_each_filter_skips_with_a_reason(candidate: Candidate, fragment: str) -> None:
    decided = decide(candidate, policy_filters(POLICY))
    assert decided.decision is Decision.SKIPPED
    assert fragment in decided.reason


def test_first_failing_filter_gives_the_reason() -> None:
    decided = decide(make("badorg/x", gated=True, pipeline_tag="other"), policy_filters(POLICY))
    assert "excluded" in decided.reason


def test_unknown_parameter_count_is_not_skipped_for_size() -> None:
    assert decide(make(parameters=None), policy_filters(POLICY)).decision is Decision.SELECTED


def test_empty_lists_mean_any_task_and_library() -> None:
    policy = DiscoverySettings(pipeline_tags=(), libraries=(), max_parameters=0)
    decided = decide(make(pipeline_tag="anything", library_name=None, parameters=10**12), policy_filters(policy))
    assert decided.decision is Decision.SELECTED


def test_already_curated_revision_is_skipped_only_when_policy_says_so() -> None:
    curated = {ModelRef(repo_id="org/model", revision=SHA)}
    skipping = decide(make(), policy_filters(POLICY, lambda ref: ref in curated))
    assert skipping.decision is Decision.SKIPPED
    assert "already curated" in skipping.reason
    keep = POLICY.model_copy(update={"skip_already_curated": False})
    assert decide(make(), policy_filters(keep, lambda ref: ref in curated)).decision is Decision.SELECTED


def test_requested_reason_names_the_policy() -> None:
    decided = decide(make(rank=None, source=CandidateSource.REQUESTED), policy_filters(POLICY))
    assert decided.reason.startswith("requested by policy")


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
