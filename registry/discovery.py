"""Stage 1's rules: turn the Hub's trending listing plus the policy's requested models into pinned candidates.

Every candidate is pinned to the commit sha seen at discovery and carries the policy's decision with a reason a
maintainer can read. The filters are small composable functions; the first that objects decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from registry.errors import HubError
from registry.hub import HubSource, RepoInfo
from registry.schema import Candidate, CandidateSource, Decision, ModelRef
from registry.settings import DiscoverySettings

# A filter returns None to let a candidate through, or the reason it is skipped.
CandidateFilter = Callable[[Candidate], str | None]

_REQUEST = re.compile(r"^(?P<repo>[^@\s/]+/[^@\s/]+)(?:@(?P<rev>[0-9a-f]{40}))?$")


class DiscoveryError(HubError):
    """A requested model could not be resolved, or the policy's request list is malformed."""


@dataclass(frozen=True)
class RequestedModel:
    repo_id: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> RequestedModel:
        match = _REQUEST.match(text.strip())
        if not match:
            raise DiscoveryError(
                f"discovery.requested entry {text!r} is not 'org/name' or 'org/name@<40-hex sha>'; fix curation.toml"
            )
        return cls(repo_id=match["repo"], revision=match["rev"])


def candidate_from_info(
    info: RepoInfo, *, rank: int | None, source: CandidateSource, revision: str | None = None
) -> Candidate:
    sha = revision or info.sha
    if not sha:
        raise DiscoveryError(f"the Hub gave no commit sha for {info.repo_id}; cannot pin it", repo_id=info.repo_id)
    license_ = info.license or next((t.split(":", 1)[1] for t in info.tags if t.startswith("license:")), None)
    return Candidate(
        ref=ModelRef(repo_id=info.repo_id, revision=sha),
        rank=rank,
        source=source,
        trending_score=info.trending_score,
        likes=info.likes,
        downloads=info.downloads,
        pipeline_tag=info.pipeline_tag,
        library_name=info.library_name,
        license=license_,
        gated=bool(info.gated),
        private=info.private,
        tags=info.tags,
        parameters=info.safetensors_total,
        last_modified=info.last_modified,
    )


# ---------------------------------------------------------------------------------------------- filters


def excluded_org(policy: DiscoverySettings) -> CandidateFilter:
    excluded = {org.lower() for org in policy.excluded_orgs}

    def check(candidate: Candidate) -> str | None:
        if candidate.ref.org.lower() in excluded:
            return f"organisation {candidate.ref.org!r} is excluded by policy (discovery.excluded_orgs)"
        return None

    return check


def gated(policy: DiscoverySettings) -> CandidateFilter:
    def check(candidate: Candidate) -> str | None:
        if candidate.gated and not policy.include_gated:
            return "gated repository and discovery.include_gated is false"
        return None

    return check


def task(policy: DiscoverySettings) -> CandidateFilter:
    allowed = set(policy.pipeline_tags)

    def check(candidate: Candidate) -> str | None:
        if allowed and candidate.pipeline_tag not in allowed:
            shown = candidate.pipeline_tag or "none"
            return f"task {shown!r} is not curated (discovery.pipeline_tags: {', '.join(sorted(allowed))})"
        return None

    return check


def library(policy: DiscoverySettings) -> CandidateFilter:
    allowed = set(policy.libraries)

    def check(candidate: Candidate) -> str | None:
        if allowed and candidate.library_name not in allowed:
            shown = candidate.library_name or "none"
            return f"library {shown!r} is not curated (discovery.libraries: {', '.join(sorted(allowed))})"
        return None

    return check


def max_parameters(policy: DiscoverySettings) -> CandidateFilter:
    def check(candidate: Candidate) -> str | None:
        limit = policy.max_parameters
        if limit and candidate.parameters is not None and candidate.parameters > limit:
            return f"{candidate.parameters:,} parameters exceeds discovery.max_parameters ({limit:,})"
        return None

    return check


def not_already_curated(is_curated: Callable[[ModelRef], bool]) -> CandidateFilter:
    def check(candidate: Candidate) -> str | None:
        if is_curated(candidate.ref):
            return f"already curated at revision {candidate.ref.revision[:12]} under this policy"
        return None

    return check


def policy_filters(
    policy: DiscoverySettings, is_curated: Callable[[ModelRef], bool] | None = None
) -> list[CandidateFilter]:
    filters = [excluded_org(policy), gated(policy), task(policy), library(policy), max_parameters(policy)]
    if is_curated is not None and policy.skip_already_curated:
        filters.append(not_already_curated(is_curated))
    return filters


def decide(candidate: Candidate, filters: Sequence[CandidateFilter]) -> Candidate:
    for check in filters:
        reason = check(candidate)
        if reason is not None:
            return candidate.model_copy(update={"decision": Decision.SKIPPED, "reason": reason})
    why = "requested by policy" if candidate.source is CandidateSource.REQUESTED else f"trending #{candidate.rank}"
    return candidate.model_copy(update={"decision": Decision.SELECTED, "reason": f"{why}; passes every filter"})


# ---------------------------------------------------------------------------------------------- discovery


def discover_candidates(
    source: HubSource,
    policy: DiscoverySettings,
    *,
    limit: int | None = None,
    requested: Sequence[str] | None = None,
    is_curated: Callable[[ModelRef], bool] | None = None,
) -> list[Candidate]:
    """Trending models (best first) followed by requested ones not already listed, each decided by policy."""
    listing = source.trending(limit or policy.limit)
    candidates: list[Candidate] = []
    seen: set[str] = set()
    for rank, info in enumerate(listing, start=1):
        if info.repo_id in seen:
            continue
        seen.add(info.repo_id)
        pinned = info if info.sha else source.model_info(info.repo_id)
        candidates.append(candidate_from_info(pinned, rank=rank, source=CandidateSource.TRENDING))

    wanted = [RequestedModel.parse(text) for text in (requested if requested is not None else policy.requested)]
    for request in wanted:
        if request.repo_id in seen:
            continue
        seen.add(request.repo_id)
        info = source.model_info(request.repo_id, revision=request.revision)
        candidates.append(
            candidate_from_info(info, rank=None, source=CandidateSource.REQUESTED, revision=request.revision)
        )

    filters = policy_filters(policy, is_curated)
    return [decide(candidate, filters) for candidate in candidates]


def resolve_one(source: HubSource, repo_id: str, revision: str | None = None) -> Candidate:
    """One model by hand (`curate rerun`): pinned now, selected regardless of the trending filters."""
    info = source.model_info(repo_id, revision=revision)
    candidate = candidate_from_info(info, rank=None, source=CandidateSource.MANUAL, revision=None)
    return candidate.model_copy(update={"decision": Decision.SELECTED, "reason": "requested by a maintainer"})
