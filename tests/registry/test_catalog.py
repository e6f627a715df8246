"""The catalog store, on SQLite (always) and on a private PostgreSQL cluster (integration, same tests)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.catalog import STORE_VERSION, CatalogStore
from registry.catalog_migrations import RECORD_STEPS, TABLE_STEPS
from registry.errors import CatalogError, RegistryError
from registry.schema import (
    SCHEMA_VERSION,
    Candidate,
    CandidateSource,
    CheckStatus,
    ConformanceCheck,
    ConformanceReport,
    Decision,
    EntryStatus,
    Finding,
    LicenseReference,
    RuntimeImage,
    ScanSummary,
    ScreeningReport,
    Severity,
    StageName,
    StageOutcome,
    StageResult,
    ValidationResult,
    ValidationVerdict,
    Verdict,
)
from registry.settings import load_settings
from tests.fixtures.catalog import (
    sample_entry,
    sample_metrics,
    sample_ref,
    sample_signature,
    sample_staged,
    sample_template,
    sha40,
    sha64,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=UTC)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.slow])],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_catalog_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[CatalogStore]:
    with CatalogStore(store_url) as opened:
        yield opened


def _candidate(repo_id: str, rank: int | None, seed: object = 0, **kw: object) -> Candidate:
    return Candidate(ref=sample_ref(repo_id, seed), rank=rank, **kw)


# --------------------------------------------------------------------------------------------- setup


def test_error_root_and_bad_url() -> None:
    assert issubclass(CatalogError, RegistryError)
    with pytest.raises(CatalogError, match="not a SQLAlchemy URL"):
        CatalogStore("definitely not a url")
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        CatalogStore("nosuchdialect://host/db")


def test_from_settings_creates_data_dir_and_default_sqlite_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "state"
    settings = load_settings(data_dir=data_dir)
    with CatalogStore.from_settings(settings) as store:
        store.start_run()
    assert (data_dir / "catalog.db").is_file()
    with sqlite3.connect(data_dir / "catalog.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "runs", "candidates", "stage_results", "entries", "entry_history"} <= tables


def test_schema_version_recorded_and_newer_layout_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with CatalogStore(f"sqlite:///{path}") as store:
        assert store.schema_version() == STORE_VERSION
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET version = ?", (STORE_VERSION + 1,))
    with pytest.raises(CatalogError, match="newer than this code"):
        CatalogStore(f"sqlite:///{path}")


def test_older_record_schema_is_migrated_and_newer_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with CatalogStore(f"sqlite:///{path}") as store:
        store.start_run()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET record_schema = 1")
    with CatalogStore(f"sqlite:///{path}") as store:
        assert len(store.runs()) == 1
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT record_schema FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        raw.execute("UPDATE schema_version SET record_schema = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(CatalogError, match="newer than this code"):
        CatalogStore(f"sqlite:///{path}")


def test_every_record_and_table_version_has_a_migration_step() -> None:
    assert set(RECORD_STEPS) == set(range(2, SCHEMA_VERSION + 1))
    assert set(TABLE_STEPS) == set(range(2, STORE_VERSION + 1))


def test_in_memory_sqlite_works_across_calls() -> None:
    with CatalogStore("sqlite://") as store:
        run = store.start_run()
        assert [r.run_id for r in store.runs()] == [run.run_id]


def test_data_survives_reopening(store_url: str) -> None:
    entry = sample_entry()
    with CatalogStore(store_url) as first:
        first.publish(entry)
    with CatalogStore(store_url) as second:
        assert second.entry(entry.id) == entry


# ------------------------------------------------------------------------------------- runs and candidates


def test_runs_newest_first_and_finish(store: CatalogStore) -> None:
    first = store.start_run(kind="weekly", flow_run_id="0f3c9a3e-0000-4000-8000-000000000001")
    second = store.start_run(kind="rerun")
    assert first.run_id != second.run_id
    assert first.status == "running" and first.finished_at is None
    assert [r.run_id for r in store.runs()] == [second.run_id, first.run_id]
    assert [r.run_id for r in store.runs(limit=1)] == [second.run_id]

    done = store.finish_run(first.run_id, status="succeeded", candidates=20, selected=7)
    assert (done.status, done.candidates, done.selected) == ("succeeded", 20, 7)
    assert done.finished_at is not None and done.finished_at >= first.started_at
    assert done.flow_run_id == first.flow_run_id
    stored = {r.run_id: r for r in store.runs()}
    assert stored[first.run_id] == done
    assert stored[second.run_id] == second
    assert store.run(first.run_id) == done

    with pytest.raises(CatalogError, match="no run 'nope'"):
        store.finish_run("nope", status="failed", candidates=0, selected=0)


def test_candidates_rank_order_latest_run_and_replace(store: CatalogStore) -> None:
    run = store.start_run()
    recorded = [
        _candidate("meta-llama/Llama-3.2-1B", 3, trending_score=41.5, likes=1200, tags=("llama", "text-generation")),
        _candidate("acme/requested-model", None, source=CandidateSource.REQUESTED, reason="partner request"),
        _candidate("Qwen/Qwen3-0.6B", 1, parameters=596_049_920, last_modified=T0, license="apache-2.0"),
        _candidate("google/gemma-3-1b-it", 2, decision=Decision.SKIPPED, reason="gated", gated=True),
    ]
    store.record_candidates(run.run_id, recorded)
    listed = store.candidates(run.run_id)
    assert [c.rank for c in listed] == [1, 2, 3, None]
    assert sorted(listed, key=lambda c: c.repo_id) == sorted(recorded, key=lambda c: c.repo_id)

    # None = the newest run that recorded candidates; a newer run without candidates does not hide them.
    assert store.candidates() == listed
    later = store.start_run()
    assert store.candidates() == listed
    store.record_candidates(later.run_id, [_candidate("Qwen/Qwen3-0.6B", 1, seed=1)])
    assert [c.revision for c in store.candidates()] == [sample_ref("Qwen/Qwen3-0.6B", 1).revision]

    # Recording again replaces the run's list.
    store.record_candidates(run.run_id, recorded[:1])
    assert store.candidates(run.run_id) == recorded[:1]
    assert store.candidates("unknown-run") == []
    with pytest.raises(CatalogError, match="no run"):
        store.record_candidates("unknown-run", recorded)


def test_candidates_empty_catalog(store: CatalogStore) -> None:
    assert store.candidates() == []
    assert store.runs() == []


# --------------------------------------------------------------------------------------------- stage results


def test_stage_results_keyed_replaced_newest_and_filtered(store: CatalogStore) -> None:
    ref = sample_ref()
    other = sample_ref("meta-llama/Llama-3.2-1B")
    old_policy = StageResult(
        ref=ref,
        stage=StageName.SCREEN,
        outcome=StageOutcome.NEEDS_REVIEW,
        reason="licence needs review",
        policy_digest="a" * 64,
        run_id="r1",
        payload={"verdict": "needs-review", "codes": ["license-review"], "nested": {"bytes_read": 1024}},
        recorded_at=T0,
    )
    new_policy = old_policy.model_copy(
        update={"policy_digest": "b" * 64, "outcome": StageOutcome.OK, "recorded_at": T0 + timedelta(hours=1)}
    )
    store.record_stage(old_policy)
    store.record_stage(new_policy)
    store.record_stage(StageResult(ref=other, stage=StageName.SCREEN, outcome=StageOutcome.REJECTED, recorded_at=T0))
    store.record_stage(StageResult(ref=ref, stage=StageName.BUILD, outcome=StageOutcome.OK, recorded_at=T0))

    assert store.stage_result(ref, StageName.SCREEN) == new_policy  # newest over both digests
    assert store.stage_result(ref, StageName.SCREEN, "a" * 64) == old_policy
    assert store.stage_result(ref, StageName.STAGE) is None

    replaced = old_policy.model_copy(update={"outcome": StageOutcome.FAILED, "reason": "hub unavailable"})
    store.record_stage(replaced)
    assert store.stage_result(ref, StageName.SCREEN, "a" * 64) == replaced
    assert len(store.stage_results(ref=ref, stage=StageName.SCREEN)) == 2  # replaced, not appended

    assert {r.stage for r in store.stage_results(ref=ref)} == {StageName.SCREEN, StageName.BUILD}
    assert [r.ref for r in store.stage_results(repo_id=other.repo_id)] == [other]
    assert len(store.stage_results(stage=StageName.SCREEN)) == 3
    assert len(store.stage_results()) == 4
    newest_first = [r.recorded_at for r in store.stage_results(ref=ref, stage=StageName.SCREEN)]
    assert newest_first == sorted(newest_first, reverse=True)


# --------------------------------------------------------------------------------------------- typed records


def test_screening_per_policy_digest(store: CatalogStore) -> None:
    ref = sample_ref()
    report = ScreeningReport(
        ref=ref,
        verdict=Verdict.NEEDS_REVIEW,
        findings=(
            Finding(scanner="license", code="license-review", severity=Severity.MEDIUM, message="review 'other'"),
            Finding(scanner="pickle", code="pickle-import", severity=Severity.HIGH, message="x", path="a/b.bin"),
        ),
        license=LicenseReference(spdx=None, declared="other", file="LICENSE", file_sha256=sha64("lic")),
        review=("licence 'other' must be read by a maintainer",),
        weight_formats=("safetensors",),
        policy_digest="a" * 64,
        bytes_read=104_857,
        screened_at=T0,
    )
    newer = report.model_copy(
        update={"policy_digest": "b" * 64, "verdict": Verdict.ACCEPTED, "screened_at": T0 + timedelta(1)}
    )
    store.record_screening(report)
    store.record_screening(newer)
    assert store.screening(ref) == newer
    assert store.screening(ref, "a" * 64) == report
    assert store.screening(ref, "c" * 64) is None
    assert store.screening(sample_ref(seed=9)) is None
    assert store.screenings(ref.repo_id) == [newer, report]


def test_staged_weights_replace(store: CatalogStore) -> None:
    ref = sample_ref()
    weights = sample_staged(ref)
    store.record_staged(weights)
    assert store.staged(ref) == weights
    assert store.staged(sample_ref(seed=2)) is None
    single = weights.model_copy(update={"regions": {"eastus": weights.regions["eastus"]}})
    store.record_staged(single)
    assert store.staged(ref) == single
    assert store.staged_all() == [single]


def test_images_by_digest_reference_pinned_and_runtime(store: CatalogStore) -> None:
    digest = f"sha256:{sha64('vllm-1')}"
    vllm = RuntimeImage(
        runtime="vllm",
        version="0.11.0",
        reference=f"127.0.0.1:5000/vllm:0.11.0-{sha64('recipe')[:12]}",
        digest=digest,
        recipe_digest=sha64("recipe"),
        built_at=T0,
    )
    tei = RuntimeImage(
        runtime="tei",
        version="1.8",
        reference="127.0.0.1:5000/tei:1.8-abc",
        digest=f"sha256:{sha64('tei')}",
        built_at=T0 + timedelta(minutes=5),
    )
    store.record_image(vllm)
    store.record_image(tei)
    assert store.image(digest) == vllm
    assert store.image(vllm.reference) == vllm
    assert store.image(vllm.pinned) == vllm
    assert store.image("127.0.0.1:5000/nothing:1") is None
    assert store.images() == [tei, vllm]
    assert store.images("vllm") == [vllm]

    scanned = vllm.model_copy(
        update={
            "scan": ScanSummary(
                scanner_version="0.76.0", vulnerabilities={"HIGH": 2}, allowed=("CVE-2024-1",), passed=True
            ),
            "signature": sample_signature(digest, f"127.0.0.1:5000/vllm:sha256-{sha64('vllm-1')}.sig"),
        }
    )
    store.record_image(scanned)  # same digest: replaces
    assert store.images("vllm") == [scanned]

    rebuilt = vllm.model_copy(update={"digest": f"sha256:{sha64('vllm-2')}", "built_at": T0 + timedelta(hours=1)})
    store.record_image(rebuilt)  # same tag, new digest: the tag resolves to the newest build
    assert store.image(vllm.reference) == rebuilt
    assert store.image(digest) == scanned


def test_validations_append_and_replace_same_run(store: CatalogStore) -> None:
    ref = sample_ref()
    first = ValidationResult(
        template=sample_template(ref, 40),
        image_digest=f"sha256:{sha64('img')}",
        weights_signature_digest=f"sha256:{sha64('w')}",
        verdict=ValidationVerdict.NOT_VALIDATED,
        started_at=T0,
    )
    done = first.model_copy(
        update={
            "verdict": ValidationVerdict.PASSED,
            "conformance": ConformanceReport(
                version="1",
                base_url="http://127.0.0.1:8000/v1",
                model=ref.repo_id,
                checks=(
                    ConformanceCheck(name="chat-basic", status=CheckStatus.PASS),
                    ConformanceCheck(
                        name="tools",
                        status=CheckStatus.FAIL,
                        detail="no tool call",
                        evidence={"request": {"tools": [{"type": "function"}]}, "status": 200},
                    ),
                ),
                started_at=T0,
            ),
            "benchmark": (sample_metrics(),),
            "accepted_deviations": ("tools",),
            "finished_at": T0 + timedelta(minutes=9),
        }
    )
    other_template = ValidationResult(
        template=sample_template(ref, 128),
        verdict=ValidationVerdict.FAILED,
        reason="OOM",
        started_at=T0 + timedelta(1),
    )
    store.record_validation(ref, first)
    store.record_validation(ref, other_template)
    # Same template and start: the finished result replaces the pending one.
    store.record_validation(ref, done)
    assert store.validations(ref) == [done, other_template]
    assert store.validations(sample_ref(seed=3)) == []


# --------------------------------------------------------------------------------------------- entries


def test_publish_history_status_and_is_curated(store: CatalogStore) -> None:
    ref = sample_ref()
    digest = sha64("policy-1")
    entry = sample_entry(ref, policy_digest=digest)
    assert store.entry(entry.id) is None
    assert not store.is_curated(ref, digest)

    store.publish(entry)
    assert store.entry(entry.id) == entry
    assert store.is_curated(ref, digest)
    assert not store.is_curated(ref, sha64("policy-2"))
    assert not store.is_curated(sample_ref(seed=5), digest)

    flagged = store.set_entry_status(entry.id, EntryStatus.FLAGGED, "CVE-2026-0001 in the vllm image")
    assert flagged.status is EntryStatus.FLAGGED
    assert flagged.status_reason == "CVE-2026-0001 in the vllm image"
    assert flagged.model_copy(update={"status": EntryStatus.PUBLISHED, "status_reason": ""}) == entry
    assert store.entry(entry.id) == flagged
    assert store.entries(EntryStatus.FLAGGED) == [flagged]
    assert store.entries(EntryStatus.PUBLISHED) == []

    withdrawn = store.set_entry_status(entry.id, EntryStatus.WITHDRAWN, "licence changed upstream")
    assert store.is_curated(ref, digest)  # a withdrawn entry must not be re-published by the next run

    newer_ref = sample_ref(seed=1)
    republished = sample_entry(newer_ref, policy_digest=digest)
    assert republished.id == entry.id
    store.publish(republished)
    assert store.entry(entry.id) == republished
    assert store.is_curated(newer_ref, digest)
    assert not store.is_curated(ref, digest)  # the current entry is at the newer revision

    assert store.entry_history(entry.id) == [entry, flagged, withdrawn, republished]
    assert store.entry_history("nobody--nothing") == []
    with pytest.raises(CatalogError, match="no catalog entry 'nobody--nothing'"):
        store.set_entry_status("nobody--nothing", EntryStatus.WITHDRAWN, "x")


def test_entries_listing_by_id_and_status(store: CatalogStore) -> None:
    a = sample_entry(sample_ref("Qwen/Qwen3-0.6B"))
    b = sample_entry(sample_ref("BAAI/bge-small-en-v1.5"))
    store.publish(a)
    store.publish(b)
    assert [e.id for e in store.entries()] == ["baai--bge-small-en-v1.5", "qwen--qwen3-0.6b"]
    store.set_entry_status(a.id, EntryStatus.WITHDRAWN, "withdrawn by maintainer")
    assert store.entries(EntryStatus.PUBLISHED) == [b]
    assert [e.id for e in store.entries(EntryStatus.WITHDRAWN)] == [a.id]


def test_transaction_commits_together_and_rolls_back_on_error(store: CatalogStore) -> None:
    entry = sample_entry()
    with store.transaction() as tx:
        assert tx is store
        store.publish(entry)
        with store.transaction():  # nested: joins the outer transaction
            store.set_entry_status(entry.id, EntryStatus.FLAGGED, "under review")
        assert store.entry(entry.id) is not None  # reads inside see the transaction's writes
    assert [e.status for e in store.entry_history(entry.id)] == [EntryStatus.PUBLISHED, EntryStatus.FLAGGED]

    other = sample_entry(sample_ref("BAAI/bge-small-en-v1.5"))
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.publish(other)
        store.set_entry_status(entry.id, EntryStatus.WITHDRAWN, "never happens")
        raise RuntimeError("boom")
    assert store.entry(other.id) is None
    assert store.entry_history(other.id) == []
    assert store.entry(entry.id).status is EntryStatus.FLAGGED  # type: ignore[union-attr]
    assert len(store.entry_history(entry.id)) == 2

    # A failing write inside a single call leaves nothing behind either.
    run = store.start_run()
    with pytest.raises(CatalogError):
        store.record_candidates("missing-run", [_candidate("Qwen/Qwen3-0.6B", 1)])
    assert store.candidates(run.run_id) == []


def test_unreadable_row_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with CatalogStore(f"sqlite:///{path}") as store:
        store.publish(sample_entry())
    with sqlite3.connect(path) as raw:
        raw.execute("""UPDATE entries SET data = '{"id": "qwen--qwen3-0.6b"}'""")
    with CatalogStore(f"sqlite:///{path}") as store, pytest.raises(CatalogError, match="no longer loads"):
        store.entries()


def test_sqlite_writer_waits_for_a_held_lock(tmp_path: Path) -> None:
    """Another connection holds the write lock for a while; the store's write queues and then succeeds."""
    path = tmp_path / "catalog.db"
    with CatalogStore(f"sqlite:///{path}") as store:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO schema_version VALUES ('lock-holder', 0, 0, '2026-01-01 00:00:00')")
        released = threading.Event()

        def release() -> None:
            time.sleep(1.0)
            holder.execute("COMMIT")
            released.set()

        thread = threading.Thread(target=release)
        thread.start()
        run = store.start_run()  # blocks on the lock until the holder commits
        thread.join()
        holder.close()
        assert released.is_set()
        assert [r.run_id for r in store.runs()] == [run.run_id]


