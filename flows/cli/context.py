"""Global CLI options shared by every command (config file, endpoint, data dir)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.settings import Settings, load_settings


@dataclass
class CliState:
    overrides: dict[str, Any] = field(default_factory=dict)
    debug: bool = False

    def settings(self, **extra: Any) -> Settings:
        merged = dict(self.overrides)
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return load_settings(**merged)  # a SettingsError is a usage error at the CLI's boundary


STATE = CliState()


def configure(config: Path | None, endpoint: str | None, data_dir: Path | None, *, debug: bool = False) -> None:
    if config is not None:
        os.environ["CURATE_CONFIG"] = str(config)
    STATE.debug = debug
    STATE.overrides.clear()
    if endpoint:
        STATE.overrides["hub"] = {"endpoint": endpoint}
    if data_dir is not None:
        STATE.overrides["data_dir"] = data_dir


def settings(**extra: Any) -> Settings:
    return STATE.settings(**extra)
