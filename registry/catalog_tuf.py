"""The catalog export as a TUF repository (python-tuf): what lets a consumer tell the current export from an old
one served again (rollback), a stale one (freeze), an altered file, or metadata signed by a wrong key.

Roles, their keys and what they sign (docs/publishing.md, "Trust model"):

- `root` (offline key, `publish.tuf.root_key_path`): the keys of every top-level role. A new version is signed
  by the old root key and the new one (`rotate_root`); consumers pin one root and follow the chain.
- `targets` (offline key, `publish.tuf.targets_key_path`): one delegation, the role `catalog` -> the pipeline's
  catalog key (registry/keys.py, which also signs entries, the index, images and weights) for every path.
  Re-signed only when it is created, when the delegated key changes, or when it nears expiry.
- `catalog` (delegated, the pipeline's catalog key, online): every exported file (entries, index, its signature,
  keys) with its length and sha256. Re-signed whenever the export changes.
- `snapshot`, `timestamp` (online keys, generated under `<data_dir>/keys/tuf` unless configured): the versions of
  the targets metadata, and freshness. The timestamp's expiry (`timestamp_expiry_days`) outlives the weekly run,
  and the `refresh-catalog` deployment re-signs it daily, so a consumer never sees a false freeze.

Every online role is re-signed when its content changes or when less than half of its validity is left.
Consistent snapshots: metadata are `metadata/<version>.<role>.json` (plus `root.json` and `timestamp.json`),
targets `targets/<dir>/<sha256>.<name>`; nothing a client may be reading is ever overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from registry.errors import RegistryError
from registry.keys import KeyPair, generate_private_pem, load_private_key
from registry.settings import Settings, TufSettings

METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
CATALOG_ROLE = "catalog"
_PATHS = ["*", "*/*"]  # TUF path patterns match segment by segment: top-level files and one directory deep
_SERIALIZER = JSONSerializer(compact=False)
S = TypeVar("S", Root, Targets, Snapshot, Timestamp)


class TufRepositoryError(RegistryError):
    """The TUF metadata of the export cannot be read, or a key needed to sign it is unavailable."""


# --------------------------------------------------------------------------------------------- keys


def _key_file(configured: str, default: Path) -> Path | None:
    """A role's key file: the configured path (None if it is absent: an offline key not mounted), else a local key
    generated once under `<data_dir>/keys/tuf` (written aside, then linked: a reader never sees half a key)."""
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    if not default.is_file():
        default.parent.mkdir(parents=True, exist_ok=True)
        scratch = default.with_name(f".{default.name}.{os.getpid()}.new")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(generate_private_pem())
        try:
            os.link(scratch, default)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            scratch.unlink(missing_ok=True)
    return default


@dataclass(frozen=True)
class RoleKeys:
    """The signers available now for each role (an offline key not mounted is absent) and their public keys."""

    signers: dict[str, Signer]
    public: dict[str, Key]

    @classmethod
    def load(cls, settings: Settings, catalog_key: KeyPair) -> RoleKeys:
        tuf = settings.publish.tuf
        local = settings.data_dir / "keys" / "tuf"
        configured = {
            Root.type: tuf.root_key_path,
            Targets.type: tuf.targets_key_path,
            Snapshot.type: tuf.snapshot_key_path,
            Timestamp.type: tuf.timestamp_key_path,
        }
        signers: dict[str, Signer] = {}
        for role, path in configured.items():
            found = _key_file(path, local / f"{role}.pem")
            if found is not None:
                signers[role] = signer_from_pem(found.read_bytes())
        signers[CATALOG_ROLE] = signer_from_pem(catalog_key.private_path.read_bytes())
        return cls(signers=signers, public={role: s.public_key for role, s in signers.items()})

    def signer(self, role: str, why: str) -> Signer:
        signer = self.signers.get(role)
        if signer is None:
            raise TufRepositoryError(
                f"the {role} key is needed to {why}, but publish.tuf.{role}_key_path is not readable; mount the "
                f"offline {role} key there for this run, then remove it"
            )
        return signer


def signer_from_pem(pem: bytes) -> CryptoSigner:
    """A TUF signer (ecdsa-sha2-nistp256) for an EC P-256 private key in PEM."""
    return CryptoSigner(load_private_key(pem))


# --------------------------------------------------------------------------------------------- state


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _read(directory: Path, name: str, kind: type[S]) -> Metadata[S] | None:
    path = directory / METADATA_DIR / name
    if not path.is_file():
        return None
    try:
        md = Metadata.from_bytes(path.read_bytes())
    except DeserializationError as exc:
        raise TufRepositoryError(f"{path} is not TUF metadata ({exc}); restore it from the catalog container") from exc
    if not isinstance(md.signed, kind):
        raise TufRepositoryError(f"{path} holds {md.signed.type} metadata, not {kind.type}")
    return md


def _expiring(signed: Signed, lifetime_days: int, now: datetime) -> bool:
    """Less than half of the role's validity left (or expired)."""
    return signed.expires - now < timedelta(days=lifetime_days) / 2


