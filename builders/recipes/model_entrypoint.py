#!/usr/bin/env python3
"""The shared entrypoint of every runtime image built here and every wrapped upstream image (builders/wrap.py; runs
inside the image, the pipeline never imports it).

Nothing is served until the staged weights are proven to be what the pipeline signed:

1. read the staged model's manifest (`curation.manifest.json`) and the signature it names (content-addressed,
   `curation.signatures/<sha256>.sig`, its sha256 checked; `curation.sig` for stagings before that) from the region's
   blob storage (`MODEL_BLOB_URL`: the weights container URL with a read SAS; files under `MODEL_PREFIX`,
   default `<org>/<name>/<revision>/`), or from a mounted directory (`MODEL_DIR`);
2. verify the OpenSSF model-signing signature with the pipeline's public key (`MODEL_SIGNING_PUBLIC_KEY`, PEM)
   and take each file's sha256 from the signed statement (the manifest only adds sizes);
3. stream every signed file into the Hugging Face cache layout (`$HF_HOME/hub/models--org--name/snapshots/rev`),
   checking size and sha256 against the signed digest as it arrives;
4. verify the whole directory once more with model-signing's own verifier (the exact signed file set);
5. exec the runtime's own server (`/opt/curation/server.json`, written from the runtime's `ServerCommand`) on
   the local copy with HF_HUB_OFFLINE=1, the repo id only as the served model name (a `via_env` server, NIM,
   gets both as the environment variables its `model_arg` and `served_name_arg` name); the SAS URL and the key
   are removed from the server's environment.

Any failure prints one line, `curation-entrypoint: refusing to start: <file> in region <region>: <why>`, and
exits 3 (2 for a usage error). Arguments: `--model-id` (MODEL_ID), `--revision` (MODEL_REVISION); everything
else goes to the server. `--exec CMD ARG...` runs CMD instead of the server once the model is verified, with
`{model_dir}` in its arguments replaced by the verified directory (llama.cpp's converter uses this).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

PROG = "curation-entrypoint"
MODEL_ID_FLAG = "--model-id"
REVISION_FLAG = "--revision"
EXEC_FLAG = "--exec"
MANIFEST_NAME = "curation.manifest.json"
SIGNATURE_NAME = "curation.sig"  # the single signature of stagings made before signatures were content-addressed
SIGNATURES_DIR = "curation.signatures/"
RESERVED = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
SERVER_SPEC = "/opt/curation/server.json"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[0-9a-f]{40}$")
MAX_SMALL_BYTES = 16 * 1024 * 1024  # the manifest and the signature
CHUNK = 1 << 20
# Handed to nothing the entrypoint starts: the SAS is a credential, the key is only for this check.
PRIVATE_ENV = ("MODEL_BLOB_URL", "MODEL_SIGNING_PUBLIC_KEY")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class FetchError(Exception):
    """The model could not be fetched, or did not verify; the message names the file and the region."""


class UsageError(Exception):
    """The container was started with missing or malformed settings."""


# --------------------------------------------------------------------------------------------- names


def safe_name(name: object) -> str:
    """A relative POSIX path with no '..', no absolute part, no control characters."""
    if not isinstance(name, str) or not name or len(name) > 512:
        raise FetchError(f"the manifest lists an invalid file name: {name!r}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise FetchError(f"a file name escapes the model directory: {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FetchError(f"a file name has control characters: {name!r}")
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


# --------------------------------------------------------------------------------------------- sources


class BlobSource:
    """Files of one staged prefix in a region's blob storage (read with the SAS in the container URL)."""

    def __init__(self, container_url: str, prefix: str, region: str) -> None:
        scheme = urllib.parse.urlsplit(container_url).scheme
        if scheme not in ("http", "https"):
            raise UsageError(f"MODEL_BLOB_URL must be an http(s) URL, got scheme {scheme!r}")
        self.base = blob_url(container_url, prefix.strip("/"))
        self.region = region

    def open(self, name: str) -> BinaryIO:
        request = urllib.request.Request(blob_url(self.base, name), headers={"x-ms-version": "2021-08-06"})  # noqa: S310
        try:
            return urllib.request.urlopen(request, timeout=120)  # type: ignore[no-any-return]  # noqa: S310
        except urllib.error.HTTPError as exc:
            raise FetchError(
                f"{name} in region {self.region}: blob storage answered HTTP {exc.code}; check the SAS and that "
                "the model is staged there"
            ) from exc
        except urllib.error.URLError as exc:
            raise FetchError(f"{name} in region {self.region}: cannot reach blob storage: {exc.reason}") from exc


