"""`[review]` in curation.toml: how long a maintainer's review request waits (decisions/review.py applies it).

Operational, not policy: no stage's policy digest includes it (a longer wait changes no verdict).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field


class ReviewSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    expire_after_hours: float = Field(
        default=144.0,
        gt=0,
        description="an unanswered review request expires after this long (the row says so) and the next weekly "
        "run asks again; the default, 6 days, is shorter than the week between runs",
    )

    @property
    def expire_after(self) -> timedelta:
        return timedelta(hours=self.expire_after_hours)
