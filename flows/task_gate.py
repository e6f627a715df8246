"""Before staging: does the pipeline serve this model's task? Orchestration only: the rule is validators/tasks.py
(which task the repository's config, processor files and card say it serves) and validators/planner.py (whether
an enabled runtime in the policy serves that task).

A model whose task is unsupported is never staged: its `stage` result is SKIPPED with the reason, which starts
`unsupported task: <task>`, and the `curation-run` artifact shows that row. A model already staged at this
revision is not asked again (validation decides again from the staged, signed files), nor is one already
found unsupported at this revision under this policy.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.runtime import flow_run

from flows.settings import settings_from
from registry.catalog import CatalogStore
from registry.hub import hub_source
from registry.quotas import HUB_TAG
from registry.schema import ModelRef, StageName, StageOutcome, StageResult
from validators.planner import planned_task
from validators.tasks import UnsupportedTaskError, detect_task, hub_evidence


@task(name="check-task", tags=[HUB_TAG])
def unsupported_task(overrides: dict[str, Any] | None, ref: ModelRef) -> str | None:
    """None when the model's task is served; else the reason (recorded as the SKIPPED `stage` result)."""
    settings = settings_from(overrides)
    digest = settings.policy_digest()
    with CatalogStore.from_settings(settings) as catalog:
        if catalog.staged(ref) is not None:
            return None
        recorded = catalog.stage_result(ref, StageName.STAGE, digest)
    if recorded is not None and recorded.outcome is StageOutcome.SKIPPED and "task" in recorded.payload:
        return recorded.reason  # decided at this revision under this policy: no Hub read
    source = hub_source(settings.hub)
    try:
        decision = detect_task(hub_evidence(source, source.model_info(ref.repo_id, ref.revision)))
    finally:
        source.close()
    try:
        planned_task({}, settings, decision.require_supported())
    except UnsupportedTaskError as exc:
        with CatalogStore.from_settings(settings) as catalog:
            catalog.record_stage(
                StageResult(
                    ref=ref,
                    stage=StageName.STAGE,
                    outcome=StageOutcome.SKIPPED,
                    reason=str(exc),
                    policy_digest=digest,
                    run_id=str(flow_run.id or "") or None,
                    payload={"task": exc.decision.task, "rule": exc.decision.rule},
                )
            )
        return str(exc)
    return None
