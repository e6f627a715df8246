"""What a run sets up and asks of the Prefect API once: global concurrency limits, the worker census, and the
automation that marks a silent model run crashed.

- `ensure_limits(settings)`: every limit of registry/quotas.py exists with the policy's slots (created when
  missing, updated when the policy changed); `slot(settings, name, occupy)` holds slots of one limit (a missing
  limit is created first, once per process), waiting for them, never exceeding them.
- `census(pools)`: which pools have an online worker, read once (a run takes it once and hands it to every
  model, so the cells of a pool without a worker end "no worker online" at once instead of each waiting).
- `ensure_crash_detection(settings)`: a proactive automation: a flow run tagged `WATCHED_TAG` (every model run
  the weekly run dispatches) that sends no heartbeat for `orchestration.heartbeat_timeout_s` is set Crashed, so
  the weekly run can dispatch it again (its worker or process was killed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import StateType, WorkerStatus
from prefect.concurrency.sync import concurrency
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from registry.quotas import limits
from registry.settings import Settings

WATCHED_TAG = "curation-heartbeat"
HEARTBEAT_S = 30  # Prefect's shortest flow-run heartbeat interval; the dispatcher sets it on every watched run
CRASH_AUTOMATION = "curation: crash silent model runs"

_ensured: dict[str, int] = {}
_ensured_lock = threading.Lock()


def _put_limit(name: str, slots: int) -> None:
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots, active=True))
            return
        if existing.limit != slots or not existing.active:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=slots, active=True))


def ensure_limits(settings: Settings) -> dict[str, int]:
    """Create or update every limit the policy declares; returns name -> slots."""
    declared = limits(settings)
    for name, slots in declared.items():
        _put_limit(name, slots)
        with _ensured_lock:
            _ensured[name] = slots
    return declared


@contextmanager
def slot(settings: Settings, name: str | None, occupy: int = 1) -> Iterator[None]:
    """Hold `occupy` slots of the limit `name` (None: no limit) for the block; waits until they are free."""
    if name is None:
        yield
        return
    declared = limits(settings).get(name)
    if declared is not None and occupy > declared:
        raise ValueError(f"{occupy} slot(s) of {name} can never be free: the policy grants {declared}")
    with _ensured_lock:
        known = _ensured.get(name)
    if declared is not None and known != declared:
        _put_limit(name, declared)
        with _ensured_lock:
            _ensured[name] = declared
    # strict: a limit that is missing is an error, never "no limit"; a lease renewal that fails once (an API hiccup)
    # must not kill the work holding the slot: the lease then lapses after its duration at worst.
    with concurrency(name, occupy=occupy, strict=True, raise_on_lease_renewal_failure=False):
        yield


# --------------------------------------------------------------------------------------------- census


@dataclass(frozen=True)
class PoolStatus:
    pool: str
    online: bool
    type: str = ""


def _read_pool(pool: str) -> PoolStatus:
    with get_client(sync_client=True) as client:
        try:
            info = client.read_work_pool(pool)
            workers = client.read_workers_for_work_pool(work_pool_name=pool)
        except ObjectNotFound:
            return PoolStatus(pool, False)
        except PrefectHTTPStatusError as exc:  # the sync client reports a missing pool as a plain 404
            if exc.response.status_code != 404:
                raise
            return PoolStatus(pool, False)
    return PoolStatus(pool, any(w.status == WorkerStatus.ONLINE for w in workers), str(info.type))


def census(pools: Iterable[str], wait_s: float = 0.0, poll_s: float = 2.0) -> dict[str, PoolStatus]:
    """Each pool's status, read once; pools with no online worker are read again for up to `wait_s`."""
    found = {pool: _read_pool(pool) for pool in sorted(set(pools))}
    end = time.monotonic() + wait_s
    while any(not s.online for s in found.values()) and time.monotonic() + poll_s <= end:
        time.sleep(poll_s)
        found.update({p: _read_pool(p) for p, s in found.items() if not s.online})
    return found


# --------------------------------------------------------------------------------------------- crashes


def crash_automation(settings: Settings) -> AutomationCore:
    """The zombie-run recipe of Prefect's docs, limited to the runs the weekly run watches."""
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description="A model flow run dispatched by weekly-curation that stopped sending heartbeats is crashed; "
        "the weekly run then dispatches it again (orchestration.crash_retries).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
                "prefect.flow-run.Suspended",  # waiting for a maintainer (flows/review_gate.py): no process to beat
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{WATCHED_TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=settings.orchestration.heartbeat_timeout_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {settings.orchestration.heartbeat_timeout_s:g}s: its worker or process "
                "was lost",
            )
        ],
    )


def ensure_crash_detection(settings: Settings) -> None:
    """Create the automation, or bring it in line with the policy's heartbeat timeout."""
    wanted = crash_automation(settings)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(CRASH_AUTOMATION)
        if not existing:
            client.create_automation(wanted)
            return
        first = existing[0]
        within = getattr(first.trigger, "within", None)
        expect = getattr(first.trigger, "expect", None)
        if within != wanted.trigger.within or expect != wanted.trigger.expect or not first.enabled:  # type: ignore[union-attr]
            client.update_automation(first.id, wanted)
