"""Runtime controls of the Hub test server: injected faults and the request log. Both are thread-safe."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def peak_concurrency(spans: Sequence[tuple[float, float]]) -> int:
    """The most (start, end) intervals open at one instant: how many requests (or runs) overlapped at most."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


@dataclass
class Fault:
    """Answer requests whose path matches `pattern` (re.search) with `status`, after `delay` seconds.

    status None: only delay, then answer normally (a slow server, for client timeouts).
    times None: every matching request; otherwise the next `times` ones, then the fault is spent.
    ranged: True only requests with a Range header (header reads), False only those without (whole-file
    downloads), None both.
    """

    pattern: str
    status: int | None = 503
    retry_after: float | None = None
    times: int | None = 1
    delay: float = 0.0
    method: str | None = None
    message: str = "injected fault"
    ranged: bool | None = None
    hits: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.pattern)
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str, ranged: bool = False) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        if self.ranged is not None and self.ranged != ranged:
            return False
        return self._regex.search(path) is not None

    @property
    def spent(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "status": self.status,
            "retry_after": self.retry_after,
            "times": self.times,
            "delay": self.delay,
            "method": self.method,
            "message": self.message,
            "ranged": self.ranged,
            "hits": self.hits,
        }


class Faults:
    """The server's fault table; the first live fault matching a request decides its fate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        pattern: str,
        *,
        status: int | None = 503,
        retry_after: float | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        method: str | None = None,
        message: str = "injected fault",
        ranged: bool | None = None,
    ) -> Fault:
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"fault status must be an HTTP status (100-599), got {status}")
        if delay < 0 or (times is not None and times < 0):
            raise ValueError("fault delay and times must not be negative")
        fault = Fault(pattern, status, retry_after, times, delay, method, message, ranged)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str, ranged: bool = False) -> Fault | None:
        """The fault for this request (counting it as hit), or None."""
        with self._lock:
            for fault in self._faults:
                if not fault.spent and fault.matches(method, path, ranged):
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    bytes_sent: int
    repo_id: str | None
    range: str | None
    authorized: bool
    fault: bool
    started_at: float = 0.0  # wall-clock seconds: when the request reached the server
    finished_at: float = 0.0  # when its response was sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "bytes_sent": self.bytes_sent,
            "repo_id": self.repo_id,
            "range": self.range,
            "authorized": self.authorized,
            "fault": self.fault,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class RequestLog:
    """Every request the server answered (admin requests excluded), in order."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._records: list[RequestRecord] = []
        self._in_flight = 0

    def begin(self) -> None:
        """A response is about to be sent; `record` ends it."""
        with self._lock:
            self._in_flight += 1

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._in_flight = max(0, self._in_flight - 1)
            self._lock.notify_all()

    def settled(self) -> bool:
        with self._lock:
            return self._in_flight == 0

    def entries(self, settle_s: float = 2.0) -> list[RequestRecord]:
        """The records so far. A client can hold a whole response before the server has recorded it, so this
        first waits (up to `settle_s`) for responses being sent to be recorded."""
        with self._lock:
            self._lock.wait_for(lambda: self._in_flight == 0, timeout=settle_s)
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, *, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        """How many requests matched: method (exact), path (regex search), status (exact)."""
        regex = re.compile(path) if path is not None else None
        return sum(
            1
            for r in self.entries()
            if (method is None or r.method == method.upper())
            and (regex is None or regex.search(r.path))
            and (status is None or r.status == status)
        )

    def bytes_sent(self, repo_id: str | None = None) -> int:
        """Body bytes sent in all, or for one repository's API and file requests."""
        return sum(r.bytes_sent for r in self.entries() if repo_id is None or r.repo_id == repo_id)

    def bytes_by_repo(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for r in self.entries():
            if r.repo_id is not None:
                totals[r.repo_id] = totals.get(r.repo_id, 0) + r.bytes_sent
        return totals
