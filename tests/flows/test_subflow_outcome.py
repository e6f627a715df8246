"""A subflow whose state comes back from the Prefect API without its data (an API call retried under load; seen in
tests/flows/test_scale.py on the shared machine) is run once more, never forced, instead of crashing the model's
chain (flows/model.py `subflow_outcome`)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from flows.model import MISSING_RESULT, outcome_of, subflow_outcome


def test_a_completed_state_without_its_data_is_an_outcome_not_an_exception() -> None:
    assert outcome_of(Completed()) == (None, MISSING_RESULT)
    assert outcome_of(Completed(data=5)) == (5, "")
    assert outcome_of(Failed(message="boom")) == (None, "boom")


def _state(spec: Any) -> State[Any]:
    """None: completed without its data; ("failed", why): failed; anything else: completed with it."""
    if spec is None:
        return Completed()
    if isinstance(spec, tuple):
        return Failed(message=spec[1])
    return Completed(data=spec)


@flow(name="test-subflow-outcome")
def _chain_step(specs: list[Any]) -> tuple[tuple[Any, str], list[bool]]:
    calls: list[bool] = []

    def start(again: bool) -> State[Any]:
        calls.append(again)
        return _state(specs[len(calls) - 1])

    return subflow_outcome(start), calls


@pytest.mark.integration
def test_a_missing_result_runs_the_subflow_once_more_unforced(prefect_harness: None) -> None:
    assert _chain_step([None, "staged"]) == (("staged", ""), [False, True])
    assert _chain_step([None, None]) == ((None, MISSING_RESULT), [False, True])  # then the chain fails there
    assert _chain_step([1]) == ((1, ""), [False])
    assert _chain_step([("failed", "no")]) == ((None, "no"), [False])  # a failure is not retried here
