"""The shared records of the pipeline (pydantic v2, frozen, JSON round-trippable).

Every stage reads and writes these; they are the stable shape of `curate ... --json` output and of the catalog
store. Add fields with defaults only, never rename: stored rows and exported entries must keep loading.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from registry.identifiers import check_repo_id, check_sha

SCHEMA_VERSION = 9
"""Version of these records; bumped with a step in registry/catalog_migrations.py whenever a record changes."""


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    """Base of every record: immutable, strict about unknown fields, JSON first."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


# --------------------------------------------------------------------------------------------- identities


class ModelRef(Record):
    """A Hub model repository pinned to one commit: everything downstream works on this revision only."""

    repo_id: str
    revision: str

    @field_validator("repo_id")
    @classmethod
    def _check_repo_id(cls, value: str) -> str:
        return check_repo_id(value)

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, value: str) -> str:
        return check_sha(value)

    @property
    def org(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision[:12]}"


# --------------------------------------------------------------------------------------------- stage 1


class Decision(StrEnum):
    SELECTED = "selected"
    SKIPPED = "skipped"


class CandidateSource(StrEnum):
    TRENDING = "trending"
    REQUESTED = "requested"
    MANUAL = "manual"


class Candidate(Record):
    """A repository seen at discovery, pinned to the sha seen then, with the policy's decision about it."""

    ref: ModelRef
    rank: int | None = Field(default=None, description="1-based position in the trending list; None if requested")
    source: CandidateSource = CandidateSource.TRENDING
    trending_score: float = 0.0
    likes: int = 0
    downloads: int = 0
    pipeline_tag: str | None = None
    library_name: str | None = None
    license: str | None = Field(default=None, description="the card's `license` as the Hub reports it")
    gated: bool = False
    private: bool = False
    tags: tuple[str, ...] = ()
    parameters: int | None = Field(default=None, description="total from the Hub's safetensors metadata")
    last_modified: datetime | None = None
    decision: Decision = Decision.SELECTED
    reason: str = ""
    discovered_at: datetime = Field(default_factory=utcnow)

    @property
    def repo_id(self) -> str:
        return self.ref.repo_id

    @property
    def revision(self) -> str:
        return self.ref.revision


# --------------------------------------------------------------------------------------------- stage 2


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Finding(Record):
    """One observation of one scanner: a machine-readable code and a sentence a human can act on."""

    scanner: str
    code: str
    severity: Severity
    message: str
    path: str | None = None


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    NEEDS_REVIEW = "needs-review"
    REJECTED = "rejected"


class LicenseReference(Record):
    """Where the upstream licence text lives, preserved for the catalog entry."""

    spdx: str | None = Field(default=None, description="normalised SPDX expression, or None when unknown")
    declared: str | None = Field(default=None, description="what the card said, verbatim")
    name: str | None = None
    url: str | None = None
    file: str | None = Field(default=None, description="path of the LICENSE file in the repo, if any")
    file_sha256: str | None = None


class ReviewVerdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ReviewScope(Record):
    """Exactly what a maintainer's review decision covers (decisions/review.py: when it carries over)."""

    ref: ModelRef
    license_expression: str | None = Field(default=None, description="the SPDX expression (else what was declared)")
    license_file_sha256: str | None = None
    finding_codes: tuple[str, ...] = Field(default=(), description="every finding code of the screening, sorted")


class ReviewDecision(Record):
    """A maintainer's decision on a model that screened needs-review: who, when, why, and what it covers."""

    decision_id: str
    scope: ReviewScope
    verdict: ReviewVerdict
    reviewer: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)
    decided_at: datetime = Field(default_factory=utcnow)
    flow_run_id: str | None = Field(default=None, description="the curate-model run that asked for it")


class ScreeningReport(Record):
    ref: ModelRef
    verdict: Verdict
    findings: tuple[Finding, ...] = ()
    license: LicenseReference = Field(default_factory=LicenseReference)
    review: tuple[str, ...] = Field(default=(), description="what a maintainer must review (needs-review)")
    weight_formats: tuple[str, ...] = ()
    policy_digest: str = ""
    bytes_read: int = 0
    screened_at: datetime = Field(default_factory=utcnow)
    reviews: tuple[ReviewDecision, ...] = Field(default=(), description="the maintainer decision the verdict applies")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)


# --------------------------------------------------------------------------------------------- stage 3


