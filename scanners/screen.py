"""Screening one repository at one revision: which files to read, within which byte budget, and the verdict.

Only metadata, small text files (README, LICENSE, configs, index files) and byte ranges (safetensors headers,
pickle opcode streams) are read; weight data never is. Hostile file names are never requested. Every read goes
through `_Reader`, which counts the bytes, so each report says what screening cost.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import yaml

from registry import finding_codes as codes
from registry.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HubAuthError,
    HubError,
    HubResponseError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from registry.hub import HubSource, RepoFile, RepoInfo
from registry.schema import Finding, LicenseReference, ModelRef, ScreeningReport, Severity, Verdict
from registry.settings import Settings
from scanners import (
    access,
    formats,
    licenses,
    numpy_arrays,
    paths,
    pickles,
    remote_code,
    safetensors_headers,
    secrets,
)
from scanners.errors import ScreeningError
from scanners.policy import Policy, Subject, default_policy

SCANNER = "screen"
_SHA = re.compile(r"^[0-9a-f]{40}$")
TEXT_SUFFIXES = (
    ".json",
    ".md",
    ".txt",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".env",
    ".py",
    ".sh",
    ".jinja",
)
# Large vocabularies: text, but never worth their bytes (no licence, no auto_map, no plausible secret).
SKIP_TEXT = ("tokenizer.json", "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json")
MAX_TEXT_FILES = 256
TEXT_BUDGET_FACTOR = 8  # text files read in total: at most this many x screening.max_text_file_bytes
MAX_SAFETENSORS_FILES = 4096
MAX_PICKLE_FILES = 32
DEFAULT_PICKLE_BUDGET = pickles.DEFAULT_BUDGET


class _Blocked(Exception):
    """File reads are refused (gated/private without a usable token)."""


@dataclass
class _Reader:
    """Reads of one pinned revision, counted; a refused read blocks the rest."""

    source: HubSource
    ref: ModelRef
    bytes_read: int = 0
    blocked: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)  # reads may run in threads (_read_texts)

    def _guard(self, call: Callable[[], bytes]) -> bytes:
        if self.blocked is not None:
            raise _Blocked(str(self.blocked))
        try:
            data = call()
        except (GatedRepoError, HubAuthError) as exc:
            self.blocked = exc
            raise _Blocked(str(exc)) from exc
        with self._lock:
            self.bytes_read += len(data)
        return data

    def range(self, path: str, start: int, length: int) -> bytes:
        return self._guard(lambda: self.source.read_range(self.ref, path, start, length))

    def file(self, path: str, max_bytes: int) -> bytes:
        return self._guard(lambda: self.source.read_file(self.ref, path, max_bytes=max_bytes))

    def ranger(self, path: str) -> Callable[[int, int], bytes]:
        return lambda start, length: self.range(path, start, length)


@dataclass
class _Work:
    findings: list[Finding] = field(default_factory=list)

    def add(self, items: Any) -> None:
        self.findings.extend(items)


def _unreadable(path: str, why: str, code: str = codes.FILE_UNREADABLE) -> Finding:
    shown = paths.display_path(path)
    return Finding(
        scanner=SCANNER,
        code=code,
        severity=Severity.MEDIUM,
        message=f"{shown} could not be screened ({why}); a maintainer must review it",
        path=shown,
    )


def _is_license_file(path: str) -> bool:
    return path.count("/") <= 1 and bool(licenses.LICENSE_FILE.match(path))


def select_text_files(files: tuple[RepoFile, ...], max_bytes: int) -> tuple[list[RepoFile], list[RepoFile]]:
    """(files screening needs, extra small text files for the secret scan), hostile names excluded."""
    needed: list[RepoFile] = []
    extra: list[RepoFile] = []
    for f in files:
        if not paths.is_safe(f.path):
            continue
        name = f.path.rsplit("/", 1)[-1]
        lower = f.path.lower()
        if (
            f.path == "README.md"
            or _is_license_file(f.path)
            or remote_code.is_auto_map_file(f.path)
            or lower.endswith(safetensors_headers.INDEX_SUFFIX)
        ):
            needed.append(f)
        elif lower.endswith(TEXT_SUFFIXES) and name not in SKIP_TEXT and not f.lfs and (f.size or 0) <= max_bytes:
            extra.append(f)
    extra.sort(key=lambda f: (f.size or 0, f.path))
    return needed, extra[: max(0, MAX_TEXT_FILES - len(needed))]


def _front_matter(readme: str) -> dict[str, Any]:
    """The README's YAML front matter (used only when the Hub gave no card data)."""
    if not readme.startswith("---"):
        return {}
    end = readme.find("\n---", 3)
    if end == -1 or end > 256_000:
        return {}
    try:
        value = yaml.safe_load(readme[3:end])
    except yaml.YAMLError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_json(data: bytes | None) -> dict[str, Any] | None:
    return remote_code.parse_config(data) if data is not None else None


