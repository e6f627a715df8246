"""Unit tests of the selection decision: stage 1's policy filters (pure logic on Candidate records)."""

from __future__ import annotations

import pytest

from decisions.selection import decide, select_candidates, selection_rule
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
    decided = decide(make(), selection_rule(POLICY))
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
    decided = decide(candidate, selection_rule(POLICY))
    assert decided.decision is Decision.SKIPPED
    assert fragment in decided.reason


def test_first_failing_filter_gives_the_reason() -> None:
    decided = decide(make("badorg/x", gated=True, pipeline_tag="other"), selection_rule(POLICY))
    assert "excluded" in decided.reason


def test_unknown_parameter_count_is_not_skipped_for_size() -> None:
    assert decide(make(parameters=None), selection_rule(POLICY)).decision is Decision.SELECTED


def test_empty_lists_mean_any_task_and_library() -> None:
    policy = DiscoverySettings(pipeline_tags=(), libraries=(), max_parameters=0)
    decided = decide(make(pipeline_tag="anything", library_name=None, parameters=10**12), selection_rule(policy))
    assert decided.decision is Decision.SELECTED


def test_already_curated_revision_is_skipped_only_when_policy_says_so() -> None:
    curated = {ModelRef(repo_id="org/model", revision=SHA)}
    skipping = decide(make(), selection_rule(POLICY, lambda ref: ref in curated))
    assert skipping.decision is Decision.SKIPPED
    assert "already curated" in skipping.reason
    keep = POLICY.model_copy(update={"skip_already_curated": False})
    assert decide(make(), selection_rule(keep, lambda ref: ref in curated)).decision is Decision.SELECTED


def test_requested_reason_names_the_policy() -> None:
    decided = decide(make(rank=None, source=CandidateSource.REQUESTED), selection_rule(POLICY))
    assert decided.reason.startswith("requested by policy")


def test_a_maintainers_request_overrides_every_filter() -> None:
    manual = make("badorg/x", gated=True, rank=None, source=CandidateSource.MANUAL)
    assert decide(manual, selection_rule(POLICY)).reason == "requested by a maintainer"
    assert decide(manual, selection_rule(POLICY)).decision is Decision.SELECTED
    skipped = decide(make("badorg/x", rank=None, source=CandidateSource.REQUESTED), selection_rule(POLICY))
    assert skipped.decision is Decision.SKIPPED and "not requested by a maintainer" not in skipped.reason


def test_select_candidates_keeps_the_order() -> None:
    decided = select_candidates([make("a/one"), make("badorg/two"), make("c/three")], POLICY)
    assert [c.decision for c in decided] == [Decision.SELECTED, Decision.SKIPPED, Decision.SELECTED]
    assert [c.repo_id for c in decided] == ["a/one", "badorg/two", "c/three"]