class ScanSummary(Record):
    """What Trivy found in one image, and whether the policy gate held."""

    scanner: str = "trivy"
    scanner_version: str = ""
    db_updated_at: datetime | None = None
    vulnerabilities: dict[str, int] = Field(default_factory=dict, description="severity -> count")
    blocking: tuple[str, ...] = Field(default=(), description="ids of findings that fail the gate")
    allowed: tuple[str, ...] = Field(default=(), description="CVE ids accepted by the allow-list")
    secrets: int = 0
    denied_licenses: tuple[str, ...] = ()
    passed: bool = False
    scanned_at: datetime = Field(default_factory=utcnow)
    policy_digest: str = Field(default="", description="the image policy (`images` stage digest) the gate applied")


class Signature(Record):
    """A detached signature over a digest, and where it is stored."""

    algorithm: str = "ecdsa-p256-sha256"
    key_id: str = Field(description="sha256 of the public key (DER SubjectPublicKeyInfo)")
    signed_digest: str
    reference: str = Field(description="where the signature lives (OCI reference or blob path)")
    signature_digest: str = ""


class SbomRef(Record):
    format: Literal["spdx-json", "cyclonedx"] = "spdx-json"
    digest: str
    reference: str = ""
    packages: int = 0


class RuntimeImage(Record):
    runtime: str
    version: str
    reference: str = Field(description="<registry>/<runtime>:<version>-<recipe digest>")
    digest: str = Field(description="sha256:... manifest digest in the registry")
    recipe_digest: str = ""
    upstream: str = Field(
        default="",
        description="a wrapped upstream image's `repository@sha256:...` it was built FROM; empty: built here",
    )
    vendors: tuple[str, ...] = Field(default=(), description="accelerator vendors it serves; empty: its runtime's")
    sbom: SbomRef | None = None
    scan: ScanSummary | None = None
    signature: Signature | None = None
    built_at: datetime = Field(default_factory=utcnow)

    @property
    def pinned(self) -> str:
        repo = self.reference.rsplit(":", 1)[0] if ":" in self.reference.rsplit("/", 1)[-1] else self.reference
        return f"{repo}@{self.digest}"


# --------------------------------------------------------------------------------------------- stage 4


class StagedFile(Record):
    name: str
    size: int
    sha256: Sha256


class RegionCopy(Record):
    region: str
    container_url: str = Field(description="URL of the blob prefix <container>/<org>/<name>/<revision>/")
    manifest_url: str = ""
    verified_at: datetime | None = None


class StagedWeights(Record):
    ref: ModelRef
    files: tuple[StagedFile, ...]
    regions: dict[str, RegionCopy] = Field(default_factory=dict)
    signature: Signature | None = None
    total_bytes: int = 0
    staged_at: datetime = Field(default_factory=utcnow)

    @field_validator("files")
    @classmethod
    def _unique_names(cls, files: tuple[StagedFile, ...]) -> tuple[StagedFile, ...]:
        names = [f.name for f in files]
        if len(names) != len(set(names)):
            raise ValueError("staged file names must be unique")
        return files


# --------------------------------------------------------------------------------------------- stage 5


class MemoryEstimate(Record):
    """The planner's memory model for one template, per accelerator, in bytes."""

    weights_bytes: int
    kv_cache_bytes: int
    encoder_bytes: int = Field(
        default=0, description="audio / vision encoder activations and cross-attention KV per request (0: text only)"
    )
    reserve_bytes: int
    total_bytes: int
    capacity_bytes: int = Field(description="usable memory per accelerator (memory x utilisation fraction)")
    formula: str = ""


class DeploymentTemplate(Record):
    id: str = Field(description="<org>--<model>--<ctx>k-<vendor>-[<n>x]<family>, lowercase")
    model: ModelRef | None = None
    runtime: str
    accelerator_family: str
    vendor: str = ""
    count: int = 1
    context_length: int
    quantization: str | None = None
    runtime_args: tuple[str, ...] = ()
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    health_probe: str = "/health"
    port: int = 8000
    max_concurrency: int = 1
    task: str = "chat"
    memory: MemoryEstimate | None = None


class CheckStatus(StrEnum):
    PASS = "pass"  # noqa: S105 (a check status, not a password)
    FAIL = "fail"
    SKIP = "skip"


class ConformanceCheck(Record):
    name: str
    status: CheckStatus
    version: int = Field(default=1, description="the check's own version; bumped when what it asserts changes")
    detail: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict, description="request and offending response excerpt")


