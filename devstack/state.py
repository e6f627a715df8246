"""The local stack's state file: which services `curate dev up` started, where they listen, their pids."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from devstack.process import pid_alive


class ServiceState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    pids: tuple[int, ...] = ()
    url: str = ""
    env: dict[str, str] = Field(default_factory=dict, description="variables a client of this service needs")
    details: dict[str, Any] = Field(default_factory=dict)

    def alive(self) -> bool:
        return bool(self.pids) and all(pid_alive(pid) for pid in self.pids)


class StackState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    services: dict[str, ServiceState] = Field(default_factory=dict)

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for service in self.services.values():
            if service.alive():
                merged.update(service.env)
        return merged


def state_dir(data_dir: Path) -> Path:
    return data_dir / "devstack"


def state_path(data_dir: Path) -> Path:
    return state_dir(data_dir) / "state.json"


def load_state(data_dir: Path) -> StackState:
    path = state_path(data_dir)
    if not path.is_file():
        return StackState()
    try:
        return StackState.model_validate_json(path.read_bytes())
    except ValueError:
        return StackState()


def save_state(data_dir: Path, state: StackState) -> None:
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2))
    os.replace(tmp, path)


def with_service(state: StackState, service: ServiceState) -> StackState:
    return StackState(services={**state.services, service.name: service})


def without_service(state: StackState, name: str) -> StackState:
    return StackState(services={k: v for k, v in state.services.items() if k != name})
