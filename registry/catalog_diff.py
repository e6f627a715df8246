"""The week-over-week catalog diff and the withdrawal / flag rules (pure functions, no I/O).

`diff_catalog(previous, current, upstream)` compares the entries before a run (`previous`, e.g.
`store.entries()` taken at the start) with the entries after it (`current`) and what the run saw upstream for
each repository (`upstream`: repo id -> `UpstreamObservation`). Every entry gets exactly one `DiffItem`:

- `added`: no previous entry with this id;
- `updated`: published again at a new revision, or at the same revision with other content (templates,
  metrics, images, weights, licence, tool versions; provenance run ids and timestamps do not count);
- `unchanged`: same content as before (a flagged or withdrawn entry that stays so is unchanged too);
- `withdrawn`: the repository is gone at the Hub (404), or its licence at the newly seen revision is denied
  or unknown (a blocking `licenses` finding), or the entry was withdrawn during the run;
- `flagged`: a runtime image it uses fails a rescan (`rescan_images` sets the entry's status), or the newly
  seen revision needs review, or was rejected for another reason while the entry still serves the older one.

Rules are applied in that order of severity: withdrawn > flagged > updated/added > unchanged. `status_changes`
lists the (entry id, status, reason) the caller must write with `CatalogStore.set_entry_status`;
`diff_markdown` renders the `catalog-diff` artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import Field

from registry.schema import CatalogEntry, EntryStatus, Record, ScreeningReport, Severity, Verdict

LICENSE_SCANNER = "licenses"


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


_PROVENANCE_VOLATILE = ("flow_run_ids", "timestamps")


def entry_content(entry: CatalogEntry) -> dict[str, Any]:
    """What makes an entry "the same" across runs: everything but signature, status, publication time and the
    run ids / timestamps in its provenance (a re-run that redoes nothing must not count as a change)."""
    data = entry.model_dump(mode="json", exclude={"signature", "status", "status_reason", "published_at"})
    provenance = dict(data.get("provenance") or {})
    for key in _PROVENANCE_VOLATILE:
        provenance.pop(key, None)
    data["provenance"] = provenance
    return data


def content_digest(entry: CatalogEntry) -> str:
    canonical = json.dumps(entry_content(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def same_content(a: CatalogEntry, b: CatalogEntry) -> bool:
    return content_digest(a) == content_digest(b)


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "-"


def _upstream_rule(entry: CatalogEntry, seen: UpstreamObservation | None) -> tuple[DiffKind, str] | None:
    """Withdraw or flag because of what the Hub shows now; None when upstream gives no reason to."""
    if seen is None:
        return None
    if seen.gone:
        return DiffKind.WITHDRAWN, f"the repository {entry.model.repo_id} no longer exists at the Hub (404)"
    report = seen.screening
    if report is None or seen.revision is None or seen.revision == entry.model.revision:
        return None
    if report.ref.revision != seen.revision:
        return None
    new = _short(seen.revision)
    licence = [f for f in report.findings if f.scanner == LICENSE_SCANNER and f.severity.rank >= Severity.HIGH.rank]
    if licence:
        declared = report.license.spdx or report.license.declared or "unknown"
        return DiffKind.WITHDRAWN, (
            f"the licence changed to {declared} at revision {new}, which policy does not accept: "
            + "; ".join(f.message for f in licence[:3])
        )
    if report.verdict is Verdict.NEEDS_REVIEW:
        what = "; ".join(report.review[:3]) or "see its screening report"
        return DiffKind.FLAGGED, f"revision {new} needs review before it can replace this entry: {what}"
    if report.verdict is Verdict.REJECTED:
        codes = ", ".join(sorted({f.code for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank})[:5])
        return DiffKind.FLAGGED, (
            f"revision {new} was rejected by screening ({codes or 'see its report'}); the entry still serves "
            f"revision {_short(entry.model.revision)}"
        )
    return None


def _item(
    kind: DiffKind,
    reason: str,
    current: CatalogEntry,
    before: CatalogEntry | None,
    status: EntryStatus | None,
) -> DiffItem:
    return DiffItem(
        entry_id=current.id,
        repo_id=current.model.repo_id,
        kind=kind,
        reason=reason,
        old_revision=before.model.revision if before else None,
        new_revision=current.model.revision,
        status=status,
    )


def _diff_one(before: CatalogEntry | None, current: CatalogEntry, seen: UpstreamObservation | None) -> DiffItem:
    if current.status is EntryStatus.WITHDRAWN:
        if before is not None and before.status is EntryStatus.WITHDRAWN and same_content(before, current):
            return _item(DiffKind.UNCHANGED, f"still withdrawn: {current.status_reason}", current, before, None)
        return _item(DiffKind.WITHDRAWN, current.status_reason or "withdrawn", current, before, None)
    rule = _upstream_rule(current, seen)
    if rule is not None and rule[0] is DiffKind.WITHDRAWN:
        return _item(DiffKind.WITHDRAWN, rule[1], current, before, EntryStatus.WITHDRAWN)
    flag_reasons: list[str] = []
    if current.status is EntryStatus.FLAGGED and current.status_reason:
        flag_reasons.append(current.status_reason)
    if rule is not None:
        flag_reasons.append(rule[1])
    if flag_reasons:
        reason = "; ".join(dict.fromkeys(flag_reasons))
        unchanged = (
            before is not None
            and before.status is EntryStatus.FLAGGED
            and before.status_reason == reason
            and same_content(before, current)
        )
        needs = (
            None if current.status is EntryStatus.FLAGGED and current.status_reason == reason else EntryStatus.FLAGGED
        )
        if unchanged:
            return _item(DiffKind.UNCHANGED, f"still flagged: {reason}", current, before, needs)
        return _item(DiffKind.FLAGGED, reason, current, before, needs)
    if before is None:
        templates = ", ".join(t.template.id for t in current.templates)
        return _item(
            DiffKind.ADDED, f"published with {len(current.templates)} template(s): {templates}", current, None, None
        )
    if before.model.revision != current.model.revision:
        return _item(
            DiffKind.UPDATED,
            f"new revision {_short(before.model.revision)} -> {_short(current.model.revision)}",
            current,
            before,
            None,
        )
    if not same_content(before, current):
        changed = sorted(k for k, v in entry_content(current).items() if entry_content(before).get(k) != v)
        return _item(
            DiffKind.UPDATED, f"re-published at the same revision ({', '.join(changed)} changed)", current, before, None
        )
    if before.status is not current.status:
        return _item(DiffKind.UPDATED, f"status {before.status.value} -> {current.status.value}", current, before, None)
    return _item(DiffKind.UNCHANGED, "no upstream or catalog change", current, before, None)


def diff_catalog(
    previous: Sequence[CatalogEntry],
    current: Sequence[CatalogEntry],
    upstream: Mapping[str, UpstreamObservation] | None = None,
) -> CatalogDiff:
    """One `DiffItem` per entry id in `previous` or `current`, sorted by id (see the module docstring)."""
    seen = dict(upstream or {})
    before = {e.id: e for e in previous}
    after = {e.id: e for e in current}
    items: list[DiffItem] = []
    for entry_id in sorted(set(before) | set(after)):
        now = after.get(entry_id)
        if now is None:
            old = before[entry_id]
            items.append(
                DiffItem(
                    entry_id=entry_id,
                    repo_id=old.model.repo_id,
                    kind=DiffKind.WITHDRAWN,
                    reason="the entry was removed from the catalog",
                    old_revision=old.model.revision,
                )
            )
            continue
        items.append(_diff_one(before.get(entry_id), now, seen.get(now.model.repo_id)))
    return CatalogDiff(items=tuple(items))


def status_changes(diff: CatalogDiff) -> list[tuple[str, EntryStatus, str]]:
    """(entry id, new status, reason) for every entry whose stored status must change after the diff."""
    return [(item.entry_id, item.status, item.reason) for item in diff.items if item.status is not None]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def diff_markdown(diff: CatalogDiff, *, title: str = "Catalog diff") -> str:
    """The `catalog-diff` artifact: counts, then one row per entry that changed (unchanged ones summarised)."""
    counts = diff.counts
    lines = [f"# {title}", ""]
    lines.append("- " + ", ".join(f"{counts[kind.value]} {kind.value}" for kind in DiffKind))
    if not diff.changed:
        lines += ["", f"Nothing new this run: {counts[DiffKind.UNCHANGED.value]} entries unchanged."]
        return "\n".join(lines) + "\n"
    lines += ["", "| entry | change | revision | reason |", "| --- | --- | --- | --- |"]
    order = [DiffKind.WITHDRAWN, DiffKind.FLAGGED, DiffKind.UPDATED, DiffKind.ADDED]
    for kind in order:
        for item in diff.of(kind):
            revision = (
                f"{_short(item.old_revision)} -> {_short(item.new_revision)}"
                if item.old_revision and item.new_revision and item.old_revision != item.new_revision
                else _short(item.new_revision or item.old_revision)
            )
            lines.append(f"| `{item.entry_id}` | {kind.value} | `{revision}` | {_cell(item.reason)} |")
    unchanged = diff.of(DiffKind.UNCHANGED)
    if unchanged:
        lines += ["", f"Unchanged: {', '.join(f'`{i.entry_id}`' for i in unchanged)}."]
    return "\n".join(lines) + "\n"


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