class ConformanceReport(Record):
    suite: str = "openai-conformance"
    version: str = ""
    base_url: str = ""
    model: str = ""
    task: str = "chat"
    checks: tuple[ConformanceCheck, ...] = ()
    started_at: datetime = Field(default_factory=utcnow)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.status is CheckStatus.FAIL)


class LatencyStats(Record):
    mean: float
    p50: float
    p90: float
    p99: float


class BenchmarkMetrics(Record):
    profile: str
    concurrency: float | None = None
    rate: float | None = None
    requests: int = 0
    errors: int = Field(default=0, description="failed requests, the cancelled and timed-out ones included")
    cancelled: int = Field(default=0, description="requests cancelled at the run's deadline (counted in errors)")
    timeouts: int = Field(default=0, description="requests that timed out (counted in errors)")
    duration_s: float = 0.0
    request_throughput: float = 0.0
    output_token_throughput: float = 0.0
    total_token_throughput: float = 0.0
    ttft_s: LatencyStats | None = None
    tpot_s: LatencyStats | None = None
    itl_s: LatencyStats | None = None
    e2e_s: LatencyStats | None = None
    goodput: float | None = Field(default=None, description="requests/s meeting every SLO")
    read_lag_s: LatencyStats | None = Field(
        default=None, description="how long after the bytes arrived the load generator read them (its own delay)"
    )
    audio_seconds_per_s: float | None = Field(
        default=None, description="speech recognition: seconds of audio transcribed per second of wall time"
    )


class ValidationVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_VALIDATED = "not-validated"


class CellStatus(StrEnum):
    """Which of these holds for a cell (`ValidationResult.status`): validated; failed (the reason says why); or
    it did not run because its image is not available (and why), because no worker is online for its pool
    (`no-capacity`, only that), or for another reason (`not-run`: a quota smaller than the template, a dispatch
    that did not finish)."""

    VALIDATED = "validated"
    FAILED = "failed"
    IMAGE_NOT_AVAILABLE = "image-not-available"
    NO_CAPACITY = "no-capacity"
    NOT_RUN = "not-run"


NOT_RUN_CAUSES = (CellStatus.IMAGE_NOT_AVAILABLE, CellStatus.NO_CAPACITY, CellStatus.NOT_RUN)


class CellInputs(Record):
    """Everything a cell's verdict depends on (validators/revalidation.py owns the list): when none of these
    changed since a cell ran, its recorded result stands and the cell is not run again."""

    revision: str = ""
    weights_signature_digest: str = ""
    image_digest: str = ""
    runtime_version: str = ""
    policy_digest: str = Field(default="", description="sha256 of the cell's own policy (checks, bounds, SLOs)")
    suite_version: str = ""
    check_versions: dict[str, int] = Field(default_factory=dict, description="conformance check -> its version")
    accepted_deviations: dict[str, str] = Field(
        default_factory=dict, description="check -> the deviation of this runtime version accepted for it"
    )


class ValidationResult(Record):
    template: DeploymentTemplate
    image_digest: str = ""
    weights_signature_digest: str = ""
    conformance: ConformanceReport | None = None
    benchmark: tuple[BenchmarkMetrics, ...] = ()
    verdict: ValidationVerdict
    reason: str = ""
    accepted_deviations: tuple[str, ...] = ()
    stale_deviations: tuple[str, ...] = Field(
        default=(), description="accepted deviations whose check passed: the policy should drop them"
    )
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    inputs: CellInputs | None = Field(default=None, description="what the verdict was reached on")
    token_agreement: float | None = Field(
        default=None, description="a derived quantization's greedy-token agreement with its f16 reference"
    )
    run_id: str | None = Field(default=None, description="the curation run (catalog run id) the cell ran in")
    not_run: CellStatus | None = Field(
        default=None,
        description="why a not-validated cell did not run: image-not-available, no-capacity or not-run (none: "
        "not-run); only with verdict not-validated",
    )

    @model_validator(mode="after")
    def _cause_only_when_not_run(self) -> ValidationResult:
        if self.not_run is not None and (
            self.verdict is not ValidationVerdict.NOT_VALIDATED or self.not_run not in NOT_RUN_CAUSES
        ):
            raise ValueError(f"not_run={self.not_run.value} needs verdict not-validated and a cause of not running")
        return self

    @property
    def status(self) -> CellStatus:
        """validated, failed, or why the cell did not run."""
        if self.verdict is ValidationVerdict.PASSED:
            return CellStatus.VALIDATED
        if self.verdict is ValidationVerdict.FAILED:
            return CellStatus.FAILED
        return self.not_run or CellStatus.NOT_RUN


