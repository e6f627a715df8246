"""Catalog entries: their id, content identity, signature and export (whether one is published is decided in
decisions/publication.py).

The entry signature is an ECDSA P-256 signature over the entry's canonical JSON (sorted keys, no whitespace,
`signature` and `status`/`status_reason` excluded, so flagging an entry does not invalidate what was signed).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import RegistryError
from registry.identifiers import check_entry_id
from registry.keys import KeyPair, key_id, public_pem, verify_signature
from registry.schema import CatalogEntry, Signature, model_slug

_UNSIGNED_FIELDS = {"signature", "status", "status_reason"}


class PublicationError(RegistryError):
    """An entry, its export or the signed index cannot be read or verified; the message says what failed."""


def entry_id(repo_id: str) -> str:
    return model_slug(repo_id)


# ---------------------------------------------------------------------------------------------- content

_PROVENANCE_VOLATILE = ("flow_run_ids", "timestamps")


def entry_content(entry: CatalogEntry) -> dict[str, Any]:
    """What makes an entry "the same" across runs: everything but signature, status, publication time and the
    run ids / timestamps in its provenance (a re-run that redoes nothing must not count as a change)."""
    unsigned = {"signature", "status", "status_reason", "published_at"} | _unset_additions(entry)
    data = entry.model_dump(mode="json", exclude=unsigned)
    provenance = dict(data.get("provenance") or {})
    for key in _PROVENANCE_VOLATILE:
        provenance.pop(key, None)
    data["provenance"] = provenance
    return data


def content_digest(entry: CatalogEntry) -> str:
    canonical = json.dumps(entry_content(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def same_content(a: CatalogEntry, b: CatalogEntry) -> bool:
    return content_digest(a) == content_digest(b)


# ---------------------------------------------------------------------------------------------- signing


def _unset_additions(entry: CatalogEntry) -> set[str]:
    """Fields added after entries were first signed, left out while empty: an older entry keeps the bytes (and
    the signature) it was published with."""
    return set() if entry.derived else {"derived"}


def canonical_bytes(entry: CatalogEntry) -> bytes:
    data = entry.model_dump(mode="json", exclude=_UNSIGNED_FIELDS | _unset_additions(entry))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_digest(entry: CatalogEntry) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(entry)).hexdigest()


def sign_entry(entry: CatalogEntry, key: KeyPair) -> CatalogEntry:
    payload = canonical_bytes(entry)
    raw = key.sign(payload)
    signature = Signature(
        key_id=key.key_id,
        signed_digest=entry_digest(entry),
        reference=base64.b64encode(raw).decode(),
        signature_digest="sha256:" + hashlib.sha256(raw).hexdigest(),
    )
    return entry.model_copy(update={"signature": signature})


def verify_entry(entry: CatalogEntry, public_key: ec.EllipticCurvePublicKey) -> None:
    """Raise PublicationError unless `entry` carries a valid signature by `public_key` over its content."""
    signature = entry.signature
    if signature is None:
        raise PublicationError(f"entry {entry.id} is not signed")
    if signature.key_id != key_id(public_key):
        raise PublicationError(f"entry {entry.id} was signed by key {signature.key_id[:12]}, not the trusted key")
    if signature.signed_digest != entry_digest(entry):
        raise PublicationError(f"entry {entry.id} was changed after it was signed (digest mismatch)")
    try:
        raw = base64.b64decode(signature.reference, validate=True)
    except ValueError as exc:
        raise PublicationError(f"entry {entry.id} has a malformed signature") from exc
    if not verify_signature(public_key, raw, canonical_bytes(entry)):
        raise PublicationError(f"entry {entry.id}: the signature does not verify")


# ---------------------------------------------------------------------------------------------- export


def export_entries(entries: Iterable[CatalogEntry], directory: Path, public_key: ec.EllipticCurvePublicKey) -> Path:
    """Write `entries/<id>.json`, `index.json` and `keys/<key id>.pem`; return the index path."""
    (directory / "entries").mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    index: list[dict[str, object]] = []
    for entry in sorted(entries, key=lambda e: e.id):
        path = directory / "entries" / f"{entry.id}.json"
        path.write_text(entry.model_dump_json(indent=2))
        index.append(
            {
                "id": entry.id,
                "repo_id": entry.model.repo_id,
                "revision": entry.model.revision,
                "status": entry.status.value,
                "templates": [t.template.id for t in entry.templates],
                "digest": entry_digest(entry),
                "path": f"entries/{entry.id}.json",
            }
        )
    (directory / "keys" / f"{key_id(public_key)}.pem").write_bytes(public_pem(public_key))
    index_path = directory / "index.json"
    index_path.write_text(json.dumps({"schema_version": 1, "entries": index}, indent=2))
    return index_path


def load_exported_entry(directory: Path, entry_id_: str) -> CatalogEntry:
    path = directory / "entries" / f"{check_entry_id(entry_id_)}.json"
    if not path.is_file():
        raise PublicationError(f"no exported entry {entry_id_!r} under {directory}; run `curate run` or check the id")
    return CatalogEntry.model_validate_json(path.read_bytes())


# ---------------------------------------------------------------------------------------------- index signature

INDEX_SIGNATURE = "index.json.sig"


def sign_index(directory: Path, key: KeyPair) -> Path:
    """Sign `index.json` (its exact bytes) into `index.json.sig` (base64 ECDSA P-256).

    The entry signature leaves the status out (flagging must not invalidate it); the signed index is what
    binds each entry's current status and digest to the key, so a withdrawn entry cannot be relabelled.
    """
    index = directory / "index.json"
    path = directory / INDEX_SIGNATURE
    path.write_text(base64.b64encode(key.sign(index.read_bytes())).decode() + "\n")
    return path


def verify_index(directory: Path, public_key: ec.EllipticCurvePublicKey) -> dict[str, dict[str, object]]:
    """The signed index's rows by entry id; raises PublicationError when missing, unsigned or altered."""
    index, signature = directory / "index.json", directory / INDEX_SIGNATURE
    try:
        data = index.read_bytes()
        raw = base64.b64decode(signature.read_text().strip(), validate=True)
    except OSError as exc:
        raise PublicationError(f"cannot read the signed index in {directory}: {exc}; re-export the catalog") from exc
    except ValueError as exc:
        raise PublicationError(f"{signature} is not a base64 signature") from exc
    if not verify_signature(public_key, raw, data):
        raise PublicationError(f"{index.name} was changed after it was signed, or signed with another key")
    try:
        rows = json.loads(data)["entries"]
        return {str(row["id"]): dict(row) for row in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise PublicationError(f"{index} is not a catalog index: {exc}") from exc
