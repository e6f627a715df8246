"""`refresh-catalog`: the small scheduled deployment that keeps the catalog's TUF metadata fresh between weekly runs.

It runs the export (registry/catalog_export.py), which re-signs the timestamp (and the snapshot and catalog roles)
when less than half of its validity is left and otherwise writes nothing: consumers never see a false freeze when a
weekly run is late or fails. Scheduled daily in prefect.yaml.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.settings import settings_from
from registry.catalog_export import ExportSync, export_catalog


@flow(name="refresh-catalog", log_prints=True)
def refresh_catalog(overrides: dict[str, Any] | None = None) -> ExportSync:
    """Bring the export in sync and re-sign the TUF metadata that nears expiry."""
    synced = export_catalog(settings_from(overrides))
    get_run_logger().info(
        "catalog metadata %s; %d file(s) written, %d blob(s) uploaded",
        synced.tuf_versions,
        len(synced.written),
        len(synced.uploaded),
    )
    for warning in synced.tuf_warnings:
        get_run_logger().warning("%s", warning)
    return synced
