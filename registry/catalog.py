"""The catalog store: runs, candidates, per-(repo, revision) stage results, typed records, published entries.

SQLAlchemy 2.0 Core over any URL: a SQLite file by default (`Settings.catalog_url`), PostgreSQL in production
(`postgresql+psycopg://...`, extra `postgres`). Every record from `registry/schema.py` is stored whole as JSON
(`model_dump_json`) next to the indexed key columns that the queries use, and loaded with
`model_validate_json`: the JSON is the truth, the key columns are only for finding rows.

Concurrency: every write is one transaction; see `registry/catalog_db.py` for the locking and retries
(SQLite WAL + `BEGIN IMMEDIATE` + retry on "database is locked"; PostgreSQL upserts + retry on
serialization failures). Tables: `registry/catalog_tables.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from uuid import uuid4

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.catalog_reviews import ReviewLog
from registry.catalog_tables import (
    STORE_VERSION,
    candidates_table,
    entries_table,
    entry_history_table,
    images_table,
    model_runs_table,
    runs_table,
    screenings_table,
    stage_results_table,
    staged_table,
    validations_table,
)
from registry.errors import CatalogError, CatalogNotFoundError
from registry.schema import (
    Candidate,
    CatalogEntry,
    EntryStatus,
    ModelRef,
    ModelRow,
    RunSummary,
    RuntimeImage,
    ScreeningReport,
    StagedWeights,
    StageName,
    StageResult,
    ValidationResult,
    utcnow,
)
from registry.settings import Settings

__all__ = ["STORE_VERSION", "CatalogError", "CatalogStore"]


def _new_run_id() -> str:
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid4().hex[:10]}"


class CatalogStore(ReviewLog):
    """The catalog: runs, candidates, stage results, typed records, entries with history and review decisions.

    Thread-safe; several processes may write the same database at once. Use as a context manager or `close()`.
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> CatalogStore:
        """The store at `settings.catalog_url`; creates `data_dir` (where the default SQLite file lives)."""
        try:
            Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(
                f"cannot create the data directory {settings.data_dir}: {exc}; set data_dir to a writable path"
            ) from exc
        return cls(settings.catalog_url)

    # ------------------------------------------------------------------------------------------ runs

    def start_run(self, kind: str = "weekly", flow_run_id: str | None = None) -> RunSummary:
        run = RunSummary(run_id=_new_run_id(), kind=kind, flow_run_id=flow_run_id)

        def write(conn: Connection) -> None:
            conn.execute(
                runs_table.insert().values(
                    run_id=run.run_id,
                    kind=run.kind,
                    flow_run_id=run.flow_run_id,
                    status=run.status,
                    started_at=run.started_at,
                    finished_at=None,
                    data=run.model_dump_json(),
                )
            )

        self._write("starting a run", write)
        return run

    def _get_run(self, conn: Connection, run_id: str) -> RunSummary:
        row = conn.execute(sa.select(runs_table.c.data).where(runs_table.c.run_id == run_id)).first()
        if row is None:
            raise CatalogNotFoundError(f"no run {run_id!r} in catalog {self._display}; list runs with `curate runs`")
        return self._load(RunSummary, row.data, f"run {run_id}")

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        candidates: int,
        selected: int,
        outcomes: dict[str, int] | None = None,
        reason: str = "",
    ) -> RunSummary:
        def write(conn: Connection) -> RunSummary:
            run = self._get_run(conn, run_id).model_copy(
                update={
                    "status": status,
                    "candidates": candidates,
                    "selected": selected,
                    "finished_at": utcnow(),
                    "outcomes": dict(outcomes or {}),
                    "reason": reason,
                }
            )
            conn.execute(
                runs_table.update()
                .where(runs_table.c.run_id == run_id)
                .values(status=run.status, finished_at=run.finished_at, data=run.model_dump_json())
            )
            return run

        return self._write(f"finishing run {run_id}", write)

    def run(self, run_id: str) -> RunSummary | None:
        def read(conn: Connection) -> RunSummary | None:
            row = conn.execute(sa.select(runs_table.c.data).where(runs_table.c.run_id == run_id)).first()
            return None if row is None else self._load(RunSummary, row.data, f"run {run_id}")

        return self._read("reading a run", read)

    def runs(self, limit: int = 20) -> list[RunSummary]:
        """The newest `limit` runs, newest first."""

        def read(conn: Connection) -> list[RunSummary]:
            rows = conn.execute(
                sa.select(runs_table.c.data)
                .order_by(runs_table.c.started_at.desc(), runs_table.c.id.desc())
                .limit(limit)
            ).all()
            return self._load_all(RunSummary, rows, "run")

        return self._read("listing runs", read)

    def record_candidates(self, run_id: str, candidates: Sequence[Candidate]) -> None:
        """The run's candidates; recording again for the same run replaces the earlier list."""

        def write(conn: Connection) -> None:
            self._get_run(conn, run_id)
            conn.execute(candidates_table.delete().where(candidates_table.c.run_id == run_id))
            if candidates:
                conn.execute(
                    candidates_table.insert(),
                    [
                        {
                            "run_id": run_id,
                            "repo_id": c.ref.repo_id,
                            "revision": c.ref.revision,
                            "position": i,
                            "rank": c.rank,
                            "decision": c.decision.value,
                            "data": c.model_dump_json(),
                        }
                        for i, c in enumerate(candidates)
                    ],
                )

        self._write(f"recording candidates of run {run_id}", write)

    def candidates(self, run_id: str | None = None) -> list[Candidate]:
        """A run's candidates in rank order (unranked, i.e. requested, ones last in recorded order).

        `run_id=None` means the newest run that recorded candidates.
        """

        def read(conn: Connection) -> list[Candidate]:
            chosen = run_id
            if chosen is None:
                chosen = conn.execute(
                    sa.select(runs_table.c.run_id)
                    .where(sa.exists().where(candidates_table.c.run_id == runs_table.c.run_id))
                    .order_by(runs_table.c.started_at.desc(), runs_table.c.id.desc())
                    .limit(1)
                ).scalar()
                if chosen is None:
                    return []
            rows = conn.execute(
                sa.select(candidates_table.c.data, candidates_table.c.rank, candidates_table.c.position).where(
                    candidates_table.c.run_id == chosen
                )
            ).all()
            rows = sorted(rows, key=lambda r: (r.rank is None, r.rank or 0, r.position))
            return self._load_all(Candidate, rows, f"candidate of run {chosen}")

        return self._read("listing candidates", read)

    # ------------------------------------------------------------------------------------------ model rows

    def record_model_row(self, row: ModelRow) -> None:
        """Keyed by (run_id, repo_id): a model's chain updates its row of the run as it goes."""

        def write(conn: Connection) -> None:
            self._get_run(conn, row.run_id)
            self._upsert(
                conn,
                model_runs_table,
                ("run_id", "repo_id"),
                {
                    "run_id": row.run_id,
                    "repo_id": row.repo_id,
                    "revision": row.revision,
                    "outcome": row.outcome.value,
                    "updated_at": row.updated_at,
                    "data": row.model_dump_json(),
                },
            )

        self._write(f"recording the row of {row.repo_id} in run {row.run_id}", write)

    def model_rows(self, run_id: str) -> list[ModelRow]:
        """Every model's row of one run, in the order they were first recorded."""
        t = model_runs_table
        query = sa.select(t.c.data).where(t.c.run_id == run_id).order_by(t.c.id)
        return self._read(
            "listing model rows", lambda conn: self._load_all(ModelRow, conn.execute(query).all(), "model row")
        )

    def model_row(self, run_id: str, repo_id: str) -> ModelRow | None:
        t = model_runs_table
        query = sa.select(t.c.data).where(t.c.run_id == run_id, t.c.repo_id == repo_id)

        def read(conn: Connection) -> ModelRow | None:
            row = conn.execute(query).first()
            return None if row is None else self._load(ModelRow, row.data, f"row of {repo_id} in run {run_id}")

        return self._read("reading a model row", read)

    # ------------------------------------------------------------------------------------------ stage results

    def record_stage(self, result: StageResult) -> None:
        """Keyed by (repo_id, revision, stage, policy_digest); recording again replaces."""

        def write(conn: Connection) -> None:
            self._upsert(
                conn,
                stage_results_table,
                ("repo_id", "revision", "stage", "policy_digest"),
                {
                    "repo_id": result.ref.repo_id,
                    "revision": result.ref.revision,
                    "stage": result.stage.value,
                    "policy_digest": result.policy_digest,
                    "outcome": result.outcome.value,
                    "run_id": result.run_id,
                    "recorded_at": result.recorded_at,
                    "data": result.model_dump_json(),
                },
            )

        self._write(f"recording stage {result.stage.value} of {result.ref}", write)

    def stage_result(self, ref: ModelRef, stage: StageName, policy_digest: str | None = None) -> StageResult | None:
        """The newest result of `stage` for `ref` (at `policy_digest` if given)."""
        t = stage_results_table
        query = sa.select(t.c.data).where(
            t.c.repo_id == ref.repo_id, t.c.revision == ref.revision, t.c.stage == stage.value
        )
        if policy_digest is not None:
            query = query.where(t.c.policy_digest == policy_digest)
        query = query.order_by(t.c.recorded_at.desc(), t.c.id.desc()).limit(1)

        def read(conn: Connection) -> StageResult | None:
            row = conn.execute(query).first()
            return None if row is None else self._load(StageResult, row.data, f"stage result of {ref}")

        return self._read("reading a stage result", read)

    def stage_results(
        self, ref: ModelRef | None = None, stage: StageName | None = None, repo_id: str | None = None
    ) -> list[StageResult]:
        """Stage results matching every filter given, newest first."""
        t = stage_results_table
        query = sa.select(t.c.data)
        if ref is not None:
            query = query.where(t.c.repo_id == ref.repo_id, t.c.revision == ref.revision)
        if repo_id is not None:
            query = query.where(t.c.repo_id == repo_id)
        if stage is not None:
            query = query.where(t.c.stage == stage.value)
        query = query.order_by(t.c.recorded_at.desc(), t.c.id.desc())
        return self._read(
            "listing stage results",
            lambda conn: self._load_all(StageResult, conn.execute(query).all(), "stage result"),
        )

    def is_curated(self, ref: ModelRef, policy_digest: str) -> bool:
        """True when the catalog's current entry for this repository is at this revision and policy digest.

        Any status counts: a flagged or withdrawn entry must not be re-published by the next scheduled run.
        """
        t = entries_table
        query = sa.select(t.c.id).where(
            t.c.repo_id == ref.repo_id, t.c.revision == ref.revision, t.c.policy_digest == policy_digest
        )
        return self._read("checking the catalog", lambda conn: conn.execute(query.limit(1)).first() is not None)

    # ------------------------------------------------------------------------------------------ typed records

    def record_screening(self, report: ScreeningReport) -> None:
        """Keyed by (repo_id, revision, policy_digest); recording again replaces."""

        def write(conn: Connection) -> None:
            self._upsert(
                conn,
                screenings_table,
                ("repo_id", "revision", "policy_digest"),
                {
                    "repo_id": report.ref.repo_id,
                    "revision": report.ref.revision,
                    "policy_digest": report.policy_digest,
                    "verdict": report.verdict.value,
                    "screened_at": report.screened_at,
                    "data": report.model_dump_json(),
                },
            )

        self._write(f"recording the screening of {report.ref}", write)

    def screening(self, ref: ModelRef, policy_digest: str | None = None) -> ScreeningReport | None:
        """The newest screening report of `ref` (at `policy_digest` if given)."""
        t = screenings_table
        query = sa.select(t.c.data).where(t.c.repo_id == ref.repo_id, t.c.revision == ref.revision)
        if policy_digest is not None:
            query = query.where(t.c.policy_digest == policy_digest)
        query = query.order_by(t.c.screened_at.desc(), t.c.id.desc()).limit(1)

        def read(conn: Connection) -> ScreeningReport | None:
            row = conn.execute(query).first()
            return None if row is None else self._load(ScreeningReport, row.data, f"screening of {ref}")

        return self._read("reading a screening report", read)

    def screenings(self, repo_id: str | None = None) -> list[ScreeningReport]:
        """Every screening report (of `repo_id` if given), newest first."""
        t = screenings_table
        query = sa.select(t.c.data)
        if repo_id is not None:
            query = query.where(t.c.repo_id == repo_id)
        query = query.order_by(t.c.screened_at.desc(), t.c.id.desc())
        return self._read(
            "listing screenings",
            lambda conn: self._load_all(ScreeningReport, conn.execute(query).all(), "screening"),
        )

    def record_staged(self, weights: StagedWeights) -> None:
        """Keyed by (repo_id, revision); recording again replaces."""

        def write(conn: Connection) -> None:
            self._upsert(
                conn,
                staged_table,
                ("repo_id", "revision"),
                {
                    "repo_id": weights.ref.repo_id,
                    "revision": weights.ref.revision,
                    "staged_at": weights.staged_at,
                    "data": weights.model_dump_json(),
                },
            )

        self._write(f"recording the staged weights of {weights.ref}", write)

    def staged(self, ref: ModelRef) -> StagedWeights | None:
        t = staged_table
        query = sa.select(t.c.data).where(t.c.repo_id == ref.repo_id, t.c.revision == ref.revision)

        def read(conn: Connection) -> StagedWeights | None:
            row = conn.execute(query).first()
            return None if row is None else self._load(StagedWeights, row.data, f"staged weights of {ref}")

        return self._read("reading staged weights", read)

    def staged_all(self) -> list[StagedWeights]:
        """Every staged-weights record, newest first."""
        query = sa.select(staged_table.c.data).order_by(staged_table.c.staged_at.desc(), staged_table.c.id.desc())
        return self._read(
            "listing staged weights",
            lambda conn: self._load_all(StagedWeights, conn.execute(query).all(), "staged weights"),
        )

    def record_image(self, image: RuntimeImage) -> None:
        """Keyed by manifest digest; recording again (e.g. with its scan or signature) replaces."""

        def write(conn: Connection) -> None:
            self._upsert(
                conn,
                images_table,
                ("digest",),
                {
                    "digest": image.digest,
                    "reference": image.reference,
                    "runtime": image.runtime,
                    "built_at": image.built_at,
                    "data": image.model_dump_json(),
                },
            )

        self._write(f"recording image {image.reference}", write)

    def images(self, runtime: str | None = None) -> list[RuntimeImage]:
        """Every recorded image (of `runtime` if given), newest first."""
        query = sa.select(images_table.c.data)
        if runtime is not None:
            query = query.where(images_table.c.runtime == runtime)
        query = query.order_by(images_table.c.built_at.desc(), images_table.c.id.desc())
        return self._read(
            "listing images", lambda conn: self._load_all(RuntimeImage, conn.execute(query).all(), "image")
        )

    def image(self, reference_or_digest: str) -> RuntimeImage | None:
        """Find by digest (`sha256:...`), tag reference or pinned reference (`repo@sha256:...`)."""
        key = reference_or_digest.rsplit("@", 1)[1] if "@" in reference_or_digest else reference_or_digest
        query = (
            sa.select(images_table.c.data)
            .where(sa.or_(images_table.c.digest == key, images_table.c.reference == reference_or_digest))
            .order_by(
                (images_table.c.digest == key).desc(),
                images_table.c.built_at.desc(),
                images_table.c.id.desc(),
            )
            .limit(1)
        )

        def read(conn: Connection) -> RuntimeImage | None:
            row = conn.execute(query).first()
            return None if row is None else self._load(RuntimeImage, row.data, f"image {reference_or_digest}")

        return self._read("reading an image", read)

    def record_validation(self, ref: ModelRef, result: ValidationResult) -> None:
        """Keyed by (ref, template id, started_at): re-recording the same validation run replaces it."""

        def write(conn: Connection) -> None:
            self._upsert(
                conn,
                validations_table,
                ("repo_id", "revision", "template_id", "started_at"),
                {
                    "repo_id": ref.repo_id,
                    "revision": ref.revision,
                    "template_id": result.template.id,
                    "verdict": result.verdict.value,
                    "started_at": result.started_at,
                    "data": result.model_dump_json(),
                },
            )

        self._write(f"recording validation {result.template.id} of {ref}", write)

    def validations(self, ref: ModelRef) -> list[ValidationResult]:
        """Every validation of `ref`, oldest first."""
        t = validations_table
        query = (
            sa.select(t.c.data)
            .where(t.c.repo_id == ref.repo_id, t.c.revision == ref.revision)
            .order_by(t.c.started_at, t.c.id)
        )
        return self._read(
            "listing validations",
            lambda conn: self._load_all(ValidationResult, conn.execute(query).all(), f"validation of {ref}"),
        )

    # ------------------------------------------------------------------------------------------ entries

    def _put_entry(self, conn: Connection, entry: CatalogEntry, action: str) -> None:
        now = utcnow()
        data = entry.model_dump_json()
        keys = {
            "entry_id": entry.id,
            "repo_id": entry.model.repo_id,
            "revision": entry.model.revision,
            "status": entry.status.value,
            "policy_digest": entry.provenance.policy_digest,
        }
        self._upsert(
            conn,
            entries_table,
            ("entry_id",),
            {**keys, "published_at": entry.published_at, "updated_at": now, "data": data},
        )
        conn.execute(entry_history_table.insert().values(**keys, action=action, recorded_at=now, data=data))

    def publish(self, entry: CatalogEntry) -> None:
        """Make `entry` the current entry of its id and append it to the entry's history (one transaction)."""
        self._write(f"publishing entry {entry.id}", lambda conn: self._put_entry(conn, entry, "publish"))

    def entry(self, entry_id: str) -> CatalogEntry | None:
        def read(conn: Connection) -> CatalogEntry | None:
            row = conn.execute(sa.select(entries_table.c.data).where(entries_table.c.entry_id == entry_id)).first()
            return None if row is None else self._load(CatalogEntry, row.data, f"entry {entry_id}")

        return self._read("reading an entry", read)

    def entries(self, status: EntryStatus | None = None) -> list[CatalogEntry]:
        """The current entries (with `status` if given), by id."""
        query = sa.select(entries_table.c.data)
        if status is not None:
            query = query.where(entries_table.c.status == status.value)
        query = query.order_by(entries_table.c.entry_id)
        return self._read(
            "listing entries", lambda conn: self._load_all(CatalogEntry, conn.execute(query).all(), "entry")
        )

    def entry_history(self, entry_id: str) -> list[CatalogEntry]:
        """Every published version and status change of the entry, oldest first."""
        query = (
            sa.select(entry_history_table.c.data)
            .where(entry_history_table.c.entry_id == entry_id)
            .order_by(entry_history_table.c.id)
        )
        return self._read(
            "reading entry history",
            lambda conn: self._load_all(CatalogEntry, conn.execute(query).all(), f"history of {entry_id}"),
        )

    def set_entry_status(self, entry_id: str, status: EntryStatus, reason: str) -> CatalogEntry:
        """Flag, withdraw or re-publish the current entry; appends a history row. Returns the new entry."""

        def write(conn: Connection) -> CatalogEntry:
            row = conn.execute(sa.select(entries_table.c.data).where(entries_table.c.entry_id == entry_id)).first()
            if row is None:
                raise CatalogError(
                    f"no catalog entry {entry_id!r} in {self._display}; list entries with `curate catalog list`"
                )
            current = self._load(CatalogEntry, row.data, f"entry {entry_id}")
            changed = current.model_copy(update={"status": status, "status_reason": reason})
            self._put_entry(conn, changed, f"status:{status.value}")
            return changed

        return self._write(f"changing the status of entry {entry_id}", write)
