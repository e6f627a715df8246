"""Quotas and shared limits as data: where each accelerator family is served, and the global concurrency limits.

Quota is granted per accelerator family per region (`[accelerators.<family>.quota]` in curation.toml: region ->
devices, and the pool or pool queue whose workers run that region's cells). A family without a quota is served
from its `region` by its `pool`, unlimited. Every limit is a Prefect global concurrency limit whose name comes
from here (flows/limits.py creates them from the policy and acquires them):

- `quota-<family>-<region>`: the devices of one family in one region; a cell holds as many slots as its
  template has devices, for as long as it runs;
- `hub-downloads`: weight downloads from the Hub at once (one slot per model being downloaded);
- `blob-uploads`: weight uploads to blob storage at once (one slot per model being uploaded);
- `tag:hub`: Prefect's limit of the task runs tagged `hub` (every task that calls the Hub: discovery, screening,
  the task check, weight fetches): `hub.concurrency` of them at once. It is created before a run's first Hub
  call, since Prefect remembers for a few seconds that a tag had no limit.

Pure data, no I/O: flows and validators both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.artifacts import artifact_key
from registry.settings import Settings

HUB_TAG = "hub"
"""The Prefect tag of every task that calls the Hub."""
HUB_REQUESTS = f"tag:{HUB_TAG}"
HUB_DOWNLOADS = "hub-downloads"
BLOB_UPLOADS = "blob-uploads"
QUOTA_PREFIX = "quota"

# Kubernetes extended resource names of each vendor's devices (the device plugins' names).
GPU_RESOURCES = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}


@dataclass(frozen=True)
class Site:
    """One place a family's cells run: a region, the pool (and queue) of its workers, its devices (None: no limit)."""

    family: str
    region: str
    pool: str
    queue: str = ""
    devices: int | None = None

    @property
    def limit(self) -> str | None:
        """The global concurrency limit of this site's devices (None: the site has no quota)."""
        return quota_limit(self.family, self.region) if self.devices is not None else None

    def fits(self, count: int) -> bool:
        return self.devices is None or count <= self.devices


def quota_limit(family: str, region: str) -> str:
    return artifact_key(QUOTA_PREFIX, family, region)


def sites(settings: Settings, family_name: str) -> tuple[Site, ...]:
    """Where `family_name` is served, its home region (`region`) first; empty when the family is unknown."""
    family = settings.accelerators.get(family_name)
    if family is None:
        return ()
    home = family.region or settings.storage.primary_region
    if not family.quota:
        return (Site(family_name, home, family.pool),)
    ordered = sorted(family.quota.items(), key=lambda item: (item[0] != home, item[0]))
    return tuple(
        Site(family_name, region, site.pool or family.pool, site.queue, site.devices) for region, site in ordered
    )


def pools(settings: Settings) -> tuple[str, ...]:
    """Every pool a validation cell may run on, sorted."""
    return tuple(sorted({site.pool for name in settings.accelerators for site in sites(settings, name)}))


def limits(settings: Settings) -> dict[str, int]:
    """Every global concurrency limit the policy declares: name -> slots."""
    declared = {
        HUB_REQUESTS: settings.hub.concurrency,
        HUB_DOWNLOADS: settings.orchestration.hub_downloads,
        BLOB_UPLOADS: settings.orchestration.blob_uploads,
    }
    for name in settings.accelerators:
        for site in sites(settings, name):
            if site.limit is not None and site.devices is not None:
                declared[site.limit] = site.devices
    return declared


def gpu_job_variables(settings: Settings, family_name: str, count: int) -> dict[str, Any]:
    """The job variables a Kubernetes pool's cell needs (workpools/kubernetes-gpu-cell.json): its devices by
    vendor and count (`gpu_limits`; Kubernetes takes an extended resource's request from its limit) and the
    node selector of its family."""
    family = settings.accelerators.get(family_name)
    if family is None:
        return {}
    resource = GPU_RESOURCES.get(family.vendor)
    limits = {resource: str(count)} if resource is not None and count > 0 else {}
    return {"gpu_limits": limits, "node_selector": dict(family.node_selector)}