def _expiry(days: int, now: datetime) -> datetime:
    return now + timedelta(days=days)


@dataclass
class TufState:
    """The current metadata of the repository (None where a role was never written)."""

    root: Metadata[Root] | None
    targets: Metadata[Targets] | None
    catalog: Metadata[Targets] | None
    snapshot: Metadata[Snapshot] | None
    timestamp: Metadata[Timestamp] | None

    @classmethod
    def load(cls, directory: Path) -> TufState:
        root = _read(directory, "root.json", Root)
        timestamp = _read(directory, "timestamp.json", Timestamp)
        snapshot = targets = catalog = None
        if timestamp is not None:
            snapshot = _read(directory, f"{timestamp.signed.snapshot_meta.version}.snapshot.json", Snapshot)
        if snapshot is not None:
            for name, meta in snapshot.signed.meta.items():
                role = name.removesuffix(".json")
                md = _read(directory, f"{meta.version}.{name}", Targets)
                if role == Targets.type:
                    targets = md
                elif role == CATALOG_ROLE:
                    catalog = md
        return cls(root, targets, catalog, snapshot, timestamp)


# --------------------------------------------------------------------------------------------- writing


def _bump(md: Metadata[S] | None, signed: S, signer: Signer, *, extra: tuple[Signer, ...] = ()) -> Metadata[S]:
    signed.version = md.signed.version + 1 if md is not None else 1
    new = Metadata(signed)
    new.sign(signer)
    for other in extra:
        new.sign(other, append=True)
    return new


def _write(out: Path, name: str, md: Metadata[S]) -> None:
    path = out / METADATA_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(md.to_bytes(_SERIALIZER))


def target_name(path: str, sha256: str) -> str:
    """Where a target is stored under `targets/` (consistent snapshots: its sha256 before its file name)."""
    head, _, base = path.rpartition("/")
    return f"{head}/{sha256}.{base}" if head else f"{sha256}.{base}"


def _new_root(keys: RoleKeys, tuf: TufSettings, now: datetime) -> Root:
    root = Root(expires=_expiry(tuf.root_expiry_days, now), consistent_snapshot=True)
    for role in (Root.type, Targets.type, Snapshot.type, Timestamp.type):
        root.add_key(keys.public[role], role)
    return root


def _same_keys(root: Root, keys: RoleKeys) -> bool:
    """Whether the root names the key of every role whose key is available now (offline ones may be absent)."""
    roles = (Targets.type, Snapshot.type, Timestamp.type)
    return all(role not in keys.public or root.roles[role].keyids == [keys.public[role].keyid] for role in roles)


def _renewal_waits(md: Metadata[Any] | None, role: str, keys: RoleKeys, now: datetime, warnings: list[str]) -> bool:
    """An offline role nearing expiry whose key is not mounted: keep it while it is valid, and say so."""
    if md is None or role in keys.signers or md.signed.is_expired(now):
        return False
    warnings.append(
        f"the {role} metadata expires on {md.signed.expires:%Y-%m-%d}: mount the offline {role} key "
        f"(publish.tuf.{role}_key_path) for one export to renew it"
    )
    return True


