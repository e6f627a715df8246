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
   The GGUF files an entry lists (`CatalogEntry.derived`: what its llama.cpp templates were validated on) are
   audited with it, each under its own prefix, against its own signature and manifests; an entry is audited whole
   or not at all, so the budget counts the weights and the GGUFs together;
3. what fails is repaired from a verified copy in another region or, for the staged weights, from the Hub at the
   pinned revision (flows/stage_repair.py, the same repair the stage flow uses); a copy whose signature no region
   holds any more, or a GGUF no region holds intact (the Hub cannot serve it), cannot be repaired in place: it is
   reported (`unrepairable`; stage it again with `curate stage --force`, or derive it again with
   `curate rerun <repo> --from-stage stage`, then re-validate);
4. a table artifact `weights-audit`: one row per audited copy (an entry, or an entry and its GGUF) and region.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict

from flows.settings import settings_from
from flows.stage_repair import Location, RepairAction, audit_regions, repair_artifact, repair_staged
from registry.catalog import CatalogStore
from registry.errors import RegistryError
from registry.schema import CatalogEntry, EntryStatus, StagedWeights
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


@dataclass
class _Tally:
    """What the audit has read, found and repaired so far, and its table rows."""

    remaining: int
    configured: frozenset[str]
    """the regions with a storage account in the settings: the only ones audited"""
    read: int = 0
    problems: int = 0
    repaired: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    audited: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)

    def regions_of(self, weights: StagedWeights) -> list[str]:
        return [r for r in sorted(weights.regions) if r in self.configured]


def entry_copies(entry: CatalogEntry) -> list[tuple[str, StagedWeights, Location | None]]:
    """What auditing an entry re-hashes, with the table's name for each: its staged weights, then every GGUF its
    llama.cpp templates were validated on (None: a GGUF not named as the derive step names its files)."""
    found: list[tuple[str, StagedWeights, Location | None]] = [
        (entry.id, entry.weights, Location.of_weights(entry.weights))
    ]
    for derived in entry.derived:
        label = f"{entry.id} {', '.join(f.name for f in derived.files)}"
        found.append((label, derived, Location.of_derived(entry.weights, derived)))
    return found


def _audit_copy(
    overrides: dict[str, Any] | None, label: str, weights: StagedWeights, location: Location, tally: _Tally
) -> None:
    """Re-hash one signed file set in every region the entry names and repair what fails."""
    logger = get_run_logger()
    regions = tally.regions_of(weights)
    if not regions or weights.signature is None:
        return
    audits = audit_regions(
        overrides, weights, regions, deep=True, byte_budget=tally.remaining // len(regions), location=location
    )
    spent = sum(a.bytes_read for a in audits.values())
    tally.remaining -= spent
    tally.read += spent
    found = [p for a in audits.values() for p in a.problems]
    tally.problems += len(found)
    actions: list[RepairAction] = []
    if found and any(a.signature_ok for a in audits.values()):
        try:
            actions = repair_staged(overrides, weights, audits, location)
        except RegistryError as exc:  # BlobIntegrityError among them: no intact copy left anywhere
            tally.unrepairable.append(label)
            logger.error("%s: %s", label, exc)
        repair_artifact(weights, actions)
    elif found:
        tally.unrepairable.append(label)
        logger.error("%s: no region holds the signature the entry names; stage it again with --force", label)
    tally.repaired += len(actions)
    tally.rows += table_rows(label, audits, actions)


def _audit_entry(overrides: dict[str, Any] | None, entry: CatalogEntry, tally: _Tally) -> bool:
    """Audit an entry's weights and derived GGUFs when they fit the byte budget left; False when they do not."""
    if not tally.regions_of(entry.weights) or entry.weights.signature is None:
        return True  # no copy in a configured region, or nothing signed: nothing this audit can check
    copies = entry_copies(entry)
    needed = sum(w.total_bytes * len(tally.regions_of(w)) for _, w, _ in copies)
    if tally.remaining < needed:
        return False
    tally.audited.append(entry.id)
    for label, weights, location in copies:
        if location is None:
            tally.problems += 1
            tally.unrepairable.append(label)
            get_run_logger().error("%s: not named as the derive step names its files; derive it again", label)
            continue
        _audit_copy(overrides, label, weights, location, tally)
    return True


@flow(name="audit-published-weights", log_prints=True)
def audit_published_weights(
    overrides: dict[str, Any] | None = None, byte_budget: int | None = None, full: bool = False
) -> WeightsAudit:
    """Re-hash the regional copies of the published entries due this week (every one with `full`), their derived
    GGUFs included, bounded in bytes, and repair what fails."""
    logger = get_run_logger()
    settings = settings_from(overrides)
    budget = settings.storage.audit_bytes_per_run if byte_budget is None else byte_budget
    tally = _Tally(budget, frozenset(settings.storage.regions))
    now = datetime.now(UTC)
    with CatalogStore.from_settings(settings) as store:
        catalog = store.entries(EntryStatus.PUBLISHED)
    published = catalog if full else due_for_audit(catalog, now, settings.storage.audit_cycle_weeks)
    exhausted = False
    for entry in weekly_order(published, now):
        if not _audit_entry(overrides, entry, tally):
            exhausted = True
            break
    create_table_artifact(
        key="weights-audit",
        table=tally.rows,
        description=f"{len(tally.audited)} of {len(published)} due ({len(catalog)} published) entries audited, "
        f"{tally.read} bytes re-hashed, {tally.problems} problem(s), {tally.repaired} repaired"
        + (" (byte budget reached)" if exhausted else ""),
    )
    logger.info(
        "audited %d entries (%d bytes): %d problem(s), %d repaired",
        len(tally.audited),
        tally.read,
        tally.problems,
        tally.repaired,
    )
    return WeightsAudit(
        entries=tuple(tally.audited),
        bytes_read=tally.read,
        problems=tally.problems,
        repaired=tally.repaired,
        unrepairable=tuple(tally.unrepairable),
        budget_exhausted=exhausted,
    )