class DirSource:
    """Files of one staged model in a mounted directory (the same layout as a blob prefix)."""

    def __init__(self, directory: Path, region: str) -> None:
        self.directory = directory
        self.region = region

    def open(self, name: str) -> BinaryIO:
        try:
            return (self.directory / safe_name(name)).open("rb")
        except OSError as exc:
            raise FetchError(f"{name} in {self.region}: {exc.strerror}") from exc


Source = BlobSource | DirSource


def read_small(source: Source, name: str) -> bytes:
    with source.open(name) as handle:
        data = handle.read(MAX_SMALL_BYTES + 1)
    if len(data) > MAX_SMALL_BYTES:
        raise FetchError(f"{name} in region {source.region} is larger than {MAX_SMALL_BYTES} bytes")
    return data


# --------------------------------------------------------------------------------------------- verification


def signed_digests(signature: Path, public_key: Path, region: str, name: str = SIGNATURE_NAME) -> dict[str, str]:
    """Verify the model-signing bundle (blob `name`) with the public key; return the signed sha256 of every file.

    Uses model-signing's own verifier for key-signed bundles (pinned in the entrypoint lock), so the
    cryptography is the reference implementation's, not a copy of it.
    """
    from cryptography.exceptions import InvalidSignature
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    try:
        bundle = sign_sigstore_pb.Signature.read(signature)
        manifest = sign_ec_key.Verifier(public_key).verify(bundle)
    except (InvalidSignature, ValueError, KeyError, TypeError) as exc:
        raise FetchError(
            f"{name} in region {region}: the signature does not verify with the given public key "
            f"({type(exc).__name__}: {str(exc)[:200]}); the weights were re-signed, or another key signed them"
        ) from exc
    digests: dict[str, str] = {}
    for descriptor in manifest.resource_descriptors():
        if descriptor.digest.algorithm != "sha256":
            raise FetchError(f"{descriptor.identifier} in region {region}: signed with {descriptor.digest.algorithm}")
        digests[safe_name(descriptor.identifier)] = descriptor.digest.digest_hex
    if not digests:
        raise FetchError(f"{name} in region {region}: the signature covers no files")
    return digests


def verify_directory(model_dir: Path, signature: Path, public_key: Path, region: str) -> None:
    """model-signing's full verification of the local copy: exactly the signed files, each with its digest."""
    from model_signing import verifying

    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)  # type: ignore[no-untyped-call]
        config.verify(model_dir, signature)
    except ValueError as exc:
        raise FetchError(f"{model_dir.name} in region {region}: model-signing verification failed: {exc}") from exc


def plan_files(signed: dict[str, str], manifest: list[tuple[str, int, str]], region: str) -> list[tuple[str, int, str]]:
    """The files to fetch: the signed set, with sizes from the manifest, which must agree with the signature."""
    listed = {name: (size, sha) for name, size, sha in manifest}
    if set(listed) != set(signed):
        odd = sorted(set(listed) ^ set(signed))[:5]
        raise FetchError(f"{', '.join(odd)} in region {region}: the manifest and the signature list different files")
    for name, (_, sha) in sorted(listed.items()):
        if sha != signed[name]:
            raise FetchError(f"{name} in region {region}: the manifest's sha256 differs from the signed one")
    return [(name, listed[name][0], signed[name]) for name in sorted(signed)]