def _unresolved(
    repo_id: str, revision: str | None, exc: HubError, has_token: bool, policy: Policy, digest: str
) -> ScreeningReport:
    """The report of a pinned revision the Hub does not serve (not found, gated, refused token)."""
    if revision is None or not _SHA.match(revision):
        raise ScreeningError(f"{repo_id}: {exc}", repo_id=repo_id) from exc
    if isinstance(exc, GatedRepoError | HubAuthError):
        finding = access.needs_token(repo_id, gated=True, private=False, has_token=has_token, refused=True)
    else:
        finding = access.not_found(repo_id, revision, has_token=has_token)
    return _report(_ref(repo_id, revision), [finding], policy, digest, formats=(), license_ref=None, bytes_read=0)


def _metadata_findings(
    work: _Work, repo_id: str, info: RepoInfo, reader: _Reader, has_token: bool
) -> formats.FormatScan:
    """Names, formats and access, from the listing alone; blocks file reads of a gated repo without a token."""
    all_paths = [f.path for f in info.files]
    work.add(paths.scan_paths(all_paths))
    format_scan = formats.scan_formats(all_paths)
    work.add(format_scan.findings)
    if info.disabled:
        work.add([access.disabled(repo_id)])
    if (info.gated or info.private) and not has_token:
        reader.blocked = GatedRepoError(f"{repo_id} is gated or private and no token is configured")
    return format_scan


def _planned_texts(work: _Work, info: RepoInfo, max_text: int) -> tuple[list[RepoFile], set[RepoFile]]:
    """(the text files to read, in order, those of them screening needs): the needed ones first, then others for
    the secret scan while the byte budget lasts (by their listed sizes); a needed file over the size limit is a
    finding instead."""
    needed, extra = select_text_files(info.files, max_text)
    planned: list[RepoFile] = []
    budget = TEXT_BUDGET_FACTOR * max_text
    for f in [*needed, *extra]:
        if f.size is not None and f.size > max_text:
            if f in needed:
                why = f"{f.size} bytes, over screening.max_text_file_bytes"
                work.add([_unreadable(f.path, why, codes.FILE_TOO_LARGE)])
            continue
        if budget <= 0:
            break
        planned.append(f)
        budget -= f.size if f.size is not None else max_text
    return planned, set(needed)


