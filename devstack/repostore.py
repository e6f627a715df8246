"""A tiny content-addressed repository store: what the Hub test server serves and the sample builder writes.

Layout under ROOT:
    objects/<aa>/<sha256>                     file contents, addressed by sha256
    repos/<org>/<name>/meta.json              mutable Hub-side metadata (gated, private, likes, downloads, trending)
    repos/<org>/<name>/refs.json              {"main": "<commit sha>", ...}
    repos/<org>/<name>/commits/<sha>.json     one immutable commit: parent, date, message, file table

Revisions are real: a commit's sha is the sha1 of its canonical content (parent, date, message, files), so the
same files give the same sha every time, a change gives a new one, and old shas stay resolvable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".pkl",
    ".pickle",
    ".gguf",
    ".onnx",
    ".h5",
    ".msgpack",
    ".npy",
    ".npz",
    ".model",
    ".tar",
    ".zip",
    ".gz",
)
LFS_THRESHOLD = 10 * 1024 * 1024
DEFAULT_DATE = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class RepoStoreError(Exception):
    """The store cannot do what was asked (unknown repo, bad id); the message says which."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Frozen):
    sha256: str
    size: int
    git_oid: str
    lfs: bool


class Commit(_Frozen):
    sha: str
    repo_id: str
    parent: str | None
    date: datetime
    message: str
    files: dict[str, FileEntry]


class RepoMeta(_Frozen):
    gated: Literal[False, "auto", "manual"] = False
    private: bool = False
    likes: int = 0
    downloads: int = 0
    trending_score: float = 0.0
    created_at: datetime = DEFAULT_DATE
    disabled: bool = False


