"""One model's chain as one flow run: stage -> derive -> validate -> publish (`curate-model`, docs/scale.md).

Before staging, a model that screened needs-review waits for a maintainer's decision, suspended and holding no
worker (flows/review_gate.py); a model whose task the pipeline does not serve ends `not-published` with the
reason "unsupported task: <task>" (flows/task_gate.py) and is never downloaded.

The weekly run dispatches one `curate-model` flow run per model (the `curate-model/<pool>` deployment on the
`curation` work pool, or an in-process subflow: flows/fanout.py); a maintainer's rerun calls it too. It is the
single entry point of a model's curation: whatever pauses, retries or reviews a model's chain acts on this run.

Each stage is a subflow whose failure ends the chain there and is recorded: the model's `ModelRow` of the run
(catalog store, `curation-run` artifact) is updated as the chain goes, so a run that dies midway still says which
stage it reached. Stages skip work already done at their key: staging checks the regions' manifests, validation
keeps every cell whose inputs did not change (validators/revalidation.py: the row then says "unchanged since
<run>"), publication writes nothing for an unchanged entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.exceptions import MissingResult
from prefect.runtime import flow_run

from flows.derive import derive_artifacts, derive_text
from flows.publish import publish_model
from flows.review_gate import review_gate
from flows.settings import settings_from
from flows.stage import stage_weights
from flows.task_gate import unsupported_task
from flows.validate_model import reused, validate_model
from registry.catalog import CatalogStore
from registry.schema import (
    ModelOutcome,
    ModelRef,
    ModelRow,
    StagedWeights,
    StageOutcome,
    StageResult,
    ValidationResult,
    ValidationVerdict,
    utcnow,
)
from registry.settings import Settings

CHAIN = ("stage", "derive", "validate", "publish")
_ORDER = ("discover", "screen", *CHAIN)


MISSING_RESULT = "it completed, but its result did not come back from the Prefect API"


def outcome_of(state: State[Any]) -> tuple[Any, str]:
    """(result, "") for a completed subflow, (None, why) for one that failed or crashed, or whose result is missing
    (the engine re-read its state from the API without the data: an API call retried under load)."""
    if state.is_completed():
        try:
            return state.result(), ""
        except MissingResult:
            return None, MISSING_RESULT
    return None, str(state.message or state.name)


def subflow_outcome(start: Callable[[bool], State[Any]]) -> tuple[Any, str]:
    """`outcome_of` the subflow `start(again=False)` runs; once more (`start(again=True)`: never forced) when its
    result did not come back. Every subflow of the chain skips what is done at its key, so the second run reuses
    the first one's work and returns its result."""
    found, why = outcome_of(start(False))
    if why == MISSING_RESULT:
        get_run_logger().warning("a subflow's result did not come back from the Prefect API: running it again")
        found, why = outcome_of(start(True))
    return found, why


def validate_text(results: list[ValidationResult], run_id: str | None = None) -> str:
    """The `validate` cell of a row: how many templates passed, the others' verdicts, what was kept."""
    passed = [r.template.id for r in results if r.verdict is ValidationVerdict.PASSED]
    others = [f"{r.template.id} {r.verdict.value}" for r in results if r.verdict is not ValidationVerdict.PASSED]
    text = f"{len(passed)} passed" + (f" ({'; '.join(others)})" if others else "")
    kept = unchanged_since(results, run_id)
    return f"unchanged since {kept}: {text}" if kept else text


def unchanged_since(results: list[ValidationResult], run_id: str | None) -> str | None:
    """The newest earlier run whose cells still stand, when no cell ran in this run (a cell that could not run,
    e.g. no worker online, ran nothing); None when one did, or none was kept."""
    kept = [r for r in results if reused(r, run_id)]
    ran = [r for r in results if not reused(r, run_id) and r.verdict is not ValidationVerdict.NOT_VALIDATED]
    if not kept or ran:
        return None
    return max(r.run_id or "" for r in kept) or None


@dataclass
class RowTracker:
    """The model's row of the run, written to the store at every step (the run's record of this model)."""

    settings: Settings
    row: ModelRow
    notes: dict[str, str] = field(default_factory=dict)

    def save(self, **changes: Any) -> ModelRow:
        self.row = self.row.model_copy(update={**changes, "stages": dict(self.notes), "updated_at": utcnow()})
        with CatalogStore.from_settings(self.settings) as store:
            store.record_model_row(self.row)
        return self.row

    def enter(self, stage: str) -> None:
        self.save(stage=stage)

    def note(self, stage: str, text: str) -> None:
        self.notes[stage] = text

    def fail(self, stage: str, why: str) -> ModelRow:
        self.note(stage, f"failed: {why}")
        return self.save(stage=stage, outcome=ModelOutcome.FAILED, reason=f"{stage}: {why}")