def _read_texts(work: _Work, reader: _Reader, info: RepoInfo, max_text: int, parallel: int) -> dict[str, bytes]:
    """The planned text files, `parallel` read at once (each read waits out the Hub's latency); results are taken
    in plan order, and a refused read ends them as if they had been read one after another."""
    planned, needed = _planned_texts(work, info, max_text)

    def read(f: RepoFile) -> bytes | Exception:
        try:
            return reader.file(f.path, max_text)
        except (_Blocked, EntryNotFoundError, HubResponseError) as exc:
            return exc

    if parallel > 1 and len(planned) > 1:
        with ThreadPoolExecutor(max_workers=min(parallel, len(planned)), thread_name_prefix="screen-read") as pool:
            outcomes = list(pool.map(read, planned))
    else:
        outcomes = [read(f) for f in planned]
    texts: dict[str, bytes] = {}
    for f, outcome in zip(planned, outcomes, strict=True):
        if isinstance(outcome, _Blocked):
            break
        if isinstance(outcome, EntryNotFoundError):
            work.add([_unreadable(f.path, "listed but not served")])
        elif isinstance(outcome, HubResponseError):
            if f in needed:
                work.add([_unreadable(f.path, str(outcome)[:160], codes.FILE_TOO_LARGE)])
        elif isinstance(outcome, bytes):
            texts[f.path] = outcome
    return texts


def _scan_safetensors(
    work: _Work, reader: _Reader, info: RepoInfo, files: tuple[str, ...], texts: dict[str, bytes], settings: Settings
) -> None:
    """Every safetensors header by range, the shard indexes, and the parameter count against the Hub's."""
    shard_scans: dict[str, safetensors_headers.HeaderScan] = {}
    sizes = {f.path: f.size for f in info.files}
    for path in [p for p in files if paths.is_safe(p)][:MAX_SAFETENSORS_FILES]:
        if reader.blocked is not None:
            break
        try:
            scan = safetensors_headers.scan_safetensors_file(
                path, sizes.get(path), reader.ranger(path), max_header_bytes=settings.screening.max_header_bytes
            )
        except _Blocked:
            break
        except (EntryNotFoundError, HubResponseError) as exc:
            work.add([_unreadable(path, str(exc)[:160])])
            continue
        shard_scans[path] = scan
        work.add(scan.findings)
    repo_paths = {f.path for f in info.files}
    for path, data in texts.items():
        if path.lower().endswith(safetensors_headers.INDEX_SUFFIX):
            work.add(safetensors_headers.check_index(path, data, shard_scans, repo_paths))
    if shard_scans and all(s.ok for s in shard_scans.values()) and reader.blocked is None:
        total = sum(s.total_parameters for s in shard_scans.values())
        config = _parse_json(texts.get("config.json")) or info.config
        tolerance = settings.screening.parameter_tolerance
        work.add(safetensors_headers.parameter_findings(total, info.safetensors_total, config, tolerance))


def _scan_pickles(work: _Work, reader: _Reader, info: RepoInfo, files: tuple[str, ...], budget: int) -> None:
    """The imports each pickle-based file's opcodes would perform (never unpickled); numpy arrays of Python
    objects are pickles too."""
    sizes = {f.path: f.size for f in info.files}
    for path in [p for p in files if paths.is_safe(p)][:MAX_PICKLE_FILES]:
        if reader.blocked is not None:
            break
        scan_file = numpy_arrays.scan_numpy_file if numpy_arrays.is_numpy_path(path) else pickles.scan_pickle_file
        try:
            work.add(scan_file(path, sizes.get(path), reader.ranger(path), budget=budget))
        except _Blocked:
            break
        except (EntryNotFoundError, HubResponseError) as exc:
            work.add([_unreadable(path, str(exc)[:160])])


def _allow_listed(repo_id: str, settings: Settings, findings: list[Finding]) -> list[Finding]:
    """The record that a maintainer accepted this repository's code (`screening.allow_remote_code`)."""
    if repo_id not in settings.screening.allow_remote_code or not any(
        f.code.startswith("remote-code.") for f in findings
    ):
        return []
    message = f"{repo_id} is listed in screening.allow_remote_code: its repository code was explicitly accepted"
    return [Finding(scanner="remote_code", code=codes.REMOTE_CODE_ALLOWED, severity=Severity.INFO, message=message)]


