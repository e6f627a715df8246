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
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_NAME = "curation.toml"
_PACKAGED_DEFAULT = Path(__file__).resolve().parent.parent / DEFAULT_CONFIG_NAME


class SettingsError(Exception):
    """The configuration cannot be used as written; the message says which key and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HubSettings(_Section):
    endpoint: str = "https://huggingface.co"
    token: SecretStr | None = None
    timeout_s: float = 30.0
    max_retries: int = Field(default=4, ge=0, le=20)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    concurrency: int = Field(default=4, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")


class DiscoverySettings(_Section):
    limit: int = Field(default=20, ge=1, le=1000)
    pipeline_tags: tuple[str, ...] = ("text-generation", "feature-extraction", "sentence-similarity")
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


class SigningSettings(_Section):
    key_path: str = ""
    key_pem: SecretStr | None = None
    secret_block: str = ""


class AllowedCve(_Section):
    id: str
    reason: str
    expires: str | None = None


class AllowedSecret(_Section):
    """A secret finding accepted with a recorded reason: Trivy's rule id in files matching a glob (the scan target)."""

    rule: str
    path: str
    reason: str
    expires: str | None = None


class ImageSettings(_Section):
    registry: str = "127.0.0.1:5000"
    fail_on_fixable: tuple[str, ...] = ("CRITICAL",)
    allowed_cves: tuple[AllowedCve, ...] = ()
    allowed_secrets: tuple[AllowedSecret, ...] = ()
    denied_licenses: tuple[str, ...] = ()
    trivy_cache_dir: str = ""
    trivy_skip_db_update: bool = False
    trivy_db_repository: str = ""
    runtimes: tuple[str, ...] = ("hf-serve",)
    weekly_runtimes: tuple[str, ...] = Field(
        default=(), description="large images only the weekly build-runtime-images deployment builds (opt in)"
    )


class CatalogSettings(_Section):
    url: str = ""


class PublishSettings(_Section):
    export_dir: str = Field(default="", description="where entries are exported; empty = <data_dir>/catalog-export")


class RuntimePolicy(_Section):
    enabled: bool = True
    memory_utilization: float = Field(default=0.90, gt=0, le=1)
    vendors: tuple[str, ...] = Field(
        default=(), description="accelerator vendors this runtime's images are built for; empty = every vendor"
    )


class AcceleratorFamily(_Section):
    vendor: str
    memory_gib: float = Field(gt=0)
    counts: tuple[int, ...] = (1,)
    pool: str
    region: str = ""


class SloSettings(_Section):
    ttft_s: float = 2.0
    tpot_s: float = 0.2
    e2e_s: float = 30.0


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
    capacity_deadline_s: float = Field(default=600.0, ge=0)
    cell_timeout_s: float = Field(default=3600.0, gt=0)
    health_timeout_s: float = Field(default=600.0, gt=0)
    sas_valid_s: int = Field(default=6 * 3600, ge=300)
    bench_concurrencies: tuple[int, ...] = (1, 2)
    bench_max_requests: int = Field(default=8, ge=1)
    bench_max_duration_s: float = Field(default=60.0, gt=0)
    bench_input_tokens: int = Field(default=64, ge=1)
    bench_output_tokens: int = Field(default=16, ge=1)
    max_benchmark_error_rate: float = Field(default=0.0, ge=0, le=1)
    required: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="task -> conformance checks a cell must pass ('*' = every check)"
    )
    deviations: dict[str, dict[str, AcceptedDeviation]] = Field(
        default_factory=dict,
        description="runtime -> {check: {versions, reason}}: failures accepted for those versions of that runtime",
    )


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file chosen by `Settings.config_path`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                self._data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
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
    slo: SloSettings = Field(default_factory=SloSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)

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

    def policy(self) -> dict[str, Any]:
        """The decision-relevant part of the settings (no secrets, no endpoints, no paths)."""
        return self.model_dump(
            mode="json",
            include={
                "discovery": True,
                "licenses": True,
                "screening": True,
                "images": True,
                "runtimes": True,
                "accelerators": True,
                "slo": True,
                "validation": {"required", "deviations", "max_benchmark_error_rate"},
            },
        )

    def policy_digest(self) -> str:
        """sha256 of the canonical JSON of `policy()`: the key under which stage results are cached."""
        canonical = json.dumps(self.policy(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def hub_token(self) -> str | None:
        return self.hub.token.get_secret_value() if self.hub.token else None


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
    from pydantic import ValidationError

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
