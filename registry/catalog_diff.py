"""The records of the week-over-week catalog diff, and what a run saw upstream (no rules, no I/O).

`UpstreamObservation` is what this run saw at the Hub for one repository that has (or had) an entry
(`observe_upstream` gathers them); `DiffItem` is one entry's change with its reason and the status the entry
must have after the run; `CatalogDiff` is all of them. The rules that decide each item (withdraw, flag,
update, keep) live in decisions/reconciliation.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from pydantic import Field

from registry.schema import CatalogEntry, EntryStatus, Record, ScreeningReport


class DiffKind(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    WITHDRAWN = "withdrawn"
    FLAGGED = "flagged"


class UpstreamObservation(Record):
    """What this run saw at the Hub for one repository that has (or had) a catalog entry."""

    repo_id: str
    gone: bool = Field(default=False, description="the Hub answered 404 (repository not found)")
    revision: str | None = Field(default=None, description="the head commit seen now, if the repo was seen")
    screening: ScreeningReport | None = Field(default=None, description="this run's screening at `revision`")


class DiffItem(Record):
    entry_id: str
    repo_id: str
    kind: DiffKind
    reason: str
    old_revision: str | None = None
    new_revision: str | None = None
    status: EntryStatus | None = Field(default=None, description="the status the entry must have after the run")


class CatalogDiff(Record):
    items: tuple[DiffItem, ...] = ()

    def of(self, kind: DiffKind) -> tuple[DiffItem, ...]:
        return tuple(item for item in self.items if item.kind is kind)

    @property
    def counts(self) -> dict[str, int]:
        return {kind.value: len(self.of(kind)) for kind in DiffKind}

    @property
    def changed(self) -> bool:
        return any(item.kind is not DiffKind.UNCHANGED for item in self.items)


def observe_upstream(
    previous: Sequence[CatalogEntry],
    seen_revisions: Mapping[str, str],
    screenings: Mapping[str, ScreeningReport],
    lookup: Callable[[str], str | None],
) -> dict[str, UpstreamObservation]:
    """What the Hub shows now for every repository that had an entry.

    `seen_revisions`/`screenings` come from this run (repo id -> head sha / screening at that sha); a repo the run
    did not see is looked up with `lookup(repo_id)`, which returns its head sha, or None when it is gone (404).
    """
    observations: dict[str, UpstreamObservation] = {}
    for entry in previous:
        repo_id = entry.model.repo_id
        if repo_id in observations:
            continue
        revision = seen_revisions.get(repo_id)
        if revision is None:
            revision = lookup(repo_id)
            if revision is None:
                observations[repo_id] = UpstreamObservation(repo_id=repo_id, gone=True)
                continue
        observations[repo_id] = UpstreamObservation(
            repo_id=repo_id, revision=revision, screening=screenings.get(repo_id)
        )
    return observations