# --------------------------------------------------------------------------------------------- two processes

WRITER_ITERATIONS = 200
SHARED_ENTRY = "shared--model"


def _writer_main(url: str, worker: int, iterations: int, ready: str, go: str) -> None:
    """One writer process: runs, candidates, stage results and entries, racing the other writer."""
    with CatalogStore(url) as store:
        Path(ready).touch()
        deadline = time.monotonic() + 60
        while not Path(go).exists():
            if time.monotonic() > deadline:
                raise SystemExit("go file never appeared")
            time.sleep(0.01)
        hot = sample_ref("hot/model")
        for it in range(iterations):
            tag = f"{worker}-{it}"
            run = store.start_run(kind=f"worker-{worker}")
            candidates = [
                Candidate(ref=sample_ref(f"org{worker}/model-{k}", (worker, it)), rank=k + 1) for k in range(3)
            ]
            store.record_candidates(run.run_id, candidates)
            store.record_stage(
                StageResult(
                    ref=hot,
                    stage=StageName.SCREEN,
                    outcome=StageOutcome.OK,
                    policy_digest=tag,
                    run_id=run.run_id,
                )
            )
            store.record_stage(StageResult(ref=hot, stage=StageName.STAGE, outcome=StageOutcome.OK, reason=tag))
            with store.transaction():
                store.publish(sample_entry(sample_ref(f"org{worker}/own", it), entry_id=f"own--{worker}"))
                store.publish(sample_entry(sample_ref("shared/model", tag), entry_id=SHARED_ENTRY, reason=tag))
                store.set_entry_status(SHARED_ENTRY, EntryStatus.FLAGGED, tag)
            store.finish_run(run.run_id, status="succeeded", candidates=3, selected=3)


