"""Loopback networking helpers for the local stack and the tests."""

from __future__ import annotations

import socket
import time

import httpx

from registry.net import LOOPBACK, free_port

__all__ = ["LOOPBACK", "free_port", "port_open", "wait_for_http"]


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_http(url: str, *, timeout: float = 60.0, interval: float = 0.2, ok_statuses: tuple[int, ...] = ()) -> None:
    """Poll `url` until it answers (any status < 500, or one of ok_statuses). Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code < 500 or response.status_code in ok_statuses:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last_error = type(exc).__name__
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last_error})")
