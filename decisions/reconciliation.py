"""Withdraw or flag: whether each catalog entry is kept, updated, flagged or withdrawn after a run (no I/O).

`diff_catalog(previous, current, upstream)` compares the entries before a run (`previous`, e.g.
`store.entries()` taken at the start) with the entries after it (`current`) and what the run saw upstream for
each repository (`upstream`: repo id -> `UpstreamObservation`). Every entry gets exactly one `DiffItem`:

- `added`: no previous entry with this id;
- `updated`: published again at a new revision, or at the same revision with other content (templates,
  metrics, images, weights, licence, tool versions; provenance run ids and timestamps do not count);
- `unchanged`: same content as before (a flagged or withdrawn entry that stays so is unchanged too);
- `withdrawn`: the repository is gone at the Hub (404), or its licence at the newly seen revision is denied
  or unknown (a blocking `licenses` finding), or the entry was withdrawn during the run;
- `flagged`: a runtime image it uses fails a rescan (`IMAGE_RESCAN`, applied by `rescan-images`), or the newly
  seen revision needs review, or was rejected for another reason while the entry still serves the older one.

The upstream reasons are rules of the one shape (`UPSTREAM`, registry/rules.py): rejected means withdraw,
needs-review means flag. Severity order: withdrawn > flagged > updated/added > unchanged. `status_changes`
lists the (entry id, status, reason) the caller must write with `CatalogStore.set_entry_status`;
`diff_markdown` renders the `catalog-diff` artifact. The licence policy itself is screening's
(`[licenses]`, scanners/licenses.py); this rule only reads the screening report of the new revision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from decisions.review import decision_text
from registry.artifacts import cell, code
from registry.catalog_diff import CatalogDiff, DiffItem, DiffKind, UpstreamObservation
from registry.entries import entry_content, same_content
from registry.oci import ImageName
from registry.rules import AllOf, Check, Rule
from registry.schema import (
    CatalogEntry,
    EntryStatus,
    Finding,
    ReviewVerdict,
    RuntimeImage,
    ScanSummary,
    ScreeningReport,
    Severity,
    Verdict,
)

LICENSE_SCANNER = "licenses"


def _short(revision: str | None) -> str:
    return revision[:12] if revision else "-"


@dataclass(frozen=True)
class Observed:
    """What the reconciliation judges: one current entry and what this run saw upstream for its repository."""

    entry: CatalogEntry
    seen: UpstreamObservation | None


def _new_screening(subject: Observed) -> ScreeningReport | None:
    """This run's screening of a newer revision than the entry serves (None when there is none)."""
    seen = subject.seen
    if seen is None or seen.gone or seen.revision is None or seen.revision == subject.entry.model.revision:
        return None
    report = seen.screening
    return report if report is not None and report.ref.revision == seen.revision else None


def _licence_findings(report: ScreeningReport) -> list[Finding]:
    return [f for f in report.findings if f.scanner == LICENSE_SCANNER and f.severity.rank >= Severity.HIGH.rank]


def repository_gone(subject: Observed) -> str | None:
    if subject.seen is not None and subject.seen.gone:
        return f"the repository {subject.entry.model.repo_id} no longer exists at the Hub (404)"
    return None


def licence_now_denied(subject: Observed) -> str | None:
    report = _new_screening(subject)
    licence = _licence_findings(report) if report is not None else []
    if report is None or not licence:
        return None
    declared = report.license.spdx or report.license.declared or "unknown"
    return (
        f"the licence changed to {declared} at revision {_short(report.ref.revision)}, which policy does not "
        "accept: " + "; ".join(f.message for f in licence[:3])
    )


def new_revision_needs_review(subject: Observed) -> str | None:
    report = _new_screening(subject)
    if report is None or _licence_findings(report) or report.verdict is not Verdict.NEEDS_REVIEW:
        return None
    what = "; ".join(report.review[:3]) or "see its screening report"
    return f"revision {_short(report.ref.revision)} needs review before it can replace this entry: {what}"


def new_revision_rejected(subject: Observed) -> str | None:
    report = _new_screening(subject)
    if report is None or _licence_findings(report) or report.verdict is not Verdict.REJECTED:
        return None
    rejections = [d for d in report.reviews if d.verdict is ReviewVerdict.REJECT]
    if rejections:
        return (
            f"revision {_short(report.ref.revision)} was rejected by maintainer review ({decision_text(rejections[0])})"
            f"; the entry still serves revision {_short(subject.entry.model.revision)}"
        )
    codes = ", ".join(sorted({f.code for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank})[:5])
    return (
        f"revision {_short(report.ref.revision)} was rejected by screening ({codes or 'see its report'}); the "
        f"entry still serves revision {_short(subject.entry.model.revision)}"
    )


UPSTREAM: Rule[Observed] = AllOf(
    Check(repository_gone),
    Check(licence_now_denied),
    Check(new_revision_needs_review, Verdict.NEEDS_REVIEW),
    Check(new_revision_rejected, Verdict.NEEDS_REVIEW),
)
"""What the Hub shows now: rejected -> withdraw (reasons), needs-review -> flag (review items), accepted -> keep."""


@dataclass(frozen=True)
class Rescanned:
    """What the image rule judges: one published entry and a runtime image's new scan."""

    entry: CatalogEntry
    image: RuntimeImage
    scan: ScanSummary


def _uses(pinned_reference: str, digest: str) -> bool:
    try:
        return ImageName.parse(pinned_reference).digest == digest
    except ValueError:
        return False


def image_now_fails_gate(subject: Rescanned) -> str | None:
    if subject.scan.passed or not any(_uses(ref, subject.image.digest) for ref in subject.entry.images.values()):
        return None
    return f"runtime image {subject.image.pinned} now fails the scan gate: {', '.join(subject.scan.blocking)}"


IMAGE_RESCAN: Rule[Rescanned] = Check(image_now_fails_gate, Verdict.NEEDS_REVIEW)
"""An entry whose runtime image fails a rescan is flagged (`rescan-images`)."""


def flagged_by_rescan(entries: Sequence[CatalogEntry], image: RuntimeImage, scan: ScanSummary) -> list[tuple[str, str]]:
    """(entry id, reason) of every entry the rescan of `image` flags."""
    flagged: list[tuple[str, str]] = []
    for entry in entries:
        outcome = IMAGE_RESCAN.evaluate(Rescanned(entry, image, scan))
        if not outcome.accepted:
            flagged.append((entry.id, "; ".join(outcome.review)))
    return flagged


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
    upstream = UPSTREAM.evaluate(Observed(current, seen))
    if upstream.verdict is Verdict.REJECTED:
        return _item(DiffKind.WITHDRAWN, "; ".join(upstream.reasons), current, before, EntryStatus.WITHDRAWN)
    flag_reasons: list[str] = []
    if current.status is EntryStatus.FLAGGED and current.status_reason:
        flag_reasons.append(current.status_reason)
    flag_reasons += upstream.review
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
            lines.append(f"| {code(item.entry_id)} | {kind.value} | {code(revision)} | {cell(item.reason)} |")
    unchanged = diff.of(DiffKind.UNCHANGED)
    if unchanged:
        lines += ["", f"Unchanged: {', '.join(code(i.entry_id) for i in unchanged)}."]
    return "\n".join(lines) + "\n"
