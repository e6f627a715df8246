"""Upstream image digests, recorded by `curate images pin` (registry/upstream.py) in one checked-in file.

Each runtime module declares its upstream references once (`UpstreamImage.reference`, a version tag); the digest
each one resolved to lives in `pins.json` beside this module, keyed `<runtime>/<vendor>`, with the reference it
was resolved for. A pin whose reference is not the declared one any more (a version bump) is ignored, so a stale
digest is never built. `with_pins` gives a runtime its recorded digests; `registry.runtimes` applies the
checked-in file, and a policy may name another file (`images.pins_file`, e.g. for tests or a private mirror).

Why a file of its own rather than curation.toml: a digest is a fact about the upstream registry found by a
machine, not policy; the pin step rewrites it whole and reviewers see exactly which digests moved in its diff.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry.runtimes.interface import Runtime, RuntimeSpecError, Upstream

DEFAULT_PINS_FILE = Path(__file__).resolve().parent / "pins.json"
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


class PinnedDigest(BaseModel):
    """One upstream reference and the manifest digest it resolved to when it was pinned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str = Field(description="the declared upstream reference (registry/repository:tag)")
    digest: str = Field(description="sha256:... manifest digest (an index for multi-platform images)")
    resolved_from: str = Field(description="where the digest was read: the reference, or its mirror")
    pinned_at: datetime

    @field_validator("digest")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError(f"not a sha256 digest: {value!r}")
        return value


class Pins(BaseModel):
    """Every recorded pin, by `<runtime>/<vendor>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pins: dict[str, PinnedDigest] = Field(default_factory=dict)

    def with_pin(self, runtime: str, vendor: str, pin: PinnedDigest) -> Pins:
        return Pins(pins={**self.pins, pin_key(runtime, vendor): pin})


def pin_key(runtime: str, vendor: str) -> str:
    return f"{runtime}/{vendor}"


def load_pins(path: Path = DEFAULT_PINS_FILE) -> Pins:
    """The pins recorded in `path` (none when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Pins()
    except OSError as exc:
        raise RuntimeSpecError(f"cannot read the upstream pins file {path}: {exc.strerror}") from exc
    try:
        return Pins.model_validate_json(text)
    except ValidationError as exc:
        raise RuntimeSpecError(f"the upstream pins file {path} is malformed: {exc.errors()[0]['msg']}") from exc


def save_pins(pins: Pins, path: Path = DEFAULT_PINS_FILE) -> None:
    """Write `pins` atomically, sorted, so a re-pin's diff shows only the digests that moved."""
    data = json.loads(pins.model_dump_json())
    text = json.dumps({"pins": dict(sorted(data["pins"].items()))}, indent=2, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".pins-", suffix=".json", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(name, path)


def with_pins(runtime: Runtime, pins: Pins) -> Runtime:
    """`runtime` with the digest of every upstream image whose recorded pin is for its declared reference."""
    if not isinstance(runtime.image, Upstream):
        return runtime
    images = {}
    for vendor, image in runtime.image.images.items():
        pin = pins.pins.get(pin_key(runtime.name, vendor))
        digest = pin.digest if pin is not None and pin.reference == image.reference else None
        images[vendor] = image.model_copy(update={"digest": digest})
    return runtime.model_copy(update={"image": Upstream(images=images)})