def _run_writers(url: str, tmp_path: Path, iterations: int) -> None:
    go = tmp_path / "go"
    procs = []
    for worker in (0, 1):
        ready = tmp_path / f"ready-{worker}"
        code = (
            "import sys; from tests.registry.test_catalog import _writer_main; "
            "_writer_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])"
        )
        argv = [sys.executable, "-c", code, url, str(worker), str(iterations), str(ready), str(go)]
        procs.append(subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{w}").exists() for w in (0, 1)):
            assert all(p.poll() is None for p in procs), "a writer died before starting"
            assert time.monotonic() < deadline, "writers did not get ready"
            time.sleep(0.05)
        go.touch()
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _check_consistent(store: CatalogStore, iterations: int) -> None:
    runs = store.runs(limit=10 * iterations)
    assert len(runs) == 2 * iterations
    for worker in (0, 1):
        assert sum(r.kind == f"worker-{worker}" for r in runs) == iterations
    for run in runs:
        assert (run.status, run.candidates, run.selected) == ("succeeded", 3, 3)
        listed = store.candidates(run.run_id)
        assert [c.rank for c in listed] == [1, 2, 3]
        owner = run.kind.removeprefix("worker-")
        assert {c.repo_id for c in listed} == {f"org{owner}/model-{k}" for k in range(3)}
        assert len({c.revision for c in listed}) == 3

    hot = sample_ref("hot/model")
    screen = store.stage_results(ref=hot, stage=StageName.SCREEN)
    assert sorted(r.policy_digest for r in screen) == sorted(f"{w}-{i}" for w in (0, 1) for i in range(iterations))
    assert {r.run_id for r in screen} == {r.run_id for r in runs}
    staged = store.stage_results(ref=hot, stage=StageName.STAGE)
    assert len(staged) == 1  # one key, replaced 2 x iterations times

    for worker in (0, 1):
        own = store.entry_history(f"own--{worker}")
        assert [e.model.revision for e in own] == [
            sample_ref(f"org{worker}/own", i).revision for i in range(iterations)
        ]
    history = store.entry_history(SHARED_ENTRY)
    assert len(history) == 4 * iterations
    # Every transaction's publish is immediately followed by its own status change: nothing interleaved.
    tags = []
    for published, flagged in zip(history[0::2], history[1::2], strict=True):
        assert published.status is EntryStatus.PUBLISHED
        assert flagged.status is EntryStatus.FLAGGED
        assert published.status_reason == flagged.status_reason
        assert flagged.model.revision == published.model.revision == sha40("shared/model", published.status_reason)
        tags.append(published.status_reason)
    assert sorted(tags) == sorted(f"{w}-{i}" for w in (0, 1) for i in range(iterations))
    assert store.entry(SHARED_ENTRY) == history[-1]


def test_two_processes_write_concurrently(store_url: str, tmp_path: Path) -> None:
    with CatalogStore(store_url):  # create the tables up front, as a deployed catalog would have them
        pass
    _run_writers(store_url, tmp_path, WRITER_ITERATIONS)
    with CatalogStore(store_url) as store:
        _check_consistent(store, WRITER_ITERATIONS)
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_processes_create_a_new_database_at_once(tmp_path: Path) -> None:
    """Both writers open a database that does not exist yet: table creation must not race."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _run_writers(url, tmp_path, 3)
    with CatalogStore(url) as store:
        _check_consistent(store, 3)


def test_shared_catalog_fixture_is_a_fresh_sqlite_store(catalog: CatalogStore, tmp_path: Path) -> None:
    assert catalog.url == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert catalog.runs() == [] and catalog.entries() == []
    catalog.publish(sample_entry())
    assert [e.id for e in catalog.entries()] == ["qwen--qwen3-0.6b"]


def test_review_decisions_are_recorded_once_and_pending_rows_listed(catalog: CatalogStore) -> None:
    from registry.schema import ModelOutcome, ModelRef, ModelRow, ReviewDecision, ReviewScope, ReviewVerdict

    ref = ModelRef(repo_id="org/reviewed", revision="a" * 40)
    decision = ReviewDecision(
        decision_id="run-f1", scope=ReviewScope(ref=ref), verdict=ReviewVerdict.APPROVE, reviewer="ada", reason="ok"
    )
    assert catalog.record_review(decision) == decision
    again = decision.model_copy(update={"reason": "a second submission of the same run's input"})
    assert catalog.record_review(again) == decision
    assert catalog.reviews("org/reviewed") == [decision] and catalog.reviews("org/other") == []
    assert catalog.reviews(revision="b" * 40) == []
    run = catalog.start_run()
    catalog.record_model_row(ModelRow(run_id=run.run_id, repo_id=ref.repo_id, outcome=ModelOutcome.NEEDS_REVIEW))
    catalog.record_model_row(ModelRow(run_id=run.run_id, repo_id="org/done", outcome=ModelOutcome.PUBLISHED))
    assert [row.repo_id for row in catalog.awaiting_review()] == [ref.repo_id]
