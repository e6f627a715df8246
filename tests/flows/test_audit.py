"""Which published entries the weekly audit re-hashes in a run (flows/audit.py `due_for_audit`): every entry once
per cycle of `storage.audit_cycle_weeks` ISO weeks, never in the week its staging hashed it. The re-hashing and
repairs themselves run on Azurite in tests/flows/test_stage_repair.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows.audit import audit_week, due_for_audit, entry_copies, week_index
from flows.stage_repair import Location
from registry.blobs import derived_prefix, model_prefix
from registry.schema import CatalogEntry, StagedFile
from tests.fixtures.catalog import sample_entry, sample_ref

MONDAY = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # a Monday
LONG_AGO = MONDAY - timedelta(weeks=30)


def _entries(count: int, staged_at: datetime) -> list[CatalogEntry]:
    entries = []
    for n in range(count):
        entry = sample_entry(sample_ref(f"org/model-{n:03d}"))
        weights = entry.weights.model_copy(update={"staged_at": staged_at})
        entries.append(entry.model_copy(update={"weights": weights}))
    return entries


def test_weeks_run_monday_to_sunday_without_a_yearly_reset() -> None:
    assert (
        week_index(MONDAY)
        == week_index(MONDAY + timedelta(days=6, hours=23))
        == week_index(MONDAY - timedelta(days=7)) + 1
    )
    new_year = datetime(2027, 1, 4, tzinfo=UTC)  # Monday of ISO week 1 of 2027
    assert week_index(new_year) == week_index(new_year - timedelta(days=1)) + 1


def test_every_entry_is_due_exactly_once_per_cycle() -> None:
    entries = _entries(40, LONG_AGO)
    for cycle in (1, 4, 5):
        due = [{e.id for e in due_for_audit(entries, MONDAY + timedelta(weeks=w), cycle)} for w in range(cycle)]
        assert sum(len(d) for d in due) == len(entries)  # no entry twice in one cycle
        assert set().union(*due) == {e.id for e in entries}  # and none left out
        if cycle > 1:
            assert all(len(d) < len(entries) for d in due)  # a share of the catalog each week, not all of it
        # the next cycle repeats the same weeks
        again = {e.id for e in due_for_audit(entries, MONDAY + timedelta(weeks=cycle, days=3), cycle)}
        assert again == due[0]


def test_an_entry_staged_this_week_waits_for_its_week_of_the_next_cycle() -> None:
    entry = _entries(1, LONG_AGO)[0]
    week = next(w for w in range(4) if due_for_audit([entry], MONDAY + timedelta(weeks=w), 4))
    when = MONDAY + timedelta(weeks=week, days=2)
    fresh = entry.model_copy(
        update={"weights": entry.weights.model_copy(update={"staged_at": when - timedelta(days=1)})}
    )
    assert due_for_audit([fresh], when, 4) == []  # staging hashed every byte this week
    assert due_for_audit([fresh], when + timedelta(weeks=4), 4) == [fresh]
    assert audit_week(entry.id, 4) == week_index(when) % 4


def test_an_entry_is_audited_with_the_ggufs_it_lists_each_under_its_own_prefix() -> None:
    entry = sample_entry(sample_ref("org/model"))
    assert entry.weights.signature is not None
    gguf = StagedFile(name="model-q8_0.gguf", size=10, sha256="ab" * 32)
    derived = entry.weights.model_copy(update={"files": (gguf,), "total_bytes": 10})
    odd = entry.weights.model_copy(update={"files": (gguf.model_copy(update={"name": "../other.gguf"}),)})
    copies = entry_copies(entry.model_copy(update={"derived": (derived, odd)}))
    assert [(label, weights.files) for label, weights, _ in copies] == [
        (entry.id, entry.weights.files),
        (f"{entry.id} model-q8_0.gguf", (gguf,)),
        (f"{entry.id} ../other.gguf", odd.files),
    ]
    assert [location for _, _, location in copies] == [
        Location(model_prefix(entry.model)),
        Location(derived_prefix(entry.model, "q8_0"), entry.weights.signature.signature_digest, "q8_0"),
        None,  # not a name the derive step gives: reported, never read from a guessed prefix
    ]
    assert Location(model_prefix(entry.model)).on_the_hub and not copies[1][2].on_the_hub  # type: ignore[union-attr]
