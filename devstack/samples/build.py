"""Build the sample repositories into a RepoStore, once: the result is cached and keyed by its inputs.

Two caches:
* the store itself (`root`): `root/samples.json` records the SampleSet and the key it was built for; a call
  with the same key whose repos still point at the recorded revisions returns it without writing anything.
* generated artifacts (`cache_dir`, default `<repo>/.cache/samples-build`, or CURATE_SAMPLES_CACHE): the
  converted SmolLM2 (~45 s), the tiny chat models (~9 s) and the tiny speech / vision-language models (~15 s),
  each in a directory named by its own key with a
  `manifest.json` of sha256s, so a new store (e.g. a test's tmp_path) is filled without regenerating them.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from devstack.repostore import RepoStore
from devstack.samples import expectations as ex
from devstack.samples import real, repos, tiny, tiny_vlm, tiny_whisper
from devstack.samples.errors import SamplesError
from registry.schema import Verdict

BUILDER_VERSION = "1"  # bump when generated weights/tokenizers change (regenerates the artifact caches)
RECORD_VERSION = "3"  # bump when the repos' files or the SampleSet record change (rebuilds the stores only)
SAMPLE_DATE = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
MARKER = "samples.json"
MANIFEST = "manifest.json"
CACHE_ENV = "CURATE_SAMPLES_CACHE"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "samples-build"


class Sample(BaseModel):
    """One built sample repository: what it is, its revision, and what screening must conclude."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str
    revision: str
    kind: ex.SampleKind
    expected_verdict: Verdict
    expected_codes: tuple[str, ...] = ()
    task: str
    library_name: str
    license: str
    trending_score: float
    likes: int
    downloads: int
    gated: bool = False
    private: bool = False
    real: bool = False
    description: str = ""
    files: dict[str, str] = {}

    @property
    def listed_without_token(self) -> bool:
        return not self.private


class SampleSet(BaseModel):
    """Every sample repository built into `root` (a RepoStore root), in trending order (highest first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    key: str
    builder_version: str = BUILDER_VERSION
    include_real: bool
    samples: tuple[Sample, ...]
    artifacts: dict[str, Path] = {}

    def store(self) -> RepoStore:
        return RepoStore(self.root)

    def get(self, repo_id: str) -> Sample:
        for sample in self.samples:
            if sample.repo_id == repo_id:
                return sample
        raise KeyError(f"{repo_id} is not in this sample set; built: {self.repo_ids}")

    def by_kind(self, kind: ex.SampleKind | str) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.kind == kind)

    @property
    def repo_ids(self) -> tuple[str, ...]:
        return tuple(s.repo_id for s in self.samples)

    @property
    def repos(self) -> tuple[Sample, ...]:
        """Alias of `samples`."""
        return self.samples

    def trending(self, *, with_token: bool = False) -> tuple[Sample, ...]:
        """What the Hub's trending listing shows, best first (private repos only with a token)."""
        shown = [s for s in self.samples if with_token or s.listed_without_token]
        return tuple(sorted(shown, key=lambda s: (-s.trending_score, s.repo_id)))


