"""Migrations of the catalog store: the table layout (STORE_VERSION) and the stored records (SCHEMA_VERSION).

Each step brings a store from one version to the next inside the set-up transaction that opens it; the
versions reached are written back to the `schema_version` row. Record changes that only add fields with
defaults load as they are (the step is empty, but the bump tells older code that it cannot read newer rows).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.catalog_tables import STORE_VERSION, schema_version_table
from registry.schema import SCHEMA_VERSION, utcnow

Step = Callable[[Connection], None]


def _no_data_change(_: Connection) -> None:
    return None


RECORD_STEPS: dict[int, tuple[str, Step]] = {
    2: ("ValidationResult.stale_deviations (added, default empty)", _no_data_change),
    3: ("BenchmarkMetrics.cancelled, .timeouts (default 0) and .read_lag_s (default none) added", _no_data_change),
    4: (
        "MemoryEstimate.encoder_bytes (default 0) and BenchmarkMetrics.audio_seconds_per_s (default none) added",
        _no_data_change,
    ),
    5: (
        "ValidationResult.inputs and .run_id, ScanSummary.policy_digest, RunSummary.outcomes and .reason (defaults); "
        "ModelRow added",
        _no_data_change,
    ),
    6: (
        "ValidationResult.not_run (added, default none): why a not-validated cell did not run (image-not-available, "
        "no-capacity, not-run); older not-validated results read as not-run",
        _no_data_change,
    ),
    7: (
        "ReviewDecision added; ScreeningReport.reviews, Provenance.approvals, ModelRow.review_expires_at (defaults); "
        "ModelOutcome needs-review added (issue 17)",
        _no_data_change,
    ),
    8: (
        "RuntimeImage.upstream and .vendors (added, default empty): the pinned upstream image a wrapper is built FROM "
        "and the vendors an image serves (issue 13, mirror-and-wrap); older images read as built here, any vendor",
        _no_data_change,
    ),
    9: (
        "StageName derive added, with DerivedArtifacts / DerivedGguf as its payload (GGUF files derived for "
        "llama.cpp, issue 13); ValidationResult.token_agreement (default none), CatalogEntry.derived (default empty)",
        _no_data_change,
    ),
}
"""record schema version reached -> (what changed, the step from the version before)."""

TABLE_STEPS: dict[int, tuple[str, Step]] = {
    2: ("table model_runs added (one row per model per run; created by create_all)", _no_data_change),
    3: ("table reviews added (maintainer review decisions, issue 17; created by create_all)", _no_data_change),
}
"""table layout version reached -> (what changed, the step from the version before)."""


def migrate(conn: Connection, store_version: int, record_schema: int) -> list[str]:
    """Runs every step from the stored versions up to this code's; returns what each step changed."""
    applied: list[str] = []
    for target in range(store_version + 1, STORE_VERSION + 1):
        what, step = TABLE_STEPS[target]
        step(conn)
        applied.append(f"tables v{target}: {what}")
    for target in range(record_schema + 1, SCHEMA_VERSION + 1):
        what, step = RECORD_STEPS[target]
        step(conn)
        applied.append(f"records v{target}: {what}")
    conn.execute(
        sa.update(schema_version_table)
        .where(schema_version_table.c.component == "catalog")
        .values(version=STORE_VERSION, record_schema=SCHEMA_VERSION, updated_at=utcnow())
    )
    return applied
