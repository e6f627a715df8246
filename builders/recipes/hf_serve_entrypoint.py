#!/usr/bin/env python3
"""hf-serve entrypoint (runs inside the image; standard library only, never imported by the pipeline).

1. Fetches one staged model into the Hugging Face cache layout, verifying every file's size and sha256:
   from blob storage (`MODEL_BLOB_URL`: the weights container URL, with a read SAS query when needed; files
   live under `<org>/<name>/<revision>/` next to the manifest `curation.manifest.json`), or from a mounted
   directory (`MODEL_DIR`, verified against its manifest when one is there).
2. Execs `transformers serve --device cpu --host HOST --port PORT` with HF_HUB_OFFLINE=1, so the model is
   served under its repo id.

Arguments (each also from the environment): --model-id (MODEL_ID), --revision (MODEL_REVISION, else the
manifest's), --host (HOST, 0.0.0.0), --port (PORT, 8000), --device (DEVICE, cpu); anything else is passed
to `transformers serve`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MANIFEST_NAME = "curation.manifest.json"
RESERVED = frozenset({MANIFEST_NAME, "curation.sig"})
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[0-9a-f]{40}$")
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
CHUNK = 1 << 20


class FetchError(Exception):
    """The model could not be fetched or did not verify."""


def safe_name(name: object) -> str:
    """A relative POSIX path with no '..', no absolute part, no control characters."""
    if not isinstance(name, str) or not name or len(name) > 512:
        raise FetchError(f"manifest lists an invalid file name: {name!r}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise FetchError(f"manifest file name escapes the model directory: {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FetchError(f"manifest file name has control characters: {name!r}")
    return name


def parse_manifest(doc: Any) -> tuple[str | None, list[tuple[str, int, str]]]:
    """(revision or None, [(name, size, sha256)]) from a manifest (registry.blobs.WeightsManifest JSON)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise FetchError("the manifest is not a JSON object with a 'files' list")
    revision = doc.get("revision") if isinstance(doc.get("revision"), str) else None
    ref = doc.get("ref")
    if revision is None and isinstance(ref, dict) and isinstance(ref.get("revision"), str):
        revision = ref["revision"]
    files: list[tuple[str, int, str]] = []
    for item in doc["files"]:
        if not isinstance(item, dict):
            raise FetchError("a manifest entry is not an object")
        name = safe_name(item.get("name"))
        size, sha = item.get("size"), item.get("sha256")
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise FetchError(f"manifest entry {name!r} needs an integer size and a sha256")
        if name not in RESERVED:
            files.append((name, size, sha))
    if not files:
        raise FetchError("the manifest lists no files")
    return revision, files


def blob_url(base: str, name: str) -> str:
    """`name` under the container/prefix URL `base`, keeping its SAS query."""
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + "/" + urllib.parse.quote(name)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _open(url: str) -> Any:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise FetchError(f"only http(s) blob URLs are supported, got {scheme!r}")
    request = urllib.request.Request(url, headers={"x-ms-version": "2021-08-06"})  # noqa: S310 - scheme checked
    try:
        return urllib.request.urlopen(request, timeout=120)  # noqa: S310 - scheme checked above
    except urllib.error.HTTPError as exc:
        where = urllib.parse.urlsplit(url).path
        raise FetchError(f"GET {where} answered HTTP {exc.code}: check the SAS URL and the staged layout") from exc
    except urllib.error.URLError as exc:
        raise FetchError(f"cannot reach blob storage: {exc.reason}") from exc


