"""A small Trivy vulnerability database (schema v2, a bbolt file), written in pure Python.

Trivy reads `<cache-dir>/db/trivy.db` + `metadata.json` when run with `--skip-db-update`. The tests (and
`curate dev up`, which needs some database for offline vulnerability scanning) build one here with advisories
they choose, so vulnerability gating is exercised for real on an offline machine.

bbolt layout written: pages 0 and 1 are meta pages, page 2 an empty freelist, page 3 the root bucket's
leaf, then one leaf page (with overflow pages when large) per bucket, nested buckets included. Every
bucket is stored as its own page (no inline buckets), keys sorted bytewise, as bbolt's cursor expects.

Trivy schema v2 buckets used:
  `<source>` (`debian 12`, `pip::GitHub Security Advisory pip`) / `<package>` / `<vuln id>` -> advisory
  `vulnerability` / `<vuln id>` -> detail JSON (Title, Description, Severity, VendorSeverity, ...)
  `data-source` / `<source>` -> {"ID", "Name", "URL"}
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Union

PAGE_SIZE = 4096
_MAGIC = 0xED0CDAED
_VERSION = 2
_BRANCH, _LEAF, _META, _FREELIST = 0x01, 0x02, 0x04, 0x10
_BUCKET_LEAF = 0x01
_HEADER = 16
_ELEMENT = 16

Tree = Mapping[bytes, Union[bytes, "Tree"]]


def _fnv64a(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


class _Writer:
    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.next_id = 4  # 0, 1 meta; 2 freelist; 3 root leaf

    def leaf(self, items: Tree) -> int:
        """Write one bucket (recursively); returns its page id."""
        keys = sorted(items)
        elements: list[tuple[int, bytes, bytes]] = []
        for key in keys:
            value = items[key]
            if isinstance(value, bytes):
                elements.append((0, key, value))
            else:
                child = self.leaf(value)
                elements.append((_BUCKET_LEAF, key, struct.pack("<QQ", child, 0)))
        page_id = self.next_id
        self.next_id += 1  # reserved now; its overflow pages are reserved once the size is known
        body = bytearray()
        data_start = _HEADER + _ELEMENT * len(elements)
        offsets = []
        for _, key, value in elements:
            offsets.append(data_start + len(body))
            body += key + value
        page = bytearray(_HEADER + _ELEMENT * len(elements)) + body
        for index, (flags, key, value) in enumerate(elements):
            element_at = _HEADER + _ELEMENT * index
            struct.pack_into("<IIII", page, element_at, flags, offsets[index] - element_at, len(key), len(value))
        pages_needed = max(1, -(-len(page) // PAGE_SIZE))
        overflow = pages_needed - 1
        if len(elements) > 0xFFFF:
            raise ValueError("too many keys in one bucket for a single bbolt leaf page")
        struct.pack_into("<QHHI", page, 0, page_id, _LEAF, len(elements), overflow)
        page += bytes(pages_needed * PAGE_SIZE - len(page))
        self.next_id += overflow
        self.pages[page_id] = bytes(page)
        return page_id


def _meta(page_id: int, root: int, high_water: int, txid: int) -> bytes:
    meta = struct.pack("<IIII", _MAGIC, _VERSION, PAGE_SIZE, 0)
    meta += struct.pack("<QQ", root, 0)  # root bucket: root page, sequence
    meta += struct.pack("<QQQ", 2, high_water, txid)  # freelist page, page high-water mark, txid
    meta += struct.pack("<Q", _fnv64a(meta))
    page = struct.pack("<QHHI", page_id, _META, 0, 0) + meta
    return page + bytes(PAGE_SIZE - len(page))


def write_bbolt(path: Path, tree: Tree) -> None:
    """Write `tree` (bucket name -> {key: value bytes | nested bucket}) as a bbolt database file."""
    writer = _Writer()
    root_items: dict[bytes, Any] = {}
    for name, bucket in tree.items():
        if isinstance(bucket, bytes):
            raise ValueError("top-level entries must be buckets")
        root_items[name] = bucket
    # The root leaf lists the top-level buckets; children are written first so their ids are known.
    children = {name: writer.leaf(bucket) for name, bucket in sorted(root_items.items())}
    root_page = bytearray(_HEADER + _ELEMENT * len(children))
    body = bytearray()
    for index, (name, child) in enumerate(sorted(children.items())):
        element_at = _HEADER + _ELEMENT * index
        value = struct.pack("<QQ", child, 0)
        pos = len(root_page) + len(body) - element_at
        struct.pack_into("<IIII", root_page, element_at, _BUCKET_LEAF, pos, len(name), len(value))
        body += name + value
    page = root_page + body
    if len(page) > PAGE_SIZE:
        raise ValueError("too many top-level buckets for one root page")
    struct.pack_into("<QHHI", page, 0, 3, _LEAF, len(children), 0)
    writer.pages[3] = bytes(page + bytes(PAGE_SIZE - len(page)))
    freelist = struct.pack("<QHHI", 2, _FREELIST, 0, 0)
    writer.pages[2] = freelist + bytes(PAGE_SIZE - len(freelist))
    high_water = writer.next_id
    writer.pages[0] = _meta(0, 3, high_water, 1)
    writer.pages[1] = _meta(1, 3, high_water, 2)
    data = bytearray(high_water * PAGE_SIZE)
    for page_id, content in writer.pages.items():
        data[page_id * PAGE_SIZE : page_id * PAGE_SIZE + len(content)] = content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------- trivy schema


_SEVERITY_NUMBER = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

DATA_SOURCES = {
    "debian 12": {
        "ID": "debian",
        "Name": "Debian Security Tracker",
        "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
    },
    "pip::GitHub Security Advisory pip": {
        "ID": "ghsa",
        "Name": "GitHub Security Advisory pip",
        "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
    },
}


@dataclass(frozen=True)
class Advisory:
    """One planted vulnerability: which package in which source, and from which version it is fixed."""

    vuln_id: str
    source: str  # "debian 12" (source package names) or "pip::GitHub Security Advisory pip"
    package: str
    fixed_version: str = ""
    vulnerable_versions: tuple[str, ...] = ()  # language ecosystems: e.g. ("<99.0",)
    severity: str = "CRITICAL"
    title: str = "planted test vulnerability"
    description: str = "A vulnerability planted by the test suite's database builder."

    def advisory_json(self) -> dict[str, Any]:
        if self.source.startswith("pip::") or self.vulnerable_versions:
            out: dict[str, Any] = {"VulnerableVersions": list(self.vulnerable_versions)}
            if self.fixed_version:
                out["PatchedVersions"] = [self.fixed_version]
            return out
        return {"FixedVersion": self.fixed_version} if self.fixed_version else {"Status": 3}

    def detail_json(self) -> dict[str, Any]:
        vendor = DATA_SOURCES.get(self.source, {}).get("ID", "nvd")
        return {
            "Title": self.title,
            "Description": self.description,
            "Severity": self.severity,
            "VendorSeverity": {
                vendor: _SEVERITY_NUMBER[self.severity],
                "nvd": _SEVERITY_NUMBER[self.severity],
            },
            "References": [f"https://example.invalid/{self.vuln_id}"],
            "PublishedDate": "2026-01-01T00:00:00Z",
            "LastModifiedDate": "2026-01-01T00:00:00Z",
        }


@dataclass
class TrivyDatabase:
    advisories: list[Advisory] = field(default_factory=list)

    def tree(self) -> dict[bytes, Any]:
        tree: dict[bytes, Any] = {b"vulnerability": {}, b"data-source": {}}
        for adv in self.advisories:
            source = tree.setdefault(adv.source.encode(), {})
            package = source.setdefault(adv.package.encode(), {})
            package[adv.vuln_id.encode()] = _json(adv.advisory_json())
            tree[b"vulnerability"][adv.vuln_id.encode()] = _json(adv.detail_json())
        for source_name, info in DATA_SOURCES.items():
            tree[b"data-source"][source_name.encode()] = _json(info)
        return tree

    def write(self, cache_dir: Path, *, now: datetime | None = None) -> Path:
        """Write `<cache_dir>/db/trivy.db` and `metadata.json`; returns the db directory."""
        moment = now or datetime.now(UTC)
        db_dir = cache_dir / "db"
        write_bbolt(db_dir / "trivy.db", self.tree())
        metadata = {
            "Version": 2,
            "NextUpdate": _stamp(moment + timedelta(days=3650)),
            "UpdatedAt": _stamp(moment),
            "DownloadedAt": _stamp(moment),
        }
        (db_dir / "metadata.json").write_text(json.dumps(metadata))
        return db_dir


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_trivy_db(cache_dir: Path, advisories: list[Advisory] | None = None) -> Path:
    """A Trivy cache dir with a schema-v2 database of `advisories` (none: an empty but valid database)."""
    return TrivyDatabase(list(advisories or [])).write(cache_dir)
