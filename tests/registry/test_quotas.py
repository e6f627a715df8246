"""Quotas as data (registry/quotas.py) and each stage's own part of the policy (registry/settings.py)."""

from __future__ import annotations

from typing import Any

import pytest

from registry.quotas import BLOB_UPLOADS, HUB_DOWNLOADS, HUB_REQUESTS, Site, gpu_job_variables, limits, pools, sites
from registry.settings import POLICY_STAGES, SettingsError, load_settings

A100 = {
    "vendor": "nvidia",
    "memory_gib": 80,
    "counts": [1, 2, 4, 8],
    "pool": "gpu-a100",
    "region": "westeurope",
    "node_selector": {"accelerator": "a100"},
    "quota": {
        "eastus": {"devices": 4, "pool": "gpu-a100-eastus"},
        "westeurope": {"devices": 8},
        "southeastasia": {"devices": 2, "queue": "sea"},
    },
}


def test_a_family_is_served_from_each_region_of_its_quota_home_region_first() -> None:
    settings = load_settings(accelerators={"A100_TEST": A100})
    assert sites(settings, "A100_TEST") == (
        Site("A100_TEST", "westeurope", "gpu-a100", "", 8),
        Site("A100_TEST", "eastus", "gpu-a100-eastus", "", 4),
        Site("A100_TEST", "southeastasia", "gpu-a100", "sea", 2),
    )
    assert sites(settings, "no-such-family") == ()
    assert "gpu-a100-eastus" in pools(settings) and "gpu-a100" in pools(settings)


def test_a_family_without_quota_is_its_home_region_unlimited() -> None:
    family = {"vendor": "cpu", "memory_gib": 8, "pool": "cpu-small", "region": "westeurope"}
    settings = load_settings(accelerators={"small": family})
    (site,) = sites(settings, "small")
    assert site.devices is None and site.limit is None and site.fits(1_000)
    assert (site.pool, site.region) == ("cpu-small", "westeurope")
    assert not any(name.startswith("quota-small") for name in limits(settings))


def test_every_limit_the_policy_declares() -> None:
    settings = load_settings(
        accelerators={"A100_TEST": A100}, orchestration={"hub_downloads": 3, "blob_uploads": 2}, hub={"concurrency": 5}
    )
    declared = limits(settings)
    assert declared[HUB_DOWNLOADS] == 3 and declared[BLOB_UPLOADS] == 2
    assert declared[HUB_REQUESTS] == 5 and HUB_REQUESTS == "tag:hub"  # Prefect's limit of the tasks tagged `hub`
    assert declared["quota-a100-test-eastus"] == 4
    assert declared["quota-a100-test-westeurope"] == 8
    assert declared["quota-a100-test-southeastasia"] == 2
    assert all(name == name.lower() and "_" not in name for name in declared if name != HUB_REQUESTS)
    site = sites(settings, "A100_TEST")[1]
    assert site.limit == "quota-a100-test-eastus" and site.fits(4) and not site.fits(5)


def test_gpu_job_variables_by_vendor_and_count() -> None:
    settings = load_settings(accelerators={"A100_TEST": A100})
    variables = gpu_job_variables(settings, "A100_TEST", 2)
    assert variables == {"gpu_limits": {"nvidia.com/gpu": "2"}, "node_selector": {"accelerator": "a100"}}
    assert gpu_job_variables(load_settings(), "MI_300_192GB", 4)["gpu_limits"] == {"amd.com/gpu": "4"}
    assert gpu_job_variables(load_settings(), "cpu", 1)["gpu_limits"] == {}
    assert gpu_job_variables(load_settings(), "nope", 1) == {}


def _digests(**overrides: Any) -> dict[str | None, str]:
    settings = load_settings(**overrides)
    return {stage: settings.policy_digest(stage) for stage in (*POLICY_STAGES, None)}


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        ({"images": {"registry": "acr.example.io"}}, {"images"}),
        ({"images": {"fail_on_fixable": ["CRITICAL", "HIGH"]}}, {"images"}),
        ({"images": {"trivy_cache_dir": "/var/cache/trivy", "trivy_skip_db_update": True}}, set()),
        ({"licenses": {"allow": ["MIT"]}}, {"screen", None}),
        ({"screening": {"parameter_tolerance": 0.1}}, {"screen", "stage", None}),
        ({"discovery": {"limit": 7}}, {"discover"}),
        ({"validation": {"required": {"chat": ["models.listing"]}}}, {"validate", None}),
        ({"validation": {"health_timeout_s": 5.0, "dispatch": "inline"}}, set()),
        ({"accelerators": {"cpu": {"pool": "elsewhere", "quota": {"eastus": {"devices": 9}}}}}, set()),
        ({"accelerators": {"cpu": {"memory_gib": 32}}}, {"validate", None}),
        ({"orchestration": {"max_parallel_models": 16, "hub_downloads": 1}}, set()),
        ({"storage": {"primary_region": "westeurope"}}, {"stage", None}),
    ],
)
def test_each_stage_is_keyed_by_its_own_part_of_the_policy(change: dict[str, Any], changed: set[str | None]) -> None:
    before, after = _digests(), _digests(**change)
    assert {stage for stage in before if before[stage] != after[stage]} == changed


def test_an_unknown_stage_is_an_error() -> None:
    with pytest.raises(SettingsError, match="no policy stage"):
        load_settings().policy_digest("publish-ish")
