"""Global CLI options shared by every command (config file, endpoint, data dir)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.cli.output import fail
from registry.settings import Settings, SettingsError, load_settings


@dataclass
class CliState:
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **extra: Any) -> Settings:
        merged = dict(self.overrides)
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        try:
            return load_settings(**merged)
        except SettingsError as exc:
            raise fail(str(exc), code=2) from exc


STATE = CliState()


def configure(config: Path | None, endpoint: str | None, data_dir: Path | None) -> None:
    if config is not None:
        os.environ["CURATE_CONFIG"] = str(config)
    STATE.overrides.clear()
    if endpoint:
        STATE.overrides["hub"] = {"endpoint": endpoint}
    if data_dir is not None:
        STATE.overrides["data_dir"] = data_dir


def settings(**extra: Any) -> Settings:
    return STATE.settings(**extra)