class PublishedTemplate(Record):
    template: DeploymentTemplate
    image: str = Field(description="pinned image reference repo@sha256:...")
    metrics: tuple[BenchmarkMetrics, ...] = ()
    accepted_deviations: tuple[str, ...] = ()
    weights_signature_digest: str = Field(
        default="", description="digest of the weights signature the validation ran against"
    )


class Provenance(Record):
    flow_run_ids: dict[str, str] = Field(default_factory=dict, description="stage -> Prefect flow run id")
    timestamps: dict[str, datetime] = Field(default_factory=dict)
    tool_versions: dict[str, str] = Field(default_factory=dict)
    policy_digest: str = ""
    approvals: tuple[ReviewDecision, ...] = Field(default=(), description="maintainer approvals it was published on")


class EntryStatus(StrEnum):
    PUBLISHED = "published"
    FLAGGED = "flagged"
    WITHDRAWN = "withdrawn"


class CatalogEntry(Record):
    id: str = Field(description="<org>--<model>, lowercase")
    model: ModelRef
    license: LicenseReference
    task: str
    templates: tuple[PublishedTemplate, ...]
    weights: StagedWeights
    derived: tuple[StagedWeights, ...] = Field(
        default=(), description="GGUF files derived from `weights` for llama.cpp templates (own prefix, signature)"
    )
    images: dict[str, str] = Field(default_factory=dict, description="runtime -> pinned image reference")
    image_tags: dict[str, str] = Field(
        default_factory=dict, description="runtime -> tag reference the image was built and signed under"
    )
    provenance: Provenance = Field(default_factory=Provenance)
    status: EntryStatus = EntryStatus.PUBLISHED
    status_reason: str = ""
    schema_version: int = SCHEMA_VERSION
    published_at: datetime = Field(default_factory=utcnow)
    signature: Signature | None = None


# --------------------------------------------------------------------------------------------- runs


class StageName(StrEnum):
    DISCOVER = "discover"
    SCREEN = "screen"
    BUILD = "build"
    STAGE = "stage"
    DERIVE = "derive"
    VALIDATE = "validate"
    PUBLISH = "publish"


class StageOutcome(StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    NEEDS_REVIEW = "needs-review"
    FAILED = "failed"
    SKIPPED = "skipped"


class StageResult(Record):
    """One stage's result for one (repo, revision): the row a dashboard shows per model and stage."""

    ref: ModelRef
    stage: StageName
    outcome: StageOutcome
    reason: str = ""
    policy_digest: str = ""
    run_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict, description="the stage's record as JSON")
    recorded_at: datetime = Field(default_factory=utcnow)


class RunSummary(Record):
    run_id: str
    kind: str = "weekly"
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    candidates: int = 0
    selected: int = 0
    status: str = "running"
    outcomes: dict[str, int] = Field(default_factory=dict, description="model outcome -> how many models had it")
    reason: str = Field(default="", description="why the run failed (status failed)")


class ModelOutcome(StrEnum):
    """How one model's chain ended in one run."""

    RUNNING = "running"
    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    NOT_PUBLISHED = "not-published"
    FAILED = "failed"
    NEEDS_REVIEW = "needs-review"


class ModelRow(Record):
    """One model's row in one run (`curation-run`): the stage its chain reached, how it ended, and why."""

    run_id: str
    repo_id: str
    revision: str | None = None
    stage: str = "discover"
    outcome: ModelOutcome = ModelOutcome.RUNNING
    reason: str = ""
    stages: dict[str, str] = Field(default_factory=dict, description="stage -> what it said (the run table)")
    flow_run_id: str | None = None
    attempts: int = 1
    unchanged_since: str | None = Field(default=None, description="the run whose results still stand")
    review_expires_at: datetime | None = Field(default=None, description="needs-review: when the request expires")
    updated_at: datetime = Field(default_factory=utcnow)


def model_slug(repo_id: str) -> str:
    """`Qwen/Qwen3-32B` -> `qwen--qwen3-32b`: the catalog's id stem for a repository."""
    org, name = repo_id.split("/", 1)
    return f"{org}--{name}".lower()
