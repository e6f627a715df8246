"""The catalog store's review log: maintainers' review decisions, and the model rows that wait for one.

A decision is stored whole (`ReviewDecision` as JSON) under its `decision_id`; recording the same id again keeps
the first (a decision made in the Prefect UI and the same one submitted by `curate review approve` are one).
Which decision covers which revision is decided by `decisions/review.py`, not here.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry.catalog_db import CatalogDatabase
from registry.catalog_tables import model_runs_table, reviews_table
from registry.schema import ModelOutcome, ModelRow, ReviewDecision


class ReviewLog(CatalogDatabase):
    """Review decisions and pending review requests (mixed into `CatalogStore`)."""

    def record_review(self, decision: ReviewDecision) -> ReviewDecision:
        """Records `decision` unless one with its id exists; returns the stored one."""

        def write(conn: Connection) -> ReviewDecision:
            t = reviews_table
            found = conn.execute(sa.select(t.c.data).where(t.c.decision_id == decision.decision_id)).first()
            if found is not None:
                return self._load(ReviewDecision, found.data, f"review decision {decision.decision_id}")
            conn.execute(
                t.insert().values(
                    decision_id=decision.decision_id,
                    repo_id=decision.scope.ref.repo_id,
                    revision=decision.scope.ref.revision,
                    verdict=decision.verdict.value,
                    reviewer=decision.reviewer,
                    decided_at=decision.decided_at,
                    data=decision.model_dump_json(),
                )
            )
            return decision

        return self._write(f"recording the review of {decision.scope.ref}", write)

    def reviews(self, repo_id: str | None = None, revision: str | None = None) -> list[ReviewDecision]:
        """Every review decision (of `repo_id`, at `revision`, if given), newest first."""
        t = reviews_table
        query = sa.select(t.c.data)
        if repo_id is not None:
            query = query.where(t.c.repo_id == repo_id)
        if revision is not None:
            query = query.where(t.c.revision == revision)
        query = query.order_by(t.c.decided_at.desc(), t.c.id.desc())
        return self._read(
            "listing review decisions",
            lambda conn: self._load_all(ReviewDecision, conn.execute(query).all(), "review decision"),
        )

    def awaiting_review(self, repo_id: str | None = None) -> list[ModelRow]:
        """Model rows still waiting for a maintainer (outcome needs-review), newest first."""
        t = model_runs_table
        query = sa.select(t.c.data).where(t.c.outcome == ModelOutcome.NEEDS_REVIEW.value)
        if repo_id is not None:
            query = query.where(t.c.repo_id == repo_id)
        query = query.order_by(t.c.updated_at.desc(), t.c.id.desc())
        return self._read(
            "listing review requests", lambda conn: self._load_all(ModelRow, conn.execute(query).all(), "model row")
        )
