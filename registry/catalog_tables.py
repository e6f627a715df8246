"""The catalog store's tables (SQLAlchemy Core): indexed key columns next to each record's JSON (`data`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

STORE_VERSION = 3
"""Version of the table layout below; bumped (with a migration in `_ensure_schema`) when it changes."""


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored in UTC; naive values are taken as UTC; always loaded timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()


def id_column() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def data_column() -> sa.Column[str]:
    return sa.Column("data", sa.Text, nullable=False)


def ref_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("repo_id", sa.String(200), nullable=False, index=True),
        sa.Column("revision", sa.String(64), nullable=False),
    ]


schema_version_table = sa.Table(
    "schema_version",
    metadata,
    sa.Column("component", sa.String(50), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("record_schema", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

runs_table = sa.Table(
    "runs",
    metadata,
    id_column(),
    sa.Column("run_id", sa.String(128), nullable=False, unique=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("flow_run_id", sa.String(128)),
    sa.Column("status", sa.String(50), nullable=False, index=True),
    sa.Column("started_at", UtcDateTime, nullable=False, index=True),
    sa.Column("finished_at", UtcDateTime),
    data_column(),
)

candidates_table = sa.Table(
    "candidates",
    metadata,
    id_column(),
    sa.Column("run_id", sa.String(128), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    *ref_columns(),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("rank", sa.Integer),
    sa.Column("decision", sa.String(20), nullable=False),
    data_column(),
    sa.UniqueConstraint("run_id", "position", name="uq_candidates_run_position"),
)

stage_results_table = sa.Table(
    "stage_results",
    metadata,
    id_column(),
    *ref_columns(),
    sa.Column("stage", sa.String(20), nullable=False, index=True),
    sa.Column("policy_digest", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("run_id", sa.String(128), index=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    data_column(),
    sa.UniqueConstraint("repo_id", "revision", "stage", "policy_digest", name="uq_stage_results_key"),
)

screenings_table = sa.Table(
    "screenings",
    metadata,
    id_column(),
    *ref_columns(),
    sa.Column("policy_digest", sa.String(128), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("screened_at", UtcDateTime, nullable=False),
    data_column(),
    sa.UniqueConstraint("repo_id", "revision", "policy_digest", name="uq_screenings_key"),
)

staged_table = sa.Table(
    "staged_weights",
    metadata,
    id_column(),
    *ref_columns(),
    sa.Column("staged_at", UtcDateTime, nullable=False),
    data_column(),
    sa.UniqueConstraint("repo_id", "revision", name="uq_staged_weights_key"),
)

images_table = sa.Table(
    "images",
    metadata,
    id_column(),
    sa.Column("digest", sa.String(100), nullable=False, unique=True),
    sa.Column("reference", sa.String(500), nullable=False, index=True),
    sa.Column("runtime", sa.String(100), nullable=False, index=True),
    sa.Column("built_at", UtcDateTime, nullable=False),
    data_column(),
)

validations_table = sa.Table(
    "validations",
    metadata,
    id_column(),
    *ref_columns(),
    sa.Column("template_id", sa.String(200), nullable=False),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    data_column(),
    sa.UniqueConstraint("repo_id", "revision", "template_id", "started_at", name="uq_validations_key"),
)

entries_table = sa.Table(
    "entries",
    metadata,
    id_column(),
    sa.Column("entry_id", sa.String(200), nullable=False, unique=True),
    *ref_columns(),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("policy_digest", sa.String(128), nullable=False),
    sa.Column("published_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    data_column(),
)

entry_history_table = sa.Table(
    "entry_history",
    metadata,
    id_column(),
    sa.Column("entry_id", sa.String(200), nullable=False, index=True),
    *ref_columns(),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("policy_digest", sa.String(128), nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    data_column(),
)

model_runs_table = sa.Table(
    "model_runs",
    metadata,
    id_column(),
    sa.Column("run_id", sa.String(128), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("repo_id", sa.String(200), nullable=False, index=True),
    sa.Column("revision", sa.String(64)),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    data_column(),
    sa.UniqueConstraint("run_id", "repo_id", name="uq_model_runs_key"),
)

reviews_table = sa.Table(
    "reviews",
    metadata,
    id_column(),
    sa.Column("decision_id", sa.String(128), nullable=False, unique=True),
    *ref_columns(),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("reviewer", sa.String(200), nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=False, index=True),
    data_column(),
)
