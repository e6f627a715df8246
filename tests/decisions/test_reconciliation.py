"""The withdraw-or-flag decision (the weekly catalog diff): added, updated, unchanged, withdrawn, flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from decisions.reconciliation import diff_catalog, diff_markdown, status_changes
from registry.catalog_diff import CatalogDiff, DiffKind, UpstreamObservation
from registry.entries import same_content
from registry.schema import (
    EntryStatus,
    Finding,
    LicenseReference,
    ModelRef,
    Provenance,
    ScreeningReport,
    Severity,
    Verdict,
)
from tests.fixtures.catalog import sample_entry, sample_ref, sha40

REF = sample_ref()
ENTRY = sample_entry(REF)


def kinds(diff: CatalogDiff) -> dict[str, DiffKind]:
    return {item.entry_id: item.kind for item in diff.items}


def new_revision(seed: object = 1) -> ModelRef:
    return ModelRef(repo_id=REF.repo_id, revision=sha40(REF.repo_id, "new", seed))


def screened(ref: ModelRef, verdict: Verdict, *findings: Finding, spdx: str | None = None) -> ScreeningReport:
    return ScreeningReport(
        ref=ref,
        verdict=verdict,
        findings=findings,
        license=LicenseReference(spdx=spdx, declared=spdx),
        review=("a maintainer must review the licence",) if verdict is Verdict.NEEDS_REVIEW else (),
    )


def test_added_unchanged_and_nothing_new_markdown() -> None:
    added = diff_catalog([], [ENTRY])
    assert kinds(added) == {ENTRY.id: DiffKind.ADDED}
    assert ENTRY.templates[0].template.id in added.items[0].reason
    rerun = ENTRY.model_copy(
        update={
            "published_at": ENTRY.published_at + timedelta(days=7),
            "provenance": ENTRY.provenance.model_copy(
                update={"flow_run_ids": {"publish": "another-run"}, "timestamps": {"published": datetime.now(UTC)}}
            ),
        }
    )
    assert same_content(ENTRY, rerun)
    diff = diff_catalog(
        [ENTRY], [rerun], {REF.repo_id: UpstreamObservation(repo_id=REF.repo_id, revision=REF.revision)}
    )
    assert kinds(diff) == {ENTRY.id: DiffKind.UNCHANGED}
    assert not diff.changed
    assert status_changes(diff) == []
    markdown = diff_markdown(diff)
    assert "Nothing new this run: 1 entries unchanged." in markdown
    assert "0 added, 0 updated, 1 unchanged, 0 withdrawn, 0 flagged" in markdown


def test_new_revision_is_an_update_with_both_revisions() -> None:
    ref = new_revision()
    current = sample_entry(ref)
    diff = diff_catalog(
        [ENTRY], [current], {REF.repo_id: UpstreamObservation(repo_id=REF.repo_id, revision=ref.revision)}
    )
    (item,) = diff.items
    assert item.kind is DiffKind.UPDATED
    assert (item.old_revision, item.new_revision) == (REF.revision, ref.revision)
    assert f"{REF.revision[:12]} -> {ref.revision[:12]}" in item.reason
    assert f"{REF.revision[:12]} -> {ref.revision[:12]}" in diff_markdown(diff)


def test_same_revision_new_content_is_an_update_naming_what_changed() -> None:
    current = ENTRY.model_copy(update={"provenance": Provenance(tool_versions={"prefect": "9.9"})})
    (item,) = diff_catalog([ENTRY], [current]).items
    assert item.kind is DiffKind.UPDATED
    assert "provenance" in item.reason


def test_repository_gone_at_the_hub_withdraws() -> None:
    diff = diff_catalog([ENTRY], [ENTRY], {REF.repo_id: UpstreamObservation(repo_id=REF.repo_id, gone=True)})
    (item,) = diff.items
    assert item.kind is DiffKind.WITHDRAWN
    assert "404" in item.reason
    assert status_changes(diff) == [(ENTRY.id, EntryStatus.WITHDRAWN, item.reason)]


def test_licence_changed_to_a_denied_one_withdraws() -> None:
    ref = new_revision()
    denied = Finding(
        scanner="licenses", code="license.denied", severity=Severity.HIGH, message="CC-BY-NC-4.0 is denied by policy"
    )
    seen = UpstreamObservation(
        repo_id=REF.repo_id,
        revision=ref.revision,
        screening=screened(ref, Verdict.REJECTED, denied, spdx="CC-BY-NC-4.0"),
    )
    (item,) = diff_catalog([ENTRY], [ENTRY], {REF.repo_id: seen}).items
    assert item.kind is DiffKind.WITHDRAWN
    assert "CC-BY-NC-4.0" in item.reason
    assert item.status is EntryStatus.WITHDRAWN


def test_new_revision_needing_review_flags_and_other_rejection_flags() -> None:
    ref = new_revision()
    review = UpstreamObservation(
        repo_id=REF.repo_id,
        revision=ref.revision,
        screening=screened(ref, Verdict.NEEDS_REVIEW, spdx="LicenseRef-llama3"),
    )
    (item,) = diff_catalog([ENTRY], [ENTRY], {REF.repo_id: review}).items
    assert item.kind is DiffKind.FLAGGED and item.status is EntryStatus.FLAGGED
    assert "needs review" in item.reason
    pickle = Finding(scanner="pickles", code="pickle.global", severity=Severity.CRITICAL, message="os.system")
    rejected = UpstreamObservation(
        repo_id=REF.repo_id, revision=ref.revision, screening=screened(ref, Verdict.REJECTED, pickle, spdx="Apache-2.0")
    )
    (item,) = diff_catalog([ENTRY], [ENTRY], {REF.repo_id: rejected}).items
    assert item.kind is DiffKind.FLAGGED
    assert "pickle.global" in item.reason and REF.revision[:12] in item.reason


def test_screening_at_the_entry_revision_is_not_a_reason_to_act() -> None:
    stale = UpstreamObservation(
        repo_id=REF.repo_id, revision=REF.revision, screening=screened(REF, Verdict.NEEDS_REVIEW)
    )
    assert kinds(diff_catalog([ENTRY], [ENTRY], {REF.repo_id: stale})) == {ENTRY.id: DiffKind.UNCHANGED}


def test_image_failing_a_rescan_is_reported_flagged_once() -> None:
    reason = "runtime image 127.0.0.1:5000/vllm@sha256:... now fails the scan gate: CVE-2099-0001"
    flagged = ENTRY.model_copy(update={"status": EntryStatus.FLAGGED, "status_reason": reason})
    diff = diff_catalog([ENTRY], [flagged])
    (item,) = diff.items
    assert item.kind is DiffKind.FLAGGED and reason in item.reason
    assert status_changes(diff) == []  # rescan_images already set the status
    again = diff_catalog([flagged], [flagged])
    assert kinds(again) == {ENTRY.id: DiffKind.UNCHANGED}
    assert "still flagged" in again.items[0].reason


def test_withdrawn_stays_unchanged_and_removed_entries_are_withdrawn() -> None:
    withdrawn = ENTRY.model_copy(update={"status": EntryStatus.WITHDRAWN, "status_reason": "repo gone"})
    assert kinds(diff_catalog([ENTRY], [withdrawn])) == {ENTRY.id: DiffKind.WITHDRAWN}
    assert kinds(diff_catalog([withdrawn], [withdrawn])) == {ENTRY.id: DiffKind.UNCHANGED}
    (item,) = diff_catalog([ENTRY], []).items
    assert item.kind is DiffKind.WITHDRAWN and item.old_revision == REF.revision


def test_markdown_lists_every_change_with_its_reason() -> None:
    other = sample_entry(sample_ref("acme/embedder"))
    gone = UpstreamObservation(repo_id=REF.repo_id, gone=True)
    diff = diff_catalog([ENTRY], [ENTRY, other], {REF.repo_id: gone})
    markdown = diff_markdown(diff, title="Week 48")
    assert markdown.startswith("# Week 48")
    assert f"| `{ENTRY.id}` | withdrawn |" in markdown
    assert f"| `{other.id}` | added |" in markdown
    assert markdown.index("withdrawn |") < markdown.index("added |")


def test_observe_upstream_uses_the_run_then_the_hub() -> None:
    from registry.catalog_diff import observe_upstream
    from registry.schema import ScreeningReport, Verdict
    from tests.fixtures.catalog import sample_entry, sample_ref

    seen = sample_entry(sample_ref("org/seen"))
    gone = sample_entry(sample_ref("org/gone"))
    asked = sample_entry(sample_ref("org/asked"))
    report = ScreeningReport(ref=sample_ref("org/seen", seed=2), verdict=Verdict.ACCEPTED)
    lookups: list[str] = []

    def lookup(repo_id: str) -> str | None:
        lookups.append(repo_id)
        return None if repo_id == "org/gone" else "b" * 40

    observed = observe_upstream([seen, gone, asked], {"org/seen": report.ref.revision}, {"org/seen": report}, lookup)
    assert lookups == ["org/gone", "org/asked"]
    assert observed["org/seen"].screening == report and observed["org/seen"].revision == report.ref.revision
    assert observed["org/gone"].gone
    assert observed["org/asked"].revision == "b" * 40 and observed["org/asked"].screening is None


def test_a_new_revision_rejected_by_a_maintainer_is_explained_in_the_diff() -> None:
    from decisions.review import new_decision, reviewed
    from registry.schema import ReviewVerdict

    ref = new_revision("maintainer")
    report = screened(ref, Verdict.NEEDS_REVIEW, spdx="LicenseRef-llama3")
    rejection = new_decision(report, ReviewVerdict.REJECT, "bob", "the new acceptable-use clause is not acceptable")
    seen = UpstreamObservation(repo_id=REF.repo_id, revision=ref.revision, screening=reviewed(report, [rejection]))
    diff = diff_catalog([ENTRY], [ENTRY], {REF.repo_id: seen})
    (item,) = diff.items
    assert item.kind is DiffKind.FLAGGED and "rejected by maintainer review" in item.reason
    assert "rejected by bob" in item.reason and "acceptable-use" in diff_markdown(diff)
