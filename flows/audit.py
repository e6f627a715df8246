"""The weekly audit of published entries' weights in every region: a share each run, re-hashed and repaired.

`audit_published_weights(overrides=None, byte_budget=None, full=False)` (Prefect flow `audit-published-weights`;
the weekly run calls it after reconciling the catalog):

1. the entries due this run (`due_for_audit`): each published entry has one ISO week in every cycle of
   `storage.audit_cycle_weeks` weeks (a stable hash of its id), and is due in that week unless it was staged that
   same week (staging hashed every byte it wrote, and every cell re-verifies what it fetches); so every entry's
   copies are re-hashed at least once per cycle, and a week with nothing new reads a cycle's share of the catalog,
   not all of it. `full=True` audits every published entry (an on-demand audit);
2. the due entries in an order that changes every ISO week (a shuffle seeded by the week), per entry every
   configured region it names: the signature and manifests the entry names, and every file re-hashed by reading it
   (validators/weights_audit.py), while `storage.audit_bytes_per_run` lasts (policy: how many bytes one run may
   read; a week whose share does not fit leaves a different part of it each cycle);
3. what fails is repaired from a verified copy in another region or from the Hub at the pinned revision
   (flows/stage_repair.py, the same repair the stage flow uses); an entry whose signature no region holds any more
   cannot be repaired in place: it is reported (stage it again with `curate stage --force`, then re-validate);
4. a table artifact `weights-audit`: one row per audited entry and region.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict

from flows.settings import settings_from
from flows.stage_repair import RepairAction, audit_regions, repair_artifact, repair_staged
from registry.catalog import CatalogStore
from registry.schema import CatalogEntry, EntryStatus
from validators.weights_audit import RegionAudit


class WeightsAudit(BaseModel):
    """What one audit run read, found and repaired."""

    model_config = ConfigDict(frozen=True)

    entries: tuple[str, ...] = ()
    bytes_read: int = 0
    problems: int = 0
    repaired: int = 0
    unrepairable: tuple[str, ...] = ()
    budget_exhausted: bool = False


def weekly_order(entries: list[CatalogEntry], when: datetime) -> list[CatalogEntry]:
    """The entries in an order fixed for one ISO week and different the next."""
    year, week, _ = when.isocalendar()
    ordered = sorted(entries, key=lambda e: e.id)
    random.Random(f"{year}-W{week:02d}").shuffle(ordered)  # noqa: S311 - a sampling order, not a secret
    return ordered


_FIRST_MONDAY = date(1970, 1, 5)


def week_index(when: datetime) -> int:
    """Weeks (Monday to Sunday, UTC) since the first Monday of 1970: ISO weeks numbered without a yearly reset."""
    return (when.astimezone(UTC).date() - _FIRST_MONDAY).days // 7


def audit_week(entry_id: str, cycle_weeks: int) -> int:
    """The entry's week of the audit cycle (0 .. cycle_weeks - 1), fixed by its id."""
    return int.from_bytes(hashlib.sha256(entry_id.encode()).digest()[:8], "big") % cycle_weeks


def due_for_audit(entries: list[CatalogEntry], when: datetime, cycle_weeks: int) -> list[CatalogEntry]:
    """The entries whose week of the cycle `when` falls in, but not those staged that same week."""
    week = week_index(when)
    week_start = datetime.combine(_FIRST_MONDAY + timedelta(weeks=week), datetime.min.time(), tzinfo=UTC)
    return [
        e
        for e in entries
        if audit_week(e.id, cycle_weeks) == week % cycle_weeks and e.weights.staged_at.astimezone(UTC) < week_start
    ]


def table_rows(entry_id: str, audits: dict[str, RegionAudit], actions: list[RepairAction]) -> list[dict[str, Any]]:
    """The `weights-audit` rows of one entry: one per region."""
    return [
        {
            "entry": entry_id,
            "region": region,
            "bytes re-hashed": audit.bytes_read,
            "problems": "; ".join(f"{p.name}: {p.problem.value}" for p in audit.problems) or "none",
            "repaired": ", ".join(a.blob for a in actions if a.region == region) or "-",
        }
        for region, audit in audits.items()
    ]


@flow(name="audit-published-weights", log_prints=True)
def audit_published_weights(
    overrides: dict[str, Any] | None = None, byte_budget: int | None = None, full: bool = False
) -> WeightsAudit:
    """Re-hash the regional copies of the published entries due this week (every one with `full`), bounded in
    bytes, and repair what fails."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    remaining = settings.storage.audit_bytes_per_run if byte_budget is None else byte_budget
    now = datetime.now(UTC)
    with CatalogStore.from_settings(settings) as store:
        catalog = store.entries(EntryStatus.PUBLISHED)
    published = catalog if full else due_for_audit(catalog, now, settings.storage.audit_cycle_weeks)
    rows: list[dict[str, Any]] = []
    audited: list[str] = []
    unrepairable: list[str] = []
    read = problems = repaired = 0
    exhausted = False
    for entry in weekly_order(published, now):
        regions = [r for r in sorted(entry.weights.regions) if r in settings.storage.regions]
        if not regions or entry.weights.signature is None:
            continue
        if remaining < entry.weights.total_bytes * len(regions):
            exhausted = True
            break
        audits = audit_regions(overrides, entry.weights, regions, deep=True, byte_budget=remaining // len(regions))
        spent = sum(a.bytes_read for a in audits.values())
        remaining -= spent
        read += spent
        audited.append(entry.id)
        found = [p for a in audits.values() for p in a.problems]
        problems += len(found)
        actions = []
        if found and any(a.signature_ok for a in audits.values()):
            actions = repair_staged(overrides, entry.weights, audits)
            repair_artifact(entry.weights, actions)
        elif found:
            unrepairable.append(entry.id)
            logger.error("%s: no region holds the signature the entry names; stage it again with --force", entry.id)
        repaired += len(actions)
        rows += table_rows(entry.id, audits, actions)
    create_table_artifact(
        key="weights-audit",
        table=rows,
        description=f"{len(audited)} of {len(published)} due ({len(catalog)} published) entries audited, {read} bytes "
        f"re-hashed, {problems} problem(s), {repaired} repaired" + (" (byte budget reached)" if exhausted else ""),
    )
    logger.info("audited %d entries (%d bytes): %d problem(s), %d repaired", len(audited), read, problems, repaired)
    return WeightsAudit(
        entries=tuple(audited),
        bytes_read=read,
        problems=problems,
        repaired=repaired,
        unrepairable=tuple(unrepairable),
        budget_exhausted=exhausted,
    )
