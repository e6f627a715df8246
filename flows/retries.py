"""Which failed task runs Prefect retries: only those whose error says retrying can help (`retryable`).

The clients underneath (Hub, blob storage) retry transient failures themselves, within their policy's deadline,
and mark what they gave up on as not retryable; a refused connection, a 404 or a rejected file is not retryable
from the start. So a task retry never multiplies a client's retries, and a hopeless call fails once.
"""

from __future__ import annotations

from typing import Any


def only_retryable(_task: Any, _task_run: Any, state: Any) -> bool:
    """A Prefect `retry_condition_fn`: retry when the task's error has `retryable` set."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - inspected only; the task's failure still propagates
        return bool(getattr(exc, "retryable", False))
    return False