def _root(
    state: TufState, keys: RoleKeys, tuf: TufSettings, now: datetime, warnings: list[str]
) -> Metadata[Root] | None:
    """A new root version when there is none, when a role's configured key changed, or when it nears expiry."""
    current = state.root
    same = current is not None and _same_keys(current.signed, keys)
    if current is not None and same and not _expiring(current.signed, tuf.root_expiry_days, now):
        return None
    if same and _renewal_waits(current, Root.type, keys, now, warnings):
        return None
    signer = keys.signer(Root.type, "sign the root metadata (new repository, a role key changed, or it nears expiry)")
    if current is None:
        return _bump(None, _new_root(keys, tuf, now), signer)
    root = current.signed
    for role in (Targets.type, Snapshot.type, Timestamp.type):
        if role in keys.public and root.roles[role].keyids != [keys.public[role].keyid]:
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            root.add_key(keys.public[role], role)
    root.expires = _expiry(tuf.root_expiry_days, now)
    return _bump(current, root, signer)


def _delegates_to(targets: Targets, keyid: str) -> bool:
    delegations = targets.delegations
    role = delegations.roles.get(CATALOG_ROLE) if delegations is not None and delegations.roles else None
    return role is not None and role.keyids == [keyid]


def _targets(
    state: TufState, keys: RoleKeys, tuf: TufSettings, now: datetime, warnings: list[str]
) -> Metadata[Targets] | None:
    """The top-level targets: one delegation of every path to the catalog key."""
    catalog = keys.public[CATALOG_ROLE]
    current = state.targets
    same = current is not None and _delegates_to(current.signed, catalog.keyid)
    if current is not None and same and not _expiring(current.signed, tuf.targets_expiry_days, now):
        return None
    if same and _renewal_waits(current, Targets.type, keys, now, warnings):
        return None
    delegation = DelegatedRole(CATALOG_ROLE, [catalog.keyid], 1, terminating=True, paths=list(_PATHS))
    signed = Targets(
        expires=_expiry(tuf.targets_expiry_days, now),
        delegations=Delegations(keys={catalog.keyid: catalog}, roles={CATALOG_ROLE: delegation}),
    )
    signer = keys.signer(Targets.type, "delegate the catalog to the catalog key (new key, or targets nears expiry)")
    return _bump(current, signed, signer)


def _catalog(
    state: TufState, keys: RoleKeys, files: dict[str, bytes], tuf: TufSettings, now: datetime
) -> Metadata[Targets] | None:
    wanted = {path: TargetFile.from_data(path, data, ["sha256"]) for path, data in sorted(files.items())}
    current = state.catalog
    if (
        current is not None
        and current.signed.targets == wanted
        and not _expiring(current.signed, tuf.catalog_expiry_days, now)
    ):
        return None
    signed = Targets(expires=_expiry(tuf.catalog_expiry_days, now), targets=wanted)
    return _bump(current, signed, keys.signer(CATALOG_ROLE, "sign the catalog's targets"))


@dataclass(frozen=True)
class TufUpdate:
    """The metadata files written (relative names under `metadata/`) and the current versions."""

    written: tuple[str, ...]
    versions: dict[str, int]
    warnings: tuple[str, ...] = ()


def _snapshot(
    state: TufState, keys: RoleKeys, meta: dict[str, MetaFile], tuf: TufSettings, now: datetime, force: bool
) -> Metadata[Snapshot] | None:
    current = state.snapshot
    unchanged = current is not None and not force and current.signed.meta == meta
    if current is not None and unchanged and not _expiring(current.signed, tuf.snapshot_expiry_days, now):
        return None
    signed = Snapshot(expires=_expiry(tuf.snapshot_expiry_days, now), meta=meta)
    return _bump(current, signed, keys.signer(Snapshot.type, "sign the snapshot"))


def _timestamp(
    state: TufState, keys: RoleKeys, snapshot_version: int, tuf: TufSettings, now: datetime, force: bool
) -> Metadata[Timestamp] | None:
    current = state.timestamp
    unchanged = current is not None and not force and current.signed.snapshot_meta.version == snapshot_version
    if current is not None and unchanged and not _expiring(current.signed, tuf.timestamp_expiry_days, now):
        return None
    signed = Timestamp(expires=_expiry(tuf.timestamp_expiry_days, now), snapshot_meta=MetaFile(snapshot_version))
    return _bump(current, signed, keys.signer(Timestamp.type, "sign the timestamp"))