def copy_verified(source: BinaryIO, dest: Path, size: int, sha256: str, region: str, name: str) -> None:
    """Stream `source` into `dest` checking size and sha256; nothing is left behind when it does not match."""
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
        how = f"truncated: {seen} of {size} bytes" if seen < size else ("longer than signed" if seen > size else "")
        detail = f" ({how})" if how else ""
        raise FetchError(f"{name} in region {region}: size or sha256 does not match the signed manifest{detail}")
    os.replace(partial, dest)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_dir(hf_home: Path, repo_id: str, revision: str) -> Path:
    """The HF cache snapshot folder for (repo, revision), with refs/main pointing at it."""
    org, name = repo_id.split("/", 1)
    repo_dir = hf_home / "hub" / f"models--{org}--{name}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snap = repo_dir / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _drop_unsigned(snap: Path, names: Iterable[str]) -> None:
    """Remove what an earlier start left that is not signed now (partials, files of another signing)."""
    keep = {snap / n for n in names}
    for path in sorted(snap.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def signature_blob(doc: Any, region: str) -> tuple[str, str | None]:
    """(blob name, expected sha256 or None) of the signature the manifest names (registry.blobs naming)."""
    signature = doc.get("signature") if isinstance(doc, dict) else None
    if not isinstance(signature, dict):
        return SIGNATURE_NAME, None
    reference, digest = signature.get("reference"), signature.get("signature_digest")
    if isinstance(reference, str) and reference.endswith("/" + SIGNATURE_NAME):
        return SIGNATURE_NAME, None
    hex_digest = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
        raise FetchError(f"{MANIFEST_NAME} in region {region} names no valid signature digest")
    return f"{SIGNATURES_DIR}{hex_digest}.sig", hex_digest


def fetch_verified(source: Source, repo_id: str, revision: str, hf_home: Path, public_key: Path) -> Path:
    """Fetch, check and re-verify one staged model; return its snapshot directory."""
    region = source.region
    work = hf_home / "curation"
    work.mkdir(parents=True, exist_ok=True)
    try:
        doc = json.loads(read_small(source, MANIFEST_NAME))
    except ValueError as exc:
        raise FetchError(f"{MANIFEST_NAME} in region {region} is not JSON: {exc}") from exc
    _, listed = parse_manifest(doc)
    blob, expected = signature_blob(doc, region)
    data = read_small(source, blob)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise FetchError(f"{blob} in region {region}: its sha256 is not the one the manifest names")
    signature = work / f"{repo_id.replace('/', '--')}--{revision}.sig"
    signature.write_bytes(data)
    signed = signed_digests(signature, public_key, region, blob)
    files = plan_files(signed, listed, region)
    snap = snapshot_dir(hf_home, repo_id, revision)
    _drop_unsigned(snap, (name for name, _, _ in files))
    for name, size, sha in files:
        dest = snap / name
        if dest.is_file() and dest.stat().st_size == size and sha256_file(dest) == sha:
            continue
        with source.open(name) as handle:
            copy_verified(handle, dest, size, sha, region, name)
    verify_directory(snap, signature, public_key, region)
    return snap


# --------------------------------------------------------------------------------------------- the server


def load_server_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the server spec {path}: {exc}") from exc
    if not isinstance(spec, dict) or not spec.get("argv"):
        raise UsageError(f"the server spec {path} has no argv")
    return spec


def model_file(snap: Path, wanted: str | None) -> Path:
    """The GGUF file a llama.cpp-style server loads: MODEL_FILE, or the only .gguf in the model."""
    if wanted:
        path = snap / safe_name(wanted)
        if not path.is_file():
            raise UsageError(f"MODEL_FILE {wanted!r} is not one of the verified files")
        return path
    found = sorted(snap.rglob("*.gguf"))
    if len(found) != 1:
        raise UsageError(f"the model has {len(found)} .gguf files; set MODEL_FILE to the one to serve")
    return found[0]


def server_argv(spec: dict[str, Any], snap: Path, repo_id: str, extra: list[str]) -> list[str]:
    """The runtime's command line: program, local model, served name, fixed args, then the caller's args."""
    reserved = {f for f in (spec.get("model_arg"), spec.get("served_name_arg"), *spec.get("reserved_args", ())) if f}
    clash = sorted({a.split("=", 1)[0] for a in extra} & reserved)
    if clash:
        raise UsageError(f"{', '.join(clash)} may not be passed: the entrypoint gives the server the verified model")
    argv = [str(a) for a in spec["argv"]]
    if spec.get("via_env"):
        return argv + [str(a) for a in spec.get("fixed_args", ())] + extra
    kind = spec.get("model_path", "snapshot")
    if kind != "hf-cache":
        model = str(snap) if kind == "snapshot" else str(model_file(snap, os.environ.get("MODEL_FILE")))
        argv += [spec["model_arg"], model] if spec.get("model_arg") else [model]
    if spec.get("served_name_arg"):
        argv += [spec["served_name_arg"], repo_id]
    return argv + [str(a) for a in spec.get("fixed_args", ())] + extra


def server_env(spec: dict[str, Any], snap: Path, repo_id: str) -> dict[str, str]:
    """For a server configured by environment (`via_env`, NIM): the variables that name the verified model."""
    if not spec.get("via_env"):
        return {}
    named = {spec.get("model_arg"): str(snap), spec.get("served_name_arg"): repo_id}
    return {str(name): value for name, value in named.items() if name}


# --------------------------------------------------------------------------------------------- main


def split_args(argv: list[str]) -> tuple[dict[str, str], list[str], list[str] | None]:
    """(entrypoint options, server args, command after --exec or None)."""
    options: dict[str, str] = {}
    rest: list[str] = []
    command: list[str] | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == EXEC_FLAG:
            command = argv[i + 1 :]
            if not command:
                raise UsageError(f"{EXEC_FLAG} needs a command")
            break
        key, eq, value = arg.partition("=")
        if key in (MODEL_ID_FLAG, REVISION_FLAG):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{key} needs a value")
                i += 1
                value = argv[i]
            options[key] = value
        else:
            rest.append(arg)
        i += 1
    return options, rest, command


def _source(env: dict[str, str], repo_id: str, revision: str) -> Source:
    prefix = env.get("MODEL_PREFIX") or f"{repo_id}/{revision}/"
    for part in prefix.strip("/").split("/"):
        if part in ("", ".", ".."):
            raise UsageError(f"MODEL_PREFIX {prefix!r} is not a plain blob prefix")
    if env.get("MODEL_BLOB_URL"):
        url = env["MODEL_BLOB_URL"]
        region = env.get("MODEL_REGION") or urllib.parse.urlsplit(url).netloc
        return BlobSource(url, prefix, region)
    if env.get("MODEL_DIR"):
        return DirSource(Path(env["MODEL_DIR"]), env.get("MODEL_REGION") or "the mounted MODEL_DIR")
    raise UsageError("set MODEL_BLOB_URL (the weights container URL with a read SAS) or MODEL_DIR")


def _public_key(env: dict[str, str], hf_home: Path) -> Path:
    pem = env.get("MODEL_SIGNING_PUBLIC_KEY", "").strip()
    if "BEGIN PUBLIC KEY" not in pem:
        raise UsageError(
            "MODEL_SIGNING_PUBLIC_KEY must hold the pipeline's public key (PEM); nothing is served unsigned"
        )
    hf_home.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="signing-key-", suffix=".pem", dir=hf_home)
    with os.fdopen(handle, "w") as out:
        out.write(pem + "\n")
    return Path(name)


