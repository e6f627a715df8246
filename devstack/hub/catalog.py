"""The Hub's view of a RepoStore: model info, tree entries, listings; derived data cached per commit."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.hub import cards
from devstack.repostore import Commit, FileEntry, RepoMeta, RepoStore, RepoStoreError, lfs_pointer

LIST_DEFAULT_FIELDS = (
    "_id",
    "id",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "modelId",
)
LIST_FULL_FIELDS = ("author", "sha", "lastModified", "gated", "disabled", "siblings")
EXPANDABLE = frozenset(
    {
        "author",
        "baseModels",
        "cardData",
        "childrenModelCount",
        "config",
        "createdAt",
        "disabled",
        "downloads",
        "downloadsAllTime",
        "evalResults",
        "gated",
        "gguf",
        "inference",
        "inferenceProviderMapping",
        "lastModified",
        "library_name",
        "likes",
        "mask_token",
        "model-index",
        "pipeline_tag",
        "private",
        "resourceGroup",
        "safetensors",
        "sha",
        "siblings",
        "spaces",
        "tags",
        "transformersInfo",
        "trendingScore",
        "usedStorage",
        "widgetData",
    }
)
INFO_FIELDS = (
    "_id",
    "id",
    "modelId",
    "author",
    "sha",
    "lastModified",
    "createdAt",
    "private",
    "gated",
    "disabled",
    "downloads",
    "downloadsAllTime",
    "likes",
    "trendingScore",
    "library_name",
    "pipeline_tag",
    "tags",
    "cardData",
    "config",
    "safetensors",
    "siblings",
    "spaces",
    "usedStorage",
)


def iso(when: datetime) -> str:
    """The Hub's timestamp format: UTC, milliseconds, 'Z'."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Derived:
    """What the Hub computes from one commit's files."""

    card: dict[str, Any] | None
    config: dict[str, Any] | None
    safetensors: dict[str, Any] | None
    library_name: str | None
    pipeline_tag: str | None
    tags: list[str]


