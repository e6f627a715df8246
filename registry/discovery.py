"""Stage 1's input: the Hub's trending listing plus the policy's requested models, as pinned candidates.

Every candidate is pinned to the commit sha seen at discovery. Which of them are curated is a decision of its
own (decisions/selection.py); the candidates returned here are not decided yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.errors import HubError
from registry.hub import HubSource, RepoInfo
from registry.identifiers import InvalidIdentifierError, check_repo_id, check_sha, shown
from registry.schema import Candidate, CandidateSource, ModelRef
from registry.settings import DiscoverySettings


class DiscoveryError(HubError):
    """A requested model could not be resolved, or the policy's request list is malformed."""


@dataclass(frozen=True)
class Unresolved:
    """A requested model that could not be pinned (gone, no such revision, no access, the Hub failing)."""

    repo_id: str
    revision: str | None
    reason: str


@dataclass(frozen=True)
class RequestedModel:
    repo_id: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> RequestedModel:
        """`org/name` or `org/name@<40-hex sha>` (a requested model, from the policy or `--request`)."""
        repo_id, at, revision = text.strip().partition("@")
        try:
            return cls(repo_id=check_repo_id(repo_id), revision=check_sha(revision) if at else None)
        except InvalidIdentifierError as exc:
            raise DiscoveryError(
                f"requested model {shown(text)} is not 'org/name' or 'org/name@<40-hex sha>' ({exc}); fix "
                "discovery.requested or --request"
            ) from exc


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


# ---------------------------------------------------------------------------------------------- discovery


def pinned_candidates(
    source: HubSource,
    policy: DiscoverySettings,
    *,
    limit: int | None = None,
    requested: Sequence[str] | None = None,
    unresolved: list[Unresolved] | None = None,
) -> list[Candidate]:
    """Trending models (best first) followed by requested ones not already listed, each pinned, not decided.

    With `unresolved` given, a requested model that cannot be pinned (any HubError, after the client's
    retries) is appended there and skipped, instead of raising: one bad request must not stop a run.
    """
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
        try:
            info = source.model_info(request.repo_id, revision=request.revision)
        except HubError as exc:
            if unresolved is None:
                raise
            unresolved.append(
                Unresolved(request.repo_id, request.revision, f"the requested model did not resolve: {exc}")
            )
            continue
        candidates.append(
            candidate_from_info(info, rank=None, source=CandidateSource.REQUESTED, revision=request.revision)
        )
    return candidates


def resolve_one(source: HubSource, repo_id: str, revision: str | None = None) -> Candidate:
    """One model by hand (`curate rerun`): pinned now, source `manual` (selection then ignores the filters)."""
    info = source.model_info(repo_id, revision=revision)
    return candidate_from_info(info, rank=None, source=CandidateSource.MANUAL, revision=None)
