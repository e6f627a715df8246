"""Where a validation cell runs: the census of pools with an online worker, and the site that takes the cell.

A run takes the census once (`pools_online`: one read per pool through the Prefect API, waiting at most
`validation.capacity_deadline_s` for pools that show no worker) and hands it to every model. A cell runs on the
first site of its accelerator family (registry/quotas.py: region, pool or queue, devices) whose quota fits its
template and whose pool runs cells now: in-process for `validation.inline_pools` when `validation.dispatch` is
"inline", else a pool with an online worker. Otherwise it ends not-validated at once, saying why: "no capacity:
no worker online for pool ..." (status no-capacity, only for that), or a quota smaller than the template
(not-run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flows.limits import census
from registry.quotas import Site, pools, sites
from registry.schema import CellStatus, DeploymentTemplate
from registry.settings import Settings

NO_CAPACITY = "no capacity"
NO_WORKER = "no worker online"


def pools_online(settings: Settings) -> dict[str, str]:
    """pool -> worker type of every cell pool with an online worker: the census a run takes once."""
    found = census(pools(settings), wait_s=settings.validation.capacity_deadline_s)
    return {pool: status.type for pool, status in found.items() if status.online}


def pool_has_worker(pool: str, deadline_s: float, poll_s: float = 2.0) -> bool:
    """True as soon as `pool` has an online worker; False when none appears within `deadline_s`."""
    return census([pool], wait_s=deadline_s, poll_s=poll_s)[pool].online


@dataclass(frozen=True)
class Placement:
    """Where one cell runs: a site (in-process when `inline`), or why it cannot run anywhere now (`reason`, and
    the cell status that says so: `cause`)."""

    site: Site | None
    inline: bool = False
    reason: str = ""
    cause: CellStatus = CellStatus.NOT_RUN


def place(settings: Settings, template: DeploymentTemplate, online: Mapping[str, str]) -> Placement:
    """The first site of the template's family whose quota fits it and whose pool runs cells now."""
    found = sites(settings, template.accelerator_family)
    if not found:
        return Placement(None, reason=f"accelerator family {template.accelerator_family} is not in curation.toml")
    inline_pools = set(settings.validation.inline_pools) if settings.validation.dispatch == "inline" else set()
    fitting = [site for site in found if site.fits(template.count)]
    if not fitting:
        granted = ", ".join(f"{site.region}: {site.devices}" for site in found)
        return Placement(
            None,
            reason=f"quota too small: the quota of {template.accelerator_family} ({granted}) is smaller than the "
            f"{template.count} device(s) the template needs",
        )
    for site in fitting:
        if site.pool in inline_pools:
            return Placement(site, inline=True)
    for site in fitting:
        if site.pool in online:
            return Placement(site)
    names = ", ".join(sorted({site.pool for site in fitting}))
    reason = f"{NO_CAPACITY}: {NO_WORKER} for pool {names} (checked once this run)"
    return Placement(None, reason=reason, cause=CellStatus.NO_CAPACITY)