def _copy_verified(source: Any, dest: Path, size: int, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    seen = 0
    with partial.open("wb") as out:
        while chunk := source.read(CHUNK):
            seen += len(chunk)
            if seen > size:
                break
            digest.update(chunk)
            out.write(chunk)
    if seen != size or digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{dest.name}: size or sha256 does not match the manifest; the staged copy is corrupt")
    os.replace(partial, dest)


def snapshot_dir(hf_home: Path, repo_id: str, revision: str) -> Path:
    """The HF cache snapshot folder for (repo, revision), with refs/main pointing at it."""
    org, name = repo_id.split("/", 1)
    repo_dir = hf_home / "hub" / f"models--{org}--{name}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snap = repo_dir / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def fetch_from_blob(container_url: str, repo_id: str, revision: str | None, hf_home: Path) -> Path:
    if revision is None:
        raise FetchError("MODEL_REVISION is required with MODEL_BLOB_URL (the staged layout is per revision)")
    prefix = blob_url(container_url, f"{repo_id}/{revision}")
    with _open(blob_url(prefix, MANIFEST_NAME)) as response:
        raw = response.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise FetchError("the manifest is too large")
    _, files = parse_manifest(json.loads(raw))
    snap = snapshot_dir(hf_home, repo_id, revision)
    for name, size, sha in files:
        dest = snap / name
        if dest.is_file() and dest.stat().st_size == size and _sha256_file(dest) == sha:
            continue
        with _open(blob_url(prefix, name)) as response:
            _copy_verified(response, dest, size, sha)
    return snap


def fetch_from_dir(model_dir: Path, repo_id: str, revision: str | None, hf_home: Path) -> Path:
    manifest = model_dir / MANIFEST_NAME
    files: list[tuple[str, int, str]] | None = None
    if manifest.is_file():
        found, files = parse_manifest(json.loads(manifest.read_text()))
        revision = revision or found
    revision = revision or "0" * 40
    snap = snapshot_dir(hf_home, repo_id, revision)
    if files is None:
        names = [p.relative_to(model_dir).as_posix() for p in sorted(model_dir.rglob("*")) if p.is_file()]
        for name in names:
            source = model_dir / safe_name(name)
            size = source.stat().st_size
            with source.open("rb") as handle:
                _copy_verified(handle, snap / name, size, _sha256_file(source))
        return snap
    for name, size, sha in files:
        with (model_dir / name).open("rb") as handle:
            _copy_verified(handle, snap / name, size, sha)
    return snap


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_model(prog: str, model_id: str | None, revision: str | None, hf_home: Path) -> Path | int:
    """Check the model id and revision, then fetch and verify the model: its snapshot dir, or an exit code."""
    if not model_id or not REPO_ID.match(model_id) or ".." in model_id:
        print(f"{prog}: MODEL_ID must look like org/name, got {model_id!r}", file=sys.stderr)
        return 2
    if revision is not None and not REVISION.match(revision):
        print(f"{prog}: MODEL_REVISION must be a 40-hex commit sha", file=sys.stderr)
        return 2
    try:
        if os.environ.get("MODEL_BLOB_URL"):
            snap = fetch_from_blob(os.environ["MODEL_BLOB_URL"], model_id, revision, hf_home)
        elif os.environ.get("MODEL_DIR"):
            snap = fetch_from_dir(Path(os.environ["MODEL_DIR"]), model_id, revision, hf_home)
        else:
            print(f"{prog}: set MODEL_BLOB_URL or MODEL_DIR to say where the model is", file=sys.stderr)
            return 2
    except (FetchError, OSError, ValueError) as exc:
        print(f"{prog}: cannot fetch {model_id}: {exc}", file=sys.stderr)
        return 3
    print(f"{prog}: {model_id} ready in {snap}", file=sys.stderr, flush=True)
    return snap


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-serve", add_help=True)
    parser.add_argument("--model-id", default=os.environ.get("MODEL_ID"))
    parser.add_argument("--revision", default=os.environ.get("MODEL_REVISION"))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - container server
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    parser.add_argument("--device", default=os.environ.get("DEVICE", "cpu"))
    args, extra = parser.parse_known_args(argv)
    hf_home = Path(os.environ.get("HF_HOME", "/var/lib/hf"))
    if args.model_id:
        prepared = prepare_model("hf-serve", args.model_id, args.revision, hf_home)
        if isinstance(prepared, int):
            return prepared
    else:
        (hf_home / "hub").mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"
    command = [
        "transformers",
        "serve",
        "--device",
        args.device,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    os.execvp(command[0], [*command, *extra])  # noqa: S606 - fixed program, no shell
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
