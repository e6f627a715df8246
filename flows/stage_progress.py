"""Progress of stage flows: Prefect progress artifacts, and in-process events for the CLI's bars and for tests.

`ProgressEvent(phase, region, advance, total)` reports bytes done in one phase ("download", "upload", "copy")
of one region; `phase == "step"` marks a step boundary of the flow (`region` is then the step that just ended:
"signed", "uploaded", "replicated", "verified", "manifests", "recorded"), with no bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from registry.artifacts import artifact_key

STEP = "step"


@dataclass(frozen=True)
class ProgressEvent:
    """Bytes done in one phase ("download", "upload", "copy", "verify") of one region."""

    phase: str
    region: str
    advance: int
    total: int


_listeners: list[Callable[[ProgressEvent], None]] = []
_listeners_lock = threading.Lock()


def add_progress_listener(listener: Callable[[ProgressEvent], None]) -> Callable[[], None]:
    """Receive progress events of stage flows run in this process (CLI progress bars); returns a remover."""
    with _listeners_lock:
        _listeners.append(listener)

    def remove() -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def emit(event: ProgressEvent) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


class ArtifactProgress:
    """A Prefect progress artifact updated at most every 2 s (and at 100%), plus the in-process listeners."""

    def __init__(self, phase: str, region: str, total: int, description: str) -> None:
        self.phase, self.region, self.total = phase, region, max(total, 1)
        self.done = 0
        self._last = 0.0
        self._lock = threading.Lock()
        key = artifact_key("stage", phase, region)
        created = create_progress_artifact(progress=0.0, key=key, description=description)
        assert isinstance(created, UUID)
        self._id: UUID = created
        emit(ProgressEvent(phase, region, 0, total))

    def advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            now = time.monotonic()
            push = now - self._last >= 2.0 or self.done >= self.total
            if push:
                self._last = now
            progress = min(100.0, 100.0 * self.done / self.total)
        emit(ProgressEvent(self.phase, self.region, amount, self.total))
        if push:
            update_progress_artifact(self._id, progress)


def step(name: str) -> None:
    """Announce that a step of the stage flow ended (listeners only; no artifact)."""
    emit(ProgressEvent(STEP, name, 0, 0))
