"""Settings and policy: `curation.toml`, overridden by environment variables, overridden by CLI flags.

Precedence (highest first): explicit keyword overrides (the CLI's flags) > `CURATE_<SECTION>__<KEY>` environment
variables > `HF_ENDPOINT` / `HF_TOKEN` > the TOML file (`CURATE_CONFIG` or ./curation.toml, else the packaged
default) > defaults below. The policy digest covers everything that changes a decision, never secrets.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from registry.derive_settings import DeriveSettings
from registry.errors import RegistryError
from registry.identifiers import check_http_url
from registry.review_settings import ReviewSettings

DEFAULT_CONFIG_NAME = "curation.toml"
_PACKAGED_DEFAULT = Path(__file__).resolve().parent.parent / DEFAULT_CONFIG_NAME


class SettingsError(RegistryError):
    """The configuration cannot be used as written; the message says which key and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HubSettings(_Section):
    endpoint: str = "https://huggingface.co"
    token: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_retries: int = Field(default=4, ge=0, le=20)
    deadline_s: float = Field(
        default=120.0, gt=0, le=86400, description="total time one Hub call may take, retries included"
    )
    backoff_s: float = Field(default=0.5, ge=0, le=3600)
    max_backoff_s: float = Field(default=30.0, ge=0, le=3600)
    concurrency: int = Field(default=4, ge=1, description="tasks that call the Hub at once (Prefect's `tag:hub` limit)")
    parallel_reads: int = Field(
        default=4, ge=1, le=32, description="small files one screening reads from the Hub at once"
    )

    @field_validator("endpoint")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")

    @field_validator("token")
    @classmethod
    def _token_is_a_token(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else ""
        if secret and not (secret.isascii() and secret.isprintable() and " " not in secret):
            # The message never shows the token.
            raise ValueError("HF_TOKEN (hub.token) has characters no token has; check the variable")
        return value


class DiscoverySettings(_Section):
    limit: int = Field(default=20, ge=1, le=1000)
    pipeline_tags: tuple[str, ...] = (
        "text-generation",
        "feature-extraction",
        "sentence-similarity",
        "automatic-speech-recognition",
        "image-text-to-text",
    )
    libraries: tuple[str, ...] = ("transformers", "sentence-transformers")
    max_parameters: int = Field(default=0, ge=0)
    include_gated: bool = True
    excluded_orgs: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()
    skip_already_curated: bool = True


class LicensePolicy(_Section):
    allow: tuple[str, ...] = ("Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause")
    review: tuple[str, ...] = ("LicenseRef-other",)
    deny: tuple[str, ...] = ()


class ScreeningSettings(_Section):
    allow_remote_code: tuple[str, ...] = ()
    max_header_bytes: int = 100_000_000
    max_text_file_bytes: int = 1_000_000
    parameter_tolerance: float = 0.02


class RegionSettings(_Section):
    account: str
    account_url: str | None = None
    connection_string: SecretStr | None = None
    account_key: SecretStr | None = None


class StorageSettings(_Section):
    container: str = "weights"
    catalog_container: str = "catalog"
    primary_region: str = "eastus"
    block_size: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    max_concurrency: int = Field(default=4, ge=1)
    regions: dict[str, RegionSettings] = Field(default_factory=dict)
    retries: int = Field(default=3, ge=0, le=10, description="storage SDK retries per request (transient errors)")
    # The weekly audit of published entries' regional copies (flows/audit.py).
    audit_bytes_per_run: int = Field(default=64 * 1024**3, ge=0, description="bytes one weekly audit may re-hash")
    audit_cycle_weeks: int = Field(default=4, ge=1, le=52, description="ISO weeks in which each entry is audited once")


class SigningSettings(_Section):
    key_path: str = ""
    key_pem: SecretStr | None = None
    secret_block: str = ""


class AllowedCve(_Section):
    id: str
    reason: str
    expires: str | None = None


REGISTRY_USERNAME_VARIABLE = "CURATE_IMAGES__REGISTRY_USERNAME"
REGISTRY_PASSWORD_VARIABLE = "CURATE_IMAGES__REGISTRY_PASSWORD"  # noqa: S105 (a variable's name, not a secret)


class AllowedSecret(_Section):
    """A secret finding accepted with a recorded reason: Trivy's rule id in files matching a glob (the scan target)."""

    rule: str
    path: str
    reason: str
    expires: str | None = None


class ImageSettings(_Section):
    registry: str = "127.0.0.1:5000"
    registry_username: str = Field(default="", description=f"for `registry` only; env {REGISTRY_USERNAME_VARIABLE}")
    registry_password: SecretStr | None = Field(
        default=None, description=f"for `registry` only; env {REGISTRY_PASSWORD_VARIABLE}; never logged"
    )
    fail_on_fixable: tuple[str, ...] = ("CRITICAL",)
    allowed_cves: tuple[AllowedCve, ...] = ()
    allowed_secrets: tuple[AllowedSecret, ...] = ()
    denied_licenses: tuple[str, ...] = ()
    trivy_cache_dir: str = ""
    trivy_skip_db_update: bool = False
    trivy_db_repository: str = ""
    runtimes: tuple[str, ...] = ("hf-serve",)
    weekly_runtimes: tuple[str, ...] = Field(default=(), description="large images the weekly build adds (opt in)")
    pins_file: str = Field(default="", description="upstream digests (images pin); empty: registry/runtimes/pins.json")
    upstream_mirror: str = Field(default="", description="registry serving the upstream images under their paths")

    @classmethod
    def decision_fields(cls) -> set[str]:
        """The fields that change an image decision: all but the registry credentials."""
        return set(cls.model_fields) - {"registry_username", "registry_password"}


class CatalogSettings(_Section):
    url: str = ""


class TufSettings(_Section):
    """The export's TUF repository (registry/catalog_tuf.py): role keys, metadata lifetimes, a consumer's root."""

    root_key_path: str = Field(
        default="", description="EC P-256 PEM of the root role, kept offline; empty = <data_dir>/keys/tuf (local only)"
    )
    targets_key_path: str = Field(default="", description="EC P-256 PEM of the top-level targets role, kept offline")
    snapshot_key_path: str = Field(default="", description="online key; empty = <data_dir>/keys/tuf/snapshot.pem")
    timestamp_key_path: str = Field(default="", description="online key; empty = <data_dir>/keys/tuf/timestamp.pem")
    root_expiry_days: int = Field(default=365, ge=1)
    targets_expiry_days: int = Field(default=365, ge=1)
    catalog_expiry_days: int = Field(default=60, ge=1)
    snapshot_expiry_days: int = Field(default=30, ge=1)
    timestamp_expiry_days: int = Field(
        default=10, ge=1, description="must outlive the weekly cadence; the `refresh-catalog` deployment re-signs daily"
    )
    trusted_root: str = Field(default="", description="consumers: the root.json pinned out of band (curate verify)")


class PublishSettings(_Section):
    export_dir: str = Field(default="", description="where entries are exported; empty = <data_dir>/catalog-export")
    tuf: TufSettings = Field(default_factory=TufSettings)


class RuntimePolicy(_Section):
    enabled: bool = True
    memory_utilization: float = Field(default=0.90, gt=0, le=1)
    vendors: tuple[str, ...] = Field(
        default=(), description="accelerator vendors the policy gives this runtime; empty = every vendor it supports"
    )
    tasks: tuple[str, ...] = Field(
        default=(), description="tasks the policy gives this runtime; empty = every task the runtime serves"
    )


class AcceleratorSite(_Section):
    """One region a family's quota is granted in: how many devices, and which pool (or queue of it) runs them."""

    devices: int = Field(ge=0, description="devices of this family granted in this region (a global concurrency limit)")
    pool: str = Field(default="", description="the work pool of this region's workers; empty = the family's pool")
    queue: str = Field(default="", description="a work queue of that pool; empty = the pool's default queue")


class AcceleratorFamily(_Section):
    vendor: str
    memory_gib: float = Field(gt=0)
    counts: tuple[int, ...] = (1,)
    pool: str
    region: str = ""
    quota: dict[str, AcceleratorSite] = Field(
        default_factory=dict,
        description="region -> devices granted there (and its pool or queue); empty = `region` via `pool`, no limit",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Kubernetes node labels of this family (kubernetes pools only)"
    )

    @classmethod
    def planning_fields(cls) -> set[str]:
        """The fields the planner and a cell's verdict depend on: not where the family is served from."""
        return {"vendor", "memory_gib", "counts"}


class SloSettings(_Section):
    """Per-request SLOs: a request counts toward goodput when it meets all three (validators/throughput.py)."""

    ttft_s: float = Field(default=2.0, gt=0)
    tpot_s: float = Field(default=0.2, gt=0)
    e2e_s: float = Field(default=30.0, gt=0)


LATENCY_BOUNDS = ("ttft", "itl", "e2e")
PERCENTILES = ("p50", "p90", "p99")


class SloGate(SloSettings):
    """What a cell's benchmark must meet to publish a template of one task on one accelerator family.

    Its per-request SLOs (unset: `[slo]`'s) decide which requests count toward goodput (the benchmark runs
    with them); `min_goodput_share` is the fraction of all requests sent (failed ones included) that must meet
    them; the `<ttft|itl|e2e>_<p50|p90|p99>_s` bounds cap those percentiles. An unset bound is not checked.
    """

    min_goodput_share: float = Field(default=0.0, ge=0, le=1)
    ttft_p50_s: float | None = Field(default=None, gt=0)
    ttft_p90_s: float | None = Field(default=None, gt=0)
    ttft_p99_s: float | None = Field(default=None, gt=0)
    itl_p50_s: float | None = Field(default=None, gt=0)
    itl_p90_s: float | None = Field(default=None, gt=0)
    itl_p99_s: float | None = Field(default=None, gt=0)
    e2e_p50_s: float | None = Field(default=None, gt=0)
    e2e_p90_s: float | None = Field(default=None, gt=0)
    e2e_p99_s: float | None = Field(default=None, gt=0)

    def latency_bounds(self) -> tuple[tuple[str, str, float], ...]:
        """(metric, percentile, bound in seconds) of every set bound, e.g. ("ttft", "p90", 2.0)."""
        found = ((m, p, getattr(self, f"{m}_{p}_s")) for m in LATENCY_BOUNDS for p in PERCENTILES)
        return tuple((m, p, float(bound)) for m, p, bound in found if bound is not None)


DEFAULT_SLO_FAMILY = "default"


def _with_defaults(gate: Any, defaults: dict[str, Any]) -> Any:
    """A gate's raw table (or model) with the keys it does not set taken from `defaults`."""
    if isinstance(gate, SloGate):
        gate = gate.model_dump(exclude_unset=True)
    return {**defaults, **gate} if isinstance(gate, dict) else gate


class SloPolicy(SloSettings):
    """`[slo]`: the per-request SLOs of `curate bench`, and the SLO gates of validation cells: one table per task
    (as the conformance suite names it: `chat`, ...) and accelerator family, `[slo.<task>.<family>]`, with
    `[slo.<task>.default]` for every family without its own. Any other key of `[slo]` must be such a table."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, dict[str, SloGate]] = Field(init=False)

    @model_validator(mode="before")
    @classmethod
    def _gates_inherit_request_slos(cls, data: Any) -> Any:
        """A gate table that does not set ttft_s / tpot_s / e2e_s takes `[slo]`'s (filled in here, once, so
        that a gate always says which requests it counts as good)."""
        if not isinstance(data, dict):
            return data
        own = {name: data.get(name, field.default) for name, field in SloSettings.model_fields.items()}
        filled = dict(data)
        for task, tables in data.items():
            if task not in own and isinstance(tables, dict):
                filled[task] = {family: _with_defaults(gate, own) for family, gate in tables.items()}
        return filled

    def gates(self, task: str) -> dict[str, SloGate]:
        """family (or `default`) -> gate, for one task (empty when `[slo.<task>]` has no table)."""
        return self.__pydantic_extra__.get(task, {})

    def gate_table(self, task: str, family: str) -> str | None:
        """The table that gates `task` cells on `family` (e.g. `slo.chat.default`), or None."""
        key = self._gate_key(task, family)
        return f"slo.{task}.{key}" if key is not None else None

    def gate(self, task: str, family: str) -> SloGate | None:
        """The gate of `task` cells on `family`: the family's own table, else `default`, else None (the cell
        verdict then fails a benchmarked cell rather than publish latency nobody bounded)."""
        key = self._gate_key(task, family)
        return self.gates(task)[key] if key is not None else None

    def _gate_key(self, task: str, family: str) -> str | None:
        gates = self.gates(task)
        return family if family in gates else DEFAULT_SLO_FAMILY if DEFAULT_SLO_FAMILY in gates else None


class AcceptedDeviation(_Section):
    """A conformance check a runtime is known to fail, accepted only for the runtime versions it was seen on."""

    versions: str = Field(
        description="PEP 440 specifier of the runtime versions this applies to, e.g. '==5.23.0' or '>=5.20,<5.24'"
    )
    reason: str = Field(min_length=10, description="why it is accepted; consumers read it on the catalog entry")

    @field_validator("versions")
    @classmethod
    def _specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier as exc:
            raise ValueError(f"{value!r} is not a version specifier (e.g. '==5.23.0'): {exc}") from exc
        if not value.strip():
            raise ValueError("name the runtime versions the deviation was seen on, e.g. '==5.23.0'")
        return value

    def applies_to(self, version: str) -> bool:
        """Whether this deviation covers that runtime version (local build labels such as +cpu included)."""
        try:
            return SpecifierSet(self.versions).contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False


class ValidationSettings(_Section):
    """Stage 5 (flows/validate.py): how cells are dispatched and bounded, and what a passing cell needs."""

    dispatch: str = Field(default="deployment", pattern="^(deployment|inline)$")
    inline_pools: tuple[str, ...] = Field(
        default=("cpu",), description="pools whose cells run in-process when dispatch is 'inline'"
    )
    deployment_flow: str = "validate-cell"
    capacity_deadline_s: float = Field(
        default=0.0,
        ge=0,
        description="the once-per-run worker census waits this long for a pool that shows no online worker",
    )
    cell_timeout_s: float = Field(default=3600.0, gt=0)
    health_timeout_s: float = Field(default=600.0, gt=0)
    sas_valid_s: int = Field(default=6 * 3600, ge=300)
    bench_concurrencies: tuple[int, ...] = (1, 2)
    bench_max_requests: int = Field(default=8, ge=1)
    bench_max_duration_s: float = Field(default=60.0, gt=0)
    bench_input_tokens: int = Field(default=64, ge=1)
    bench_output_tokens: int = Field(default=16, ge=1)
    bench_audio_seconds: float = Field(default=5.0, gt=0, le=30, description="speech recognition: clip length")
    max_benchmark_error_rate: float = Field(default=0.0, ge=0, le=1)
    required: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="task -> conformance checks a cell must pass ('*' = every check)"
    )
    deviations: dict[str, dict[str, AcceptedDeviation]] = Field(
        default_factory=dict,
        description="runtime -> {check: {versions, reason}}: failures accepted for those versions of that runtime",
    )


class OrchestrationSettings(_Section):
    """The weekly run's fan-out (flows/curate.py, docs/scale.md): one `curate-model` flow run per model."""

    dispatch: str = Field(
        default="auto",
        pattern="^(auto|deployment|inline)$",
        description="deployment: every model is a flow run of `curate-model/<pool>`; inline: in-process subflows; "
        "auto: deployment when the pool has an online worker, else inline",
    )
    pool: str = Field(default="curation", description="the work pool whose workers run the per-model flow runs")
    max_parallel_models: int = Field(default=4, ge=1, le=256)
    model_timeout_s: float = Field(default=12 * 3600.0, gt=0, description="how long one model's flow run may take")
    crash_retries: int = Field(default=1, ge=0, le=3, description="re-dispatches of a model whose flow run crashed")
    heartbeat_timeout_s: float = Field(
        default=90.0,
        ge=45,
        description="a dispatched model run silent this long (its heartbeat is every 30 s) is marked crashed",
    )
    hub_downloads: int = Field(default=4, ge=1, description="weight downloads from the Hub at once (all workers)")
    blob_uploads: int = Field(default=4, ge=1, description="weight uploads to blob storage at once (all workers)")


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file chosen by `Settings.config_path`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                self._data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{path}: not valid TOML ({exc}); fix the file or unset CURATE_CONFIG") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _HfEnvSource(PydanticBaseSettingsSource):
    """The huggingface_hub conventions: HF_ENDPOINT and HF_TOKEN."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        hub: dict[str, Any] = {}
        if os.environ.get("HF_ENDPOINT"):
            hub["endpoint"] = os.environ["HF_ENDPOINT"]
        if os.environ.get("HF_TOKEN"):
            hub["token"] = os.environ["HF_TOKEN"]
        return {"hub": hub} if hub else {}


class Settings(BaseSettings):
    """Every setting of the pipeline. Load with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="CURATE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path(".curation")
    hub: HubSettings = Field(default_factory=HubSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    licenses: LicensePolicy = Field(default_factory=LicensePolicy)
    screening: ScreeningSettings = Field(default_factory=ScreeningSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    runtimes: dict[str, RuntimePolicy] = Field(default_factory=dict)
    accelerators: dict[str, AcceleratorFamily] = Field(default_factory=dict)
    slo: SloPolicy = Field(default_factory=SloPolicy)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    derive: DeriveSettings = Field(default_factory=DeriveSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    _config_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _HfEnvSource(settings_cls),
            _TomlSource(settings_cls, _selected_config_path()),
        )

    @property
    def catalog_url(self) -> str:
        if self.catalog.url:
            return self.catalog.url
        return f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def catalog_export_dir(self) -> Path:
        return Path(self.publish.export_dir) if self.publish.export_dir else self.data_dir / "catalog-export"

    def policy(self, stage: str | None = None) -> dict[str, Any]:
        """The decision-relevant part of the settings (no secrets, no endpoints, no paths, no quotas).

        `stage` (one of POLICY_STAGES) gives that stage's part only: the key its results are cached under, so a
        change elsewhere (an image or registry setting, a Trivy cache path) does not redo it. None gives the
        curation policy: every stage's part but discovery and images (a changed image re-validates the
        entries that use it instead: validators/revalidation.py).
        """
        if stage is None:
            merged: dict[str, Any] = {}
            for part in ("screen", "stage", "derive", "validate"):
                merged[part] = self.policy(part)
            return merged
        if stage not in POLICY_STAGES:
            raise SettingsError(f"no policy stage {stage!r}; one of {', '.join(POLICY_STAGES)}")
        if stage == "stage":
            return {
                "screening": self.screening.model_dump(
                    mode="json", include={"max_header_bytes", "parameter_tolerance"}
                ),
                "primary_region": self.storage.primary_region,
                "regions": sorted(self.storage.regions),
            }
        return self.model_dump(mode="json", include=_STAGE_POLICY[stage])

    def policy_digest(self, stage: str | None = None) -> str:
        """sha256 of the canonical JSON of `policy(stage)`: the key under which that stage's results are cached."""
        canonical = json.dumps(self.policy(stage), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def hub_token(self) -> str | None:
        return self.hub.token.get_secret_value() if self.hub.token else None


POLICY_STAGES = ("discover", "screen", "images", "stage", "derive", "validate")
_IMAGE_OPERATIONAL = {"trivy_cache_dir", "trivy_skip_db_update", "trivy_db_repository", "pins_file", "upstream_mirror"}
_STAGE_POLICY: dict[str, Any] = {
    "discover": {"discovery": True},
    "screen": {"licenses": True, "screening": True},
    "images": {"images": ImageSettings.decision_fields() - _IMAGE_OPERATIONAL},
    "derive": {"derive": {"quantizations"}},
    "validate": {
        "derive": {"min_token_agreement"},
        "runtimes": True,
        "accelerators": {"__all__": AcceleratorFamily.planning_fields()},
        "slo": True,
        "validation": {"required", "deviations", "max_benchmark_error_rate"}
        | {"bench_concurrencies", "bench_max_requests", "bench_max_duration_s"}
        | {"bench_input_tokens", "bench_output_tokens", "bench_audio_seconds"},
    },
}


def _selected_config_path() -> Path | None:
    explicit = os.environ.get("CURATE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"CURATE_CONFIG points at {path}, which is not a file; fix the path or unset it")
        return path
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    if local.is_file():
        return local
    return _PACKAGED_DEFAULT if _PACKAGED_DEFAULT.is_file() else None


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(**overrides: Any) -> Settings:
    """Load settings; keyword overrides (nested dicts allowed, e.g. discovery={"limit": 5}) win over all else.

    Nested overrides are merged into the lower-precedence values rather than replacing whole sections.
    """
    try:
        base = Settings()
        if not overrides:
            return base
        merged = _deep_merge(base.model_dump(mode="python"), overrides)
        return Settings.model_validate(_reveal(merged))
    except ValidationError as exc:
        raise SettingsError(
            f"invalid settings ({exc.error_count()} problem(s)): "
            + "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            + ". Check curation.toml, CURATE_* variables and the CLI flags."
        ) from exc


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    return value