def _write_targets(out: Path, catalog: Targets, files: dict[str, bytes]) -> None:
    """Every target under its consistent-snapshot name (unchanged ones are skipped by the caller's sync)."""
    for path, data in files.items():
        stored = out / TARGETS_DIR / target_name(path, catalog.targets[path].hashes["sha256"])
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(data)


def update_repository(
    settings: Settings, catalog_key: KeyPair, current: Path, out: Path, files: dict[str, bytes]
) -> TufUpdate:
    """Bring the TUF repository in `current` up to date with the exported `files` (path -> bytes).

    New metadata and targets are written under `out` (which the caller syncs into `current`); an unchanged export
    whose metadata is not near expiry writes nothing new.
    """
    tuf, now = settings.publish.tuf, _now()
    keys = RoleKeys.load(settings, catalog_key)
    state = TufState.load(current)
    written: list[str] = []
    warnings: list[str] = []

    def publish(name: str, md: Metadata[Any]) -> None:
        _write(out, name, md)
        written.append(name)

    root = _root(state, keys, tuf, now, warnings)
    if root is not None:
        publish(f"{root.signed.version}.root.json", root)
        _write(out, "root.json", root)
        state.root = root
    targets = _targets(state, keys, tuf, now, warnings)
    if targets is not None:
        publish(f"{targets.signed.version}.targets.json", targets)
        state.targets = targets
    catalog = _catalog(state, keys, files, tuf, now)
    if catalog is not None:
        publish(f"{catalog.signed.version}.{CATALOG_ROLE}.json", catalog)
        state.catalog = catalog
    assert state.root is not None and state.targets is not None and state.catalog is not None
    _write_targets(out, state.catalog.signed, files)
    meta = {
        "targets.json": MetaFile(state.targets.signed.version),
        f"{CATALOG_ROLE}.json": MetaFile(state.catalog.signed.version),
    }
    snapshot = _snapshot(state, keys, meta, tuf, now, force=root is not None)
    if snapshot is not None:
        publish(f"{snapshot.signed.version}.snapshot.json", snapshot)
        state.snapshot = snapshot
    assert state.snapshot is not None
    timestamp = _timestamp(state, keys, state.snapshot.signed.version, tuf, now, force=root is not None)
    if timestamp is not None:
        publish("timestamp.json", timestamp)
        state.timestamp = timestamp
    assert state.timestamp is not None
    versions = {
        Root.type: state.root.signed.version,
        Targets.type: state.targets.signed.version,
        CATALOG_ROLE: state.catalog.signed.version,
        Snapshot.type: state.snapshot.signed.version,
        Timestamp.type: state.timestamp.signed.version,
    }
    return TufUpdate(written=tuple(written), versions=versions, warnings=tuple(warnings))


def rotate_root(settings: Settings, current: Path, out: Path, new_root_key: Path) -> Metadata[Root]:
    """Root key rotation: a new root version whose root role is `new_root_key`, signed by the old root key (so
    clients that trust the old root accept it) and by the new one (so the next rotation can be checked)."""
    state = TufState.load(current)
    if state.root is None:
        raise TufRepositoryError(f"no TUF repository under {current}; export the catalog first")
    old = _root_signer(settings)
    new = signer_from_pem(new_root_key.read_bytes())
    root = state.root.signed
    for keyid in list(root.roles[Root.type].keyids):
        root.revoke_key(keyid, Root.type)
    root.add_key(new.public_key, Root.type)
    root.expires = _expiry(settings.publish.tuf.root_expiry_days, _now())
    md = _bump(state.root, root, new, extra=(old,))
    _write(out, f"{md.signed.version}.root.json", md)
    _write(out, "root.json", md)
    return md


def _root_signer(settings: Settings) -> Signer:
    tuf = settings.publish.tuf
    path = _key_file(tuf.root_key_path, settings.data_dir / "keys" / "tuf" / "root.pem")
    if path is None:
        raise TufRepositoryError(
            "the current root key is needed to sign the new root, but publish.tuf.root_key_path is not readable; "
            "mount the offline root key there for this run"
        )
    return signer_from_pem(path.read_bytes())