def prepare(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Verify the model and return (the command to exec, its environment); raises UsageError or FetchError."""
    options, rest, command = split_args(argv)
    repo_id = options.get(MODEL_ID_FLAG) or env.get("MODEL_ID") or ""
    revision = options.get(REVISION_FLAG) or env.get("MODEL_REVISION") or ""
    if not REPO_ID.match(repo_id) or ".." in repo_id:
        raise UsageError(f"MODEL_ID must look like org/name, got {repo_id!r}")
    if not REVISION.match(revision):
        raise UsageError("MODEL_REVISION must be the staged 40-hex commit sha")
    hf_home = Path(env.get("HF_HOME", "/var/lib/hf"))
    source = _source(env, repo_id, revision)
    key = _public_key(env, hf_home)
    try:
        snap = fetch_verified(source, repo_id, revision, hf_home, key)
    finally:
        key.unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in snap.rglob("*") if p.is_file())
    log(f"{repo_id} ready in {snap} ({size / 1e6:.1f} MB verified against its signature, region {source.region})")
    clean = {k: v for k, v in env.items() if k not in PRIVATE_ENV} | OFFLINE_ENV
    if command is not None:
        return [a.replace("{model_dir}", str(snap)) for a in command], clean
    spec = load_server_spec(Path(env.get("CURATION_SERVER_SPEC", SERVER_SPEC)))
    return server_argv(spec, snap, repo_id, rest), clean | server_env(spec, snap, repo_id)


def log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str], exec_fn: Callable[[str, list[str], dict[str, str]], object] = os.execvpe) -> int:
    try:
        command, env = prepare(argv, dict(os.environ))
    except UsageError as exc:
        log(f"cannot start: {exc}")
        return 2
    except FetchError as exc:
        log(f"refusing to start: {exc}")
        return 3
    except OSError as exc:
        log(f"refusing to start: {exc}")
        return 3
    exec_fn(command[0], command, env)
    return 0  # reached only when exec_fn returns (tests)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