def git_blob_oid(data_size: int, sha1_of: Iterable[bytes]) -> str:
    digest = hashlib.sha1(f"blob {data_size}\0".encode(), usedforsecurity=False)
    for chunk in sha1_of:
        digest.update(chunk)
    return digest.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def is_lfs_path(path: str, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size >= LFS_THRESHOLD


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RepoStore:
    """Read and write repositories under one root directory. Safe for concurrent readers; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------------------------------ objects

    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def _put_object(self, source: bytes | Path) -> FileEntry:
        if isinstance(source, bytes):
            sha256 = hashlib.sha256(source).hexdigest()
            size = len(source)
            git_oid_data: bytes | None = source
            target = self.object_path(sha256)
            if not target.exists():
                _atomic_write(target, source)
        else:
            digest = hashlib.sha256()
            size = 0
            with source.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
            sha256 = digest.hexdigest()
            target = self.object_path(sha256)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".tmp-{os.getpid()}-{sha256}")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            git_oid_data = None
        return self._entry(sha256, size, git_oid_data, self.object_path(sha256))

    @staticmethod
    def _entry(sha256: str, size: int, data: bytes | None, path: Path) -> FileEntry:
        lfs = False
        # The LFS decision needs the path; callers fix it up in `commit` (see _with_path).
        if data is not None:
            oid = git_blob_oid(size, [data])
        else:
            with path.open("rb") as handle:
                oid = git_blob_oid(size, iter(lambda: handle.read(1 << 20), b""))
        return FileEntry(sha256=sha256, size=size, git_oid=oid, lfs=lfs)

    @staticmethod
    def _with_path(path: str, entry: FileEntry) -> FileEntry:
        if not is_lfs_path(path, entry.size):
            return entry
        pointer = lfs_pointer(entry.sha256, entry.size)
        return entry.model_copy(update={"lfs": True, "git_oid": git_blob_oid(len(pointer), [pointer])})

    # ------------------------------------------------------------------------------------------ repos

    def _repo_dir(self, repo_id: str) -> Path:
        if not _REPO_ID.match(repo_id) or ".." in repo_id:
            raise RepoStoreError(f"not a repository id of the form 'org/name': {repo_id!r}")
        return self.root / "repos" / repo_id

    def exists(self, repo_id: str) -> bool:
        try:
            return (self._repo_dir(repo_id) / "refs.json").is_file()
        except RepoStoreError:
            return False

    def repos(self) -> list[str]:
        base = self.root / "repos"
        if not base.is_dir():
            return []
        found = [
            f"{org.name}/{repo.name}"
            for org in sorted(base.iterdir())
            if org.is_dir()
            for repo in sorted(org.iterdir())
            if (repo / "refs.json").is_file()
        ]
        return found

    def meta(self, repo_id: str) -> RepoMeta:
        path = self._repo_dir(repo_id) / "meta.json"
        if not path.is_file():
            return RepoMeta()
        return RepoMeta.model_validate_json(path.read_bytes())

    def set_meta(self, repo_id: str, **changes: object) -> RepoMeta:
        meta = self.meta(repo_id).model_copy(update=changes)
        meta = RepoMeta.model_validate(meta.model_dump())
        _atomic_write(self._repo_dir(repo_id) / "meta.json", meta.model_dump_json(indent=2).encode())
        return meta

    def refs(self, repo_id: str) -> dict[str, str]:
        path = self._repo_dir(repo_id) / "refs.json"
        if not path.is_file():
            return {}
        refs: dict[str, str] = json.loads(path.read_text())
        return refs

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        message: str = "update",
        date: datetime | None = None,
        branch: str = "main",
        replace: bool = True,
        delete: Iterable[str] = (),
    ) -> str:
        """Write a commit on `branch` and return its sha.

        With replace=True the commit holds exactly `files`; otherwise it starts from the branch head, adds or
        overwrites `files` and drops `delete`. Committing an identical tree with the same date and message
        returns the same sha (and writes nothing new).
        """
        repo_dir = self._repo_dir(repo_id)
        parent = self.refs(repo_id).get(branch)
        table: dict[str, FileEntry] = {}
        if not replace and parent:
            table.update(self.get_commit(repo_id, parent).files)
        for name in delete:
            table.pop(name, None)
        for name, source in files.items():
            table[name] = self._with_path(name, self._put_object(source))
        when = (date or DEFAULT_DATE).astimezone(UTC)
        body = {
            "parent": parent,
            "date": when.isoformat(),
            "message": message,
            "files": {k: table[k].model_dump() for k in sorted(table)},
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        sha = hashlib.sha1(canonical, usedforsecurity=False).hexdigest()
        if parent and self.get_commit(repo_id, parent).files == table:
            return parent
        commit = Commit(sha=sha, repo_id=repo_id, parent=parent, date=when, message=message, files=table)
        commit_path = repo_dir / "commits" / f"{sha}.json"
        if not commit_path.exists():
            _atomic_write(commit_path, commit.model_dump_json(indent=1).encode())
        refs = self.refs(repo_id)
        refs[branch] = sha
        _atomic_write(repo_dir / "refs.json", json.dumps(refs, indent=2, sort_keys=True).encode())
        if not (repo_dir / "meta.json").exists():
            self.set_meta(repo_id)
        return sha

    def get_commit(self, repo_id: str, sha: str) -> Commit:
        path = self._repo_dir(repo_id) / "commits" / f"{sha}.json"
        if not _FULL_SHA.match(sha) or not path.is_file():
            raise RepoStoreError(f"{repo_id} has no commit {sha!r}")
        return Commit.model_validate_json(path.read_bytes())

    def resolve(self, repo_id: str, revision: str | None = None) -> Commit | None:
        """A branch name, a full sha or an unambiguous sha prefix (>= 7 hex) -> the commit; None if unknown."""
        if not self.exists(repo_id):
            return None
        revision = revision or "main"
        refs = self.refs(repo_id)
        if revision in refs:
            return self.get_commit(repo_id, refs[revision])
        if _FULL_SHA.match(revision):
            try:
                return self.get_commit(repo_id, revision)
            except RepoStoreError:
                return None
        if re.fullmatch(r"[0-9a-f]{7,39}", revision):
            matches = [p.stem for p in (self._repo_dir(repo_id) / "commits").glob(f"{revision}*.json")]
            if len(matches) == 1:
                return self.get_commit(repo_id, matches[0])
        return None

    def history(self, repo_id: str, branch: str = "main") -> Iterator[Commit]:
        sha = self.refs(repo_id).get(branch)
        while sha:
            commit = self.get_commit(repo_id, sha)
            yield commit
            sha = commit.parent or ""

    def delete_repo(self, repo_id: str) -> None:
        shutil.rmtree(self._repo_dir(repo_id), ignore_errors=True)

    def read_bytes(self, commit: Commit, path: str) -> bytes:
        entry = commit.files.get(path)
        if entry is None:
            raise RepoStoreError(f"{commit.repo_id}@{commit.sha[:12]} has no file {path!r}")
        return self.object_path(entry.sha256).read_bytes()