class Catalog:
    """Read-side of the store for the server: commits and derived data cached (commits are immutable)."""

    def __init__(self, store: RepoStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._commits: dict[tuple[str, str], Commit] = {}
        self._derived: dict[tuple[str, str], Derived] = {}

    # ------------------------------------------------------------------------------------------ commits

    def commit(self, repo_id: str, sha: str) -> Commit:
        key = (repo_id, sha)
        with self._lock:
            cached = self._commits.get(key)
        if cached is None:
            cached = self.store.get_commit(repo_id, sha)
            with self._lock:
                self._commits[key] = cached
        return cached

    def resolve(self, repo_id: str, revision: str | None) -> Commit | None:
        revision = revision or "main"
        refs = self.store.refs(repo_id)
        if revision in refs:
            return self.commit(repo_id, refs[revision])
        try:
            return self.store.resolve(repo_id, revision)
        except RepoStoreError:
            return None

    def parents(self, commit: Commit) -> Iterable[Commit]:
        """The commit and its ancestors, newest first."""
        current: Commit | None = commit
        while current is not None:
            yield current
            current = self.commit(current.repo_id, current.parent) if current.parent else None

    def read(self, entry: FileEntry, max_bytes: int) -> bytes:
        with self.store.object_path(entry.sha256).open("rb") as handle:
            return handle.read(max_bytes)

    # ------------------------------------------------------------------------------------------ derived

    def derived(self, commit: Commit) -> Derived:
        key = (commit.repo_id, commit.sha)
        with self._lock:
            cached = self._derived.get(key)
        if cached is not None:
            return cached

        def read(path: str, max_bytes: int) -> bytes | None:
            entry = commit.files.get(path)
            return self.read(entry, max_bytes) if entry is not None else None

        paths = sorted(commit.files)
        card = cards.front_matter(read("README.md", cards.MAX_README_BYTES))
        raw_config = cards.load_json_object(read("config.json", cards.MAX_JSON_BYTES + 1))
        config = cards.exposed_config(
            raw_config,
            cards.load_json_object(read("tokenizer_config.json", cards.MAX_JSON_BYTES + 1)),
            cards.load_json_object(read("adapter_config.json", cards.MAX_JSON_BYTES + 1)),
        )
        library = cards.infer_library(card, paths)
        pipeline = cards.infer_pipeline(card, config)
        derived = Derived(
            card=card,
            config=config,
            safetensors=cards.safetensors_info(paths, read),
            library_name=library,
            pipeline_tag=pipeline,
            tags=cards.repo_tags(card, library, pipeline, paths, config),
        )
        with self._lock:
            self._derived[key] = derived
        return derived

    def used_storage(self, repo_id: str) -> int:
        seen: dict[str, int] = {}
        commits_dir = self.store.root / "repos" / repo_id / "commits"
        for path in commits_dir.glob("*.json"):
            for entry in self.commit(repo_id, path.stem).files.values():
                seen[entry.sha256] = entry.size
        return sum(seen.values())

    # ------------------------------------------------------------------------------------------ model info

    @staticmethod
    def sibling(path: str, entry: FileEntry, blobs: bool) -> dict[str, Any]:
        if not blobs:
            return {"rfilename": path}
        out: dict[str, Any] = {"rfilename": path, "size": entry.size, "blobId": entry.git_oid}
        if entry.lfs:
            pointer = len(lfs_pointer(entry.sha256, entry.size))
            out["lfs"] = {"size": entry.size, "sha256": entry.sha256, "pointerSize": pointer}
        return out

    def model_info(
        self, repo_id: str, commit: Commit, meta: RepoMeta, fields: Iterable[str], *, blobs: bool = False
    ) -> dict[str, Any]:
        """The fields asked for (absent values omitted), always with `_id` and `id`."""
        wanted = ["_id", "id", *[f for f in fields if f not in ("_id", "id")]]
        lazy: dict[str, Callable[[], Any]] = {
            "_id": lambda: hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": lambda: repo_id,
            "modelId": lambda: repo_id,
            "author": lambda: repo_id.split("/", 1)[0],
            "sha": lambda: commit.sha,
            "lastModified": lambda: iso(commit.date),
            "createdAt": lambda: iso(meta.created_at),
            "private": lambda: meta.private,
            "gated": lambda: meta.gated,
            "disabled": lambda: meta.disabled,
            "downloads": lambda: meta.downloads,
            "downloadsAllTime": lambda: meta.downloads,
            "likes": lambda: meta.likes,
            "trendingScore": lambda: meta.trending_score,
            "library_name": lambda: self.derived(commit).library_name,
            "pipeline_tag": lambda: self.derived(commit).pipeline_tag,
            "tags": lambda: self.derived(commit).tags,
            "cardData": lambda: self.derived(commit).card,
            "config": lambda: self.derived(commit).config,
            "safetensors": lambda: self.derived(commit).safetensors,
            "siblings": lambda: [self.sibling(p, e, blobs) for p, e in sorted(commit.files.items())],
            "spaces": lambda: [],
            "usedStorage": lambda: self.used_storage(repo_id),
        }
        out: dict[str, Any] = {}
        for name in wanted:
            compute = lazy.get(name)
            if compute is None:
                continue
            value = compute()
            if value is not None:
                out[name] = value
        return out

    # ------------------------------------------------------------------------------------------ tree

    @staticmethod
    def directories(commit: Commit) -> set[str]:
        dirs: set[str] = set()
        for path in commit.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs

    @staticmethod
    def _subtree(commit: Commit, directory: str) -> tuple[tuple[str, str], ...]:
        prefix = directory + "/"
        return tuple(sorted((p, e.git_oid) for p, e in commit.files.items() if p.startswith(prefix)))

    def _last_commit(self, commit: Commit, key: Callable[[Commit], object]) -> dict[str, Any]:
        current = key(commit)
        last = commit
        for ancestor in self.parents(commit):
            if key(ancestor) != current:
                break
            last = ancestor
        title = last.message.splitlines()[0] if last.message else ""
        return {"id": last.sha, "title": title, "date": iso(last.date)}

    def tree_entry(self, commit: Commit, path: str, *, expand: bool) -> dict[str, Any] | None:
        entry = commit.files.get(path)
        if entry is not None:
            out: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                pointer = len(lfs_pointer(entry.sha256, entry.size))
                out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": pointer}
            if expand:
                out["lastCommit"] = self._last_commit(commit, lambda c: c.files.get(path))
            return out
        if path in self.directories(commit):
            subtree = self._subtree(commit, path)
            oid = hashlib.sha1(repr((path, subtree)).encode(), usedforsecurity=False).hexdigest()
            folder: dict[str, Any] = {"type": "directory", "oid": oid, "size": 0, "path": path}
            if expand:
                folder["lastCommit"] = self._last_commit(commit, lambda c: self._subtree(c, path))
            return folder
        return None

    def tree(self, commit: Commit, path: str, *, recursive: bool) -> list[str] | None:
        """The paths listed under `path` ("" = root), sorted, or None if `path` is not a directory."""
        path = path.strip("/")
        dirs = self.directories(commit)
        if path and path not in dirs:
            return None
        prefix = f"{path}/" if path else ""
        names = [p for p in (*commit.files, *dirs) if p.startswith(prefix) and p != path]
        if not recursive:
            names = [p for p in names if "/" not in p[len(prefix) :]]
        return sorted(names)
