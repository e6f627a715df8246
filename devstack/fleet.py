"""Many sample repositories at once: copies of one repository under other ids, each at its own revision.

For the scale tests and benchmark: `clone_repo(store, "curation-samples/tiny-llama-chat", ids)` commits the source's
files under every id, with a README.md of its own (so every copy has its own revision and is a model in its own
right to the pipeline), and trending metadata so discovery lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from devstack.repostore import RepoStore, RepoStoreError

FLEET_DATE = datetime(2026, 1, 5, tzinfo=UTC)


def clone_repo(
    store: RepoStore, source: str, repo_ids: Sequence[str], *, trending_score: float = 50.0
) -> dict[str, str]:
    """Commit `source`'s head under each of `repo_ids`; returns repo id -> revision."""
    head = store.resolve(source)
    if head is None:
        raise RepoStoreError(f"{source} is not in the store at {store.root}; build the samples first")
    base = {path: store.object_path(entry.sha256) for path, entry in head.files.items() if path != "README.md"}
    readme = store.read_bytes(head, "README.md") if "README.md" in head.files else b""
    meta = store.meta(source)
    revisions: dict[str, str] = {}
    for n, repo_id in enumerate(repo_ids):
        files: dict[str, bytes | Path] = dict(base)
        files["README.md"] = readme + f"\n<!-- copy of {source} as {repo_id} -->\n".encode()
        store.delete_repo(repo_id)
        revisions[repo_id] = store.commit(repo_id, files, message=f"Copy of {source}", date=FLEET_DATE)
        store.set_meta(
            repo_id,
            gated=False,
            private=False,
            likes=meta.likes,
            downloads=meta.downloads,
            trending_score=trending_score - n * 0.01,
            created_at=FLEET_DATE,
        )
    return revisions


def keep_only(store: RepoStore, repo_ids: Sequence[str]) -> None:
    """Delete every repository of the store but `repo_ids` (a small, fast sample set)."""
    for repo_id in store.repos():
        if repo_id not in repo_ids:
            store.delete_repo(repo_id)