def screen_repo(
    source: HubSource,
    repo_id: str,
    revision: str | None,
    settings: Settings,
    *,
    policy: Policy | None = None,
    use_trivy: bool = True,
    pickle_budget: int = DEFAULT_PICKLE_BUDGET,
) -> ScreeningReport:
    """Screen `repo_id` at `revision` (a commit sha; a branch is resolved once) and return the report.

    Raises ScreeningError when the repository does not resolve and no commit sha was given (there is no
    revision to attach a report to). Hub outages (HubUnavailableError, HubRateLimitedError) propagate so the
    caller can retry.
    """
    chosen = policy or default_policy(settings)
    digest = settings.policy_digest("screen")
    has_token = bool(getattr(source, "has_token", False))
    try:
        info = source.model_info(repo_id, revision)
    except (RepoNotFoundError, RevisionNotFoundError, GatedRepoError, HubAuthError) as exc:
        return _unresolved(repo_id, revision, exc, has_token, chosen, digest)
    ref = _ref(repo_id, info.sha or revision)
    reader, work = _Reader(source, ref), _Work()
    format_scan = _metadata_findings(work, repo_id, info, reader, has_token)
    texts = _read_texts(work, reader, info, settings.screening.max_text_file_bytes, settings.hub.parallel_reads)
    readme_bytes = texts.get("README.md")
    readme = readme_bytes.decode("utf-8", "replace") if readme_bytes is not None else None
    card: dict[str, Any] = dict(info.card_data) or (_front_matter(readme) if readme else {})
    license_files = {p: b for p, b in texts.items() if _is_license_file(p)}
    hashes = {f.path: f.sha256 for f in info.files if f.sha256}
    license_scan = licenses.scan_licenses(card, readme, license_files, settings.licenses, file_hashes=hashes)
    work.add(license_scan.findings)
    configs = {p: b for p, b in texts.items() if remote_code.is_auto_map_file(p)}
    safe_paths = [f.path for f in info.files if paths.is_safe(f.path)]
    work.add(remote_code.scan_remote_code(safe_paths, configs, card, readme, hub_config=info.config))
    _scan_safetensors(work, reader, info, format_scan.safetensors_files, texts, settings)
    pickled = (*format_scan.pickle_files, *numpy_arrays.numpy_files([f.path for f in info.files]))
    _scan_pickles(work, reader, info, pickled, pickle_budget)
    work.add(secrets.scan_secrets(texts, use_trivy=use_trivy))
    if reader.blocked is not None:
        blocked = access.needs_token(
            repo_id, gated=info.gated, private=info.private, has_token=has_token, refused=has_token
        )
        work.add([blocked])
    work.add(_allow_listed(repo_id, settings, work.findings))
    return _report(
        ref,
        work.findings,
        chosen,
        digest,
        formats=format_scan.formats,
        license_ref=license_scan.reference,
        bytes_read=reader.bytes_read,
    )


def _ref(repo_id: str, revision: str | None) -> ModelRef:
    try:
        return ModelRef(repo_id=repo_id, revision=revision or "")
    except ValueError as exc:
        raise ScreeningError(
            f"{paths.display_path(repo_id)}@{revision}: not a screenable reference ({exc}); pass an "
            "'org/name' id "
            "and a 40-hex commit sha",
            repo_id=repo_id,
        ) from exc


def _report(
    ref: ModelRef,
    findings: list[Finding],
    policy: Policy,
    digest: str,
    *,
    formats: tuple[str, ...],
    license_ref: LicenseReference | None,
    bytes_read: int,
) -> ScreeningReport:
    unique = tuple(dict.fromkeys(findings))
    outcome = policy.evaluate(Subject(ref.repo_id, unique))
    review = outcome.review if outcome.verdict is Verdict.NEEDS_REVIEW else ()
    return ScreeningReport(
        ref=ref,
        verdict=outcome.verdict,
        findings=unique,
        license=license_ref or LicenseReference(),
        review=review,
        weight_formats=formats,
        policy_digest=digest,
        bytes_read=bytes_read,
    )