# ------------------------------------------------------------------------------------------- keys and locks


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _digest(parts: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def tiny_key() -> str:
    libs = ("torch", "transformers", "tokenizers", "safetensors")
    return _digest({"builder": BUILDER_VERSION, "part": "tiny", **{lib: _version(lib) for lib in libs}})


def media_key() -> str:
    libs = ("torch", "transformers", "tokenizers", "safetensors")
    return _digest({"builder": BUILDER_VERSION, "part": "media", **{lib: _version(lib) for lib in libs}})


def smollm2_key() -> str:
    libs = ("torch", "transformers", "tokenizers", "safetensors", "gguf", real.SMOLLM2_WHEEL)
    return _digest({"builder": BUILDER_VERSION, "part": "smollm2", **{lib: _version(lib) for lib in libs}})


def set_key(include_real: bool) -> str:
    parts: dict[str, object] = {
        "builder": BUILDER_VERSION,
        "record": RECORD_VERSION,
        "tiny": tiny_key(),
        "media": media_key(),
        "include_real": include_real,
    }
    if include_real:
        parts.update({"smollm2": smollm2_key(), "minilm": _version(real.MINILM_WHEEL)})
    return _digest(parts)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_artifact(cache_dir: Path, name: str, key: str, make: Callable[[Path], None]) -> Path:
    """`cache_dir/<name>-<key>`: made once by `make(tmp_dir)`, then recorded in a manifest of sha256s."""
    target = cache_dir / f"{name}-{key[:16]}"
    if (target / MANIFEST).is_file():
        return target
    with _locked(cache_dir / f".{name}.lock"):
        if (target / MANIFEST).is_file():
            return target
        tmp = cache_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        make(tmp)
        manifest = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def artifact_manifest(directory: Path) -> dict[str, str]:
    manifest: dict[str, str] = json.loads((directory / MANIFEST).read_text())
    return manifest


def _make_tiny(out: Path) -> None:
    tok = tiny.tokenizer_json()
    for arch in ("llama", "qwen2"):
        for name, data in tiny.tiny_model_files(arch, tok).items():
            (out / arch).mkdir(exist_ok=True)
            (out / arch / name).write_bytes(data)
    from safetensors.torch import load

    weights = load((out / "llama" / "model.safetensors").read_bytes())
    (out / "pickle").mkdir()
    (out / "pickle" / "pytorch_model.bin").write_bytes(tiny.pickle_bytes(weights))


def _make_media(out: Path) -> None:
    """The tiny speech-recognition and vision-language models (devstack/samples/tiny_whisper.py, tiny_vlm.py)."""
    for name, files in (("whisper", tiny_whisper.tiny_whisper_files()), ("llava", tiny_vlm.tiny_vlm_files())):
        (out / name).mkdir()
        for file_name, data in files.items():
            (out / name / file_name).write_bytes(data)


def _read_dir(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _smollm2_files(directory: Path) -> dict[str, bytes | Path]:
    return {name: directory / name for name in sorted(artifact_manifest(directory))}


# ---------------------------------------------------------------------------------------------- building


def _repo_files(expect: ex.Expectation, tiny_dir: Path, media_dir: Path, smollm2_dir: Path | None) -> repos.Files:
    llama = _read_dir(tiny_dir / "llama")
    if expect.repo_id == ex.TINY_WHISPER:
        what = "A 2+2-layer Whisper speech-recognition model"
        return repos.media_repo(expect, _read_dir(media_dir / "whisper"), what)
    if expect.repo_id == ex.TINY_LLAVA:
        what = "A LLaVA vision-language chat model (2-layer CLIP vision tower, 2-layer Llama)"
        return repos.media_repo(expect, _read_dir(media_dir / "llava"), what)
    if expect.repo_id == ex.SMOLLM2:
        assert smollm2_dir is not None
        return _smollm2_files(smollm2_dir)
    if expect.repo_id == ex.MINILM:
        return dict(real.minilm_files())
    if expect.repo_id == ex.TINY_LLAMA:
        return repos.tiny_repo(expect, llama, "Llama")
    if expect.repo_id == ex.TINY_QWEN2:
        return repos.tiny_repo(expect, _read_dir(tiny_dir / "qwen2"), "Qwen2")
    builders: dict[str, Callable[[], repos.Files]] = {
        ex.GATED: lambda: repos.gated_repo(expect, llama),
        ex.PRIVATE: lambda: repos.private_repo(expect, llama),
        ex.CUSTOM_CODE: lambda: repos.custom_code_repo(expect, llama, llama["config.json"]),
        ex.PICKLE_ONLY: lambda: repos.pickle_repo(
            expect, llama, (tiny_dir / "pickle" / "pytorch_model.bin").read_bytes()
        ),
        ex.NONCOMMERCIAL: lambda: repos.noncommercial_repo(expect, llama),
        ex.LLAMA3_LICENSE: lambda: repos.llama3_license_repo(expect, llama),
    }
    return builders[expect.repo_id]()


def _load_marker(root: Path, key: str) -> SampleSet | None:
    path = root / MARKER
    if not path.is_file():
        return None
    try:
        found = SampleSet.model_validate_json(path.read_bytes())
    except ValueError:
        return None
    if found.key != key or found.root != root:
        return None
    store = RepoStore(root)
    if any(store.refs(s.repo_id).get("main") != s.revision for s in found.samples):
        return None
    return found


def build_samples(root: Path, *, include_real: bool = True, cache_dir: Path | None = None) -> SampleSet:
    """Build every sample repository into the RepoStore at `root` (or reuse the build already there).

    Same inputs, same bytes, same revision shas, on every machine with the same library versions. Repos in
    `root` that a test changed (e.g. with `bump_revision`) are rebuilt to their original revisions.
    """
    root = Path(root).resolve()
    key = set_key(include_real)
    found = _load_marker(root, key)
    if found is not None:
        return found
    cache = Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).resolve()
    with _locked(root / ".samples.lock"):
        found = _load_marker(root, key)
        if found is not None:
            return found
        tiny_dir = cached_artifact(cache, "tiny", tiny_key(), _make_tiny)
        media_dir = cached_artifact(cache, "media", media_key(), _make_media)
        smollm2_dir = cached_artifact(cache, "smollm2", smollm2_key(), real.build_smollm2) if include_real else None
        store = RepoStore(root)
        samples = []
        for expect in ex.EXPECTATIONS:
            store.delete_repo(expect.repo_id)
            if expect.real and not include_real:
                continue
            files = _repo_files(expect, tiny_dir, media_dir, smollm2_dir)
            revision = store.commit(expect.repo_id, files, message="Initial commit", date=SAMPLE_DATE, replace=True)
            store.set_meta(
                expect.repo_id,
                gated="manual" if expect.gated else False,
                private=expect.private,
                likes=expect.likes,
                downloads=expect.downloads,
                trending_score=expect.trending_score,
                created_at=SAMPLE_DATE,
            )
            commit = store.get_commit(expect.repo_id, revision)
            samples.append(
                Sample(
                    revision=revision,
                    files={path: entry.sha256 for path, entry in sorted(commit.files.items())},
                    **expect.model_dump(),
                )
            )
        artifacts = {"tiny": tiny_dir, "media": media_dir, **({"smollm2": smollm2_dir} if smollm2_dir else {})}
        result = SampleSet(root=root, key=key, include_real=include_real, samples=tuple(samples), artifacts=artifacts)
        tmp = root / f".{MARKER}.tmp-{os.getpid()}"
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.replace(root / MARKER)
        return result


def export_repo(store: RepoStore, repo_id: str, dest: Path, revision: str | None = None) -> Path:
    """Write one revision's files into `dest` (a plain local model directory) and return `dest`."""
    commit = store.resolve(repo_id, revision)
    if commit is None:
        raise SamplesError(f"{repo_id}@{revision or 'main'} is not in the store at {store.root}")
    dest = Path(dest)
    for path, entry in sorted(commit.files.items()):
        parts = Path(path).parts
        if Path(path).is_absolute() or ".." in parts or not parts:
            raise SamplesError(f"refusing to export unsafe path {path!r} from {repo_id}")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.object_path(entry.sha256), target)
    return dest


def bump_revision(store: RepoStore, repo_id: str, *, note: str = "updated model card") -> str:
    """Commit a new revision of `repo_id` that changes only README.md; returns the new sha.

    Deterministic: the new commit's date is one day after the head's and its content depends only on the
    head, so the same sequence of bumps gives the same shas. Use a store of your own (not the shared one).
    """
    head = store.resolve(repo_id)
    if head is None:
        raise SamplesError(f"{repo_id} is not in the store at {store.root}; build the samples first")
    readme = store.read_bytes(head, "README.md") if "README.md" in head.files else b""
    number = sum(1 for _ in store.history(repo_id)) + 1
    updated = readme + f"\n<!-- revision {number} -->\nRevision {number}: {note}.\n".encode()
    return store.commit(
        repo_id,
        {"README.md": updated},
        message=f"Update README.md (revision {number})",
        date=head.date + timedelta(days=1),
        replace=False,
    )