def derive(tracker: RowTracker, ref: ModelRef, overrides: dict[str, Any] | None, run_id: str) -> None:
    """Stage 4b (flows/derive.py): GGUF files for llama.cpp; whatever it says, the chain goes on (a model without
    them is validated and published with its other templates)."""
    result, why = subflow_outcome(
        lambda _again: derive_artifacts(
            ref.repo_id, ref.revision, overrides=overrides, run_id=run_id, return_state=True
        )
    )
    tracker.note("derive", derive_text(result) if result is not None else f"failed: {why}")


def _publish_row(tracker: RowTracker, result: StageResult, kept: str | None) -> ModelRow:
    text = result.outcome.value + (f": {result.reason}" if result.reason else "")
    tracker.note("publish", text)
    if result.outcome is StageOutcome.OK:
        changed = bool(result.payload.get("changed", True))
        outcome = ModelOutcome.PUBLISHED if changed else ModelOutcome.UNCHANGED
        return tracker.save(outcome=outcome, reason=result.reason, unchanged_since=None if changed else kept)
    if result.outcome is StageOutcome.FAILED:
        return tracker.save(outcome=ModelOutcome.FAILED, reason=f"publish: {result.reason}")
    if kept:
        return tracker.save(
            outcome=ModelOutcome.UNCHANGED, reason=f"unchanged since {kept}: {text}", unchanged_since=kept
        )
    return tracker.save(outcome=ModelOutcome.NOT_PUBLISHED, reason=text)


@dataclass(frozen=True)
class ChainOptions:
    first_stage: str = "stage"
    force_stage: bool = False
    force_validation: bool = False
    online_pools: dict[str, str] | None = None


def _chain(
    tracker: RowTracker, ref: ModelRef, run_id: str, overrides: dict[str, Any] | None, opts: ChainOptions
) -> ModelRow:
    first = _ORDER.index(opts.first_stage)
    weights: StagedWeights | None = None
    if first <= _ORDER.index("stage"):
        tracker.enter("stage")
        unsupported, why = subflow_outcome(lambda _again: unsupported_task(overrides, ref, return_state=True))
        if unsupported:
            tracker.note("stage", unsupported)
            return tracker.save(outcome=ModelOutcome.NOT_PUBLISHED, reason=f"stage: {unsupported}")
        if why:
            return tracker.fail("stage", f"could not tell the model's task: {why}")
        weights, why = subflow_outcome(
            lambda again: stage_weights(
                ref.repo_id, ref.revision, overrides=overrides, force=opts.force_stage and not again, return_state=True
            )
        )
        if weights is None:
            return tracker.fail("stage", why)
        tracker.note("stage", f"staged to {', '.join(sorted(weights.regions))}")
    if first <= _ORDER.index("derive"):
        tracker.enter("derive")
        derive(tracker, ref, overrides, run_id)
    results: list[ValidationResult] = []
    if first <= _ORDER.index("validate"):
        tracker.enter("validate")
        found, why = subflow_outcome(
            lambda again: validate_model(
                ref.repo_id,
                ref.revision,
                overrides=overrides,
                online_pools=opts.online_pools,
                run_id=run_id,
                force=opts.force_validation and not again,
                return_state=True,
            )
        )
        if found is None:
            return tracker.fail("validate", why)
        results = list(found)
        tracker.note("validate", validate_text(results, run_id))
    tracker.enter("publish")
    published, why = subflow_outcome(
        lambda _again: publish_model(ref.repo_id, ref.revision, overrides=overrides, export=False, return_state=True)
    )
    if published is None:
        return tracker.fail("publish", why)
    return _publish_row(tracker, published, unchanged_since(results, run_id))


@flow(name="curate-model", log_prints=True)
def curate_model(
    repo_id: str,
    revision: str,
    run_id: str,
    overrides: dict[str, Any] | None = None,
    first_stage: str = "stage",
    force_stage: bool = False,
    force_validation: bool = False,
    online_pools: dict[str, str] | None = None,
    note: str = "",
) -> ModelRow:
    """stage -> derive -> validate -> publish for one model in run `run_id`; returns (and records) its row.

    `first_stage` skips the stages before it (their recorded results are used); `force_stage` restages and
    `force_validation` re-runs every cell even when nothing changed. `online_pools` is the run's census of cell
    pools (None: taken by the validation). `note` says why the model is in the run when it is not new (e.g. a
    runtime image it uses moved).
    """
    if first_stage not in CHAIN:
        raise ValueError(f"first_stage must be one of {', '.join(CHAIN)}, not {first_stage!r}")
    settings = settings_from(overrides)
    ref = ModelRef(repo_id=repo_id, revision=revision)
    tracker = RowTracker(
        settings,
        ModelRow(
            run_id=run_id,
            repo_id=repo_id,
            revision=revision,
            stage=first_stage,
            flow_run_id=str(flow_run.id or "") or None,
        ),
    )
    if note:
        tracker.note("queued", note)
    tracker.save()
    opts = ChainOptions(first_stage, force_stage, force_validation, online_pools)
    row = review_gate(tracker, ref, settings) or _chain(tracker, ref, run_id, overrides, opts)
    get_run_logger().info("%s: %s at %s (%s)", ref, row.outcome.value, row.stage, row.reason[:300])
    return row
