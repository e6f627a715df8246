"""Select a candidate (stage 1): which discovered repositories are curated this run, each with its reason.

Policy: `[discovery]` in curation.toml (`excluded_orgs`, `include_gated`, `pipeline_tags`, `libraries`,
`max_parameters`, `skip_already_curated`). Every filter is a `Check` (registry/rules.py); a candidate is
selected when all of them hold, or when a maintainer asked for it by hand (`curate rerun`, source `manual`),
which overrides the filters. A skipped candidate's reason is the first objection in the order below, so the
`discovery-summary` artifact and `curate catalog candidates` name one reason per candidate.
"""

from __future__ import annotations

from collections.abc import Callable

from registry.rules import AllOf, AnyOf, Check, Rule
from registry.schema import Candidate, CandidateSource, Decision, ModelRef
from registry.settings import DiscoverySettings

IsCurated = Callable[[ModelRef], bool]


def excluded_org(policy: DiscoverySettings) -> Rule[Candidate]:
    excluded = {org.lower() for org in policy.excluded_orgs}

    def objection(candidate: Candidate) -> str | None:
        if candidate.ref.org.lower() in excluded:
            return f"organisation {candidate.ref.org!r} is excluded by policy (discovery.excluded_orgs)"
        return None

    return Check(objection)


def gated(policy: DiscoverySettings) -> Rule[Candidate]:
    def objection(candidate: Candidate) -> str | None:
        if candidate.gated and not policy.include_gated:
            return "gated repository and discovery.include_gated is false"
        return None

    return Check(objection)


def _listed(allowed: tuple[str, ...], what: str, key: str, value: Callable[[Candidate], str | None]) -> Rule[Candidate]:
    """Objects to a candidate whose `value` is not in `allowed` (an empty list allows any)."""

    def objection(candidate: Candidate) -> str | None:
        if allowed and value(candidate) not in allowed:
            shown = value(candidate) or "none"
            return f"{what} {shown!r} is not curated (discovery.{key}: {', '.join(sorted(allowed))})"
        return None

    return Check(objection)


def task(policy: DiscoverySettings) -> Rule[Candidate]:
    return _listed(policy.pipeline_tags, "task", "pipeline_tags", lambda candidate: candidate.pipeline_tag)


def library(policy: DiscoverySettings) -> Rule[Candidate]:
    return _listed(policy.libraries, "library", "libraries", lambda candidate: candidate.library_name)


def max_parameters(policy: DiscoverySettings) -> Rule[Candidate]:
    def objection(candidate: Candidate) -> str | None:
        limit = policy.max_parameters
        if limit and candidate.parameters is not None and candidate.parameters > limit:
            return f"{candidate.parameters:,} parameters exceeds discovery.max_parameters ({limit:,})"
        return None

    return Check(objection)


def not_already_curated(is_curated: IsCurated) -> Rule[Candidate]:
    def objection(candidate: Candidate) -> str | None:
        if is_curated(candidate.ref):
            return f"already curated at revision {candidate.ref.revision[:12]} under this policy"
        return None

    return Check(objection)


def requested_by_a_maintainer(candidate: Candidate) -> str | None:
    return None if candidate.source is CandidateSource.MANUAL else "not requested by a maintainer"


def selection_rule(policy: DiscoverySettings, is_curated: IsCurated | None = None) -> Rule[Candidate]:
    """The policy's filters, in the order their reasons are given; a maintainer's request overrides them."""
    filters: list[Rule[Candidate]] = [
        excluded_org(policy),
        gated(policy),
        task(policy),
        library(policy),
        max_parameters(policy),
    ]
    if is_curated is not None and policy.skip_already_curated:
        filters.append(not_already_curated(is_curated))
    return AnyOf(AllOf(*filters), Check(requested_by_a_maintainer))


def decide(candidate: Candidate, rule: Rule[Candidate]) -> Candidate:
    """The candidate with the rule's decision and its reason (the first objection when skipped)."""
    outcome = rule.evaluate(candidate)
    if not outcome.accepted:
        reason = (outcome.reasons or outcome.review or ("skipped by policy",))[0]
        return candidate.model_copy(update={"decision": Decision.SKIPPED, "reason": reason})
    if candidate.source is CandidateSource.MANUAL:
        return candidate.model_copy(update={"decision": Decision.SELECTED, "reason": "requested by a maintainer"})
    why = "requested by policy" if candidate.source is CandidateSource.REQUESTED else f"trending #{candidate.rank}"
    return candidate.model_copy(update={"decision": Decision.SELECTED, "reason": f"{why}; passes every filter"})


def select_candidates(
    candidates: list[Candidate], policy: DiscoverySettings, is_curated: IsCurated | None = None
) -> list[Candidate]:
    """Every candidate decided by the policy (same order)."""
    rule = selection_rule(policy, is_curated)
    return [decide(candidate, rule) for candidate in candidates]
