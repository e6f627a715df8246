"""How flows get their settings: plain, JSON-able overrides as flow parameters (never secrets), the rest from
curation.toml and the environment in the process that runs the flow (a worker, in production)."""

from __future__ import annotations

from typing import Any

from registry.settings import Settings, load_settings


def settings_from(overrides: dict[str, Any] | None) -> Settings:
    return load_settings(**(overrides or {}))
