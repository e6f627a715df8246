"""The conformance suite against a real `transformers serve`, a faulty proxy in front of it, and
embeddings."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import pytest

from devstack.runtimes import RuntimeProcess
from registry.schema import BenchmarkMetrics, CheckStatus, ConformanceCheck, ConformanceReport
from tests.fixtures.runtimes import MINILM, SMOLLM2
from tests.validators import faulty_proxy
from tests.validators.observed import observed
from validators.bench_report import publish_table_artifact
from validators.conformance import CHECKS, checks_for, publish_artifact, report_markdown, run_suite
from validators.conformance_checks.base import Target
from validators.errors import ConformanceError

pytestmark = pytest.mark.integration

# What the installed transformers serve supports and what it does not, as the suite must report it: recorded per
# version in tests/validators/observed.py (the venv runs the hf-serve image's version; test_locks checks that).
HF_SERVE = observed("hf-serve", importlib.metadata.version("transformers"))
HF_SERVE_PASSES = set(HF_SERVE.passes)
HF_SERVE_FAILS = set(HF_SERVE.fails)
HF_SERVE_SKIPS = set(HF_SERVE.skips)


def _by_name(report: ConformanceReport) -> dict[str, ConformanceCheck]:
    return {c.name: c for c in report.checks}


@pytest.fixture(scope="module")
def hf_serve_report(hf_serve: RuntimeProcess) -> ConformanceReport:
    return run_suite(Target(hf_serve.base_url, SMOLLM2, task="chat"))


def test_suite_reports_exactly_what_transformers_serve_supports(hf_serve_report: ConformanceReport) -> None:
    by_name = _by_name(hf_serve_report)
    assert set(by_name) == {c.name for c in checks_for("chat")}
    outcome = {name: check.status for name, check in by_name.items()}
    assert {n for n, s in outcome.items() if s is CheckStatus.PASS} == HF_SERVE_PASSES, outcome
    assert {n for n, s in outcome.items() if s is CheckStatus.FAIL} == HF_SERVE_FAILS, outcome
    assert {n for n, s in outcome.items() if s is CheckStatus.SKIP} == HF_SERVE_SKIPS, outcome
    done = by_name["stream.done"]
    assert done.evidence["request"]["body"]["stream"] is True
    assert "[DONE]" not in done.evidence["response_excerpt"]
    assert by_name["errors.unknown_model"].evidence["request"]["body"]["model"].startswith("no-such-org/")
    assert hf_serve_report.version and hf_serve_report.model == SMOLLM2 and hf_serve_report.failed


def test_report_renders_as_json_and_markdown(hf_serve_report: ConformanceReport) -> None:
    again = ConformanceReport.model_validate_json(hf_serve_report.model_dump_json())
    assert again == hf_serve_report
    markdown = report_markdown(hf_serve_report)
    assert all(f"| `{name}` | 1 | **FAIL** |" in markdown for name in HF_SERVE_FAILS & {"stream.done", "chat.stop"})
    assert "## Evidence of failures" in markdown
    assert publish_artifact(hf_serve_report) is False  # outside a flow run: no artifact, no error


CLEAN_CHECKS = [
    "models.listing",
    "chat.shape",
    "chat.usage",
    "stream.role_first_only",
    "stream.done",
    "stream.include_usage",
    "stream.no_usage_unasked",
    "errors.no_error_in_200",
]


def test_clean_proxy_repairs_the_known_deviations(faulty_openai_proxy: faulty_proxy.ThreadServer) -> None:
    report = run_suite(Target(faulty_openai_proxy.url("/clean/v1"), SMOLLM2), only=CLEAN_CHECKS)
    assert {c.name: c.status for c in report.checks} == dict.fromkeys(CLEAN_CHECKS, CheckStatus.PASS)


@pytest.mark.parametrize(
    ("mode", "checks", "must_fail"),
    [
        ("no_done", ["stream.done"], {"stream.done"}),
        ("role_every_delta", ["stream.role_first_only"], {"stream.role_first_only"}),
        ("wrong_usage", ["chat.usage", "stream.include_usage"], {"chat.usage", "stream.include_usage"}),
        ("error_in_200", ["chat.shape", "errors.no_error_in_200"], {"chat.shape", "errors.no_error_in_200"}),
        ("double_usage", ["stream.include_usage"], {"stream.include_usage"}),
    ],
)
def test_each_fault_fails_its_check(
    faulty_openai_proxy: faulty_proxy.ThreadServer, mode: str, checks: list[str], must_fail: set[str]
) -> None:
    report = run_suite(Target(faulty_openai_proxy.url(f"/{mode}/v1"), SMOLLM2), only=checks)
    failed = {c.name for c in report.checks if c.status is CheckStatus.FAIL}
    assert failed == must_fail
    for check in report.checks:
        if check.status is CheckStatus.FAIL:
            assert check.evidence["request"]["path"].startswith("/")
            assert check.evidence["status"] == 200
            assert check.evidence["response_excerpt"]


@pytest.mark.parametrize(
    ("mode", "status"), [("tool_calls", CheckStatus.PASS), ("tool_calls_broken", CheckStatus.FAIL)]
)
def test_tool_call_check_reads_streamed_argument_deltas(
    faulty_openai_proxy: faulty_proxy.ThreadServer, mode: str, status: CheckStatus
) -> None:
    target = Target(faulty_openai_proxy.url(f"/{mode}/v1"), SMOLLM2, tool_call_parser="hermes")
    (check,) = run_suite(target, only=["chat.tool_calls"]).checks
    assert check.status is status, check.detail
    if status is CheckStatus.FAIL:
        assert "invalid JSON" in check.detail and check.evidence["request"]["body"]["tools"]


EMBEDDING_PASSES = {c.name for c in checks_for("embeddings")} - {"embeddings.dimensions_param"}


def test_embeddings_suite_against_the_reference_server(embeddings_server: faulty_proxy.ThreadServer) -> None:
    report = run_suite(Target(embeddings_server.url("/v1"), MINILM, task="embeddings"))
    status = {c.name: c.status for c in report.checks}
    assert {n for n, s in status.items() if s is CheckStatus.PASS} == EMBEDDING_PASSES, report.checks
    assert status["embeddings.dimensions_param"] is CheckStatus.SKIP  # rejected with a 400: declared unsupported


def test_shuffled_embeddings_fail_batch_order(embeddings_server: faulty_proxy.ThreadServer) -> None:
    with faulty_proxy.ThreadServer(faulty_proxy.make_app(embeddings_server.url()), _port()) as shuffler:
        report = run_suite(
            Target(shuffler.url("/shuffled_embeddings/v1"), MINILM, task="embeddings"),
            only=["embeddings.dimensions", "embeddings.batch_order"],
        )
    status = {c.name: c.status for c in report.checks}
    assert status == {"embeddings.dimensions": CheckStatus.PASS, "embeddings.batch_order": CheckStatus.FAIL}


def _port() -> int:
    from devstack.net import free_port

    return free_port()


def test_unreachable_server_fails_every_check_with_evidence() -> None:
    report = run_suite(
        Target(f"http://127.0.0.1:{_port()}/v1", "x/y", timeout_s=2), only=["models.listing", "chat.shape"]
    )
    assert [c.status for c in report.checks] == [CheckStatus.FAIL, CheckStatus.FAIL]
    assert all("ConnectError" in c.detail for c in report.checks)


def test_suite_selection_errors() -> None:
    with pytest.raises(ConformanceError, match="unknown task"):
        checks_for("rerank")
    with pytest.raises(ConformanceError, match="unknown check"):
        checks_for("chat", ["no.such.check"])
    with pytest.raises(ConformanceError, match="http"):
        run_suite(Target("ftp://x", "m"))
    names = [c.name for c in CHECKS]
    assert len(names) == len(set(names)) and names[-1] == "errors.no_error_in_200"


def test_artifact_inside_a_flow(prefect_harness: Any) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    report = ConformanceReport(
        version="1.0.0",
        model="org/m",
        checks=(ConformanceCheck(name="x", status=CheckStatus.FAIL, detail="bad"),),
    )

    metrics = BenchmarkMetrics(profile="synchronous", concurrency=1, requests=3, request_throughput=0.5)

    @flow
    def publish() -> bool:
        table = publish_table_artifact([metrics], key="throughput-test-artifact")
        return publish_artifact(report, key="conformance-test-artifact") and table

    assert publish() is True

    async def _read() -> list[Any]:
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["conformance-test-artifact", "throughput-test-artifact"])
                )
            )

    import asyncio

    artifacts = {a.key: a for a in asyncio.run(_read())}
    assert "| `x` | 1 | **FAIL** | bad |" in str(artifacts["conformance-test-artifact"].data)
    assert artifacts["throughput-test-artifact"].type == "table"
    assert "request_throughput" in str(artifacts["throughput-test-artifact"].data)
    assert json.loads(report.model_dump_json())["checks"][0]["version"] == 1
