"""`curate plan`, `curate conformance` and `curate bench` end to end (typer runner, real servers on
loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.exit_codes import ExitCode
from registry.net import free_port
from tests.fixtures.runtimes import SMOLLM2
from tests.validators.faulty_proxy import ThreadServer

CONFIGS = Path(__file__).resolve().parents[1] / "validators" / "configs"
runner = CliRunner()


def test_plan_from_a_local_config_prints_the_four_qwen3_templates_and_mi300() -> None:
    result = runner.invoke(
        app,
        [
            "plan",
            "Qwen/Qwen3-32B",
            "--config-file",
            str(CONFIGS / "qwen3-32b.json"),
            "--parameters",
            "32762123264",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    templates = json.loads(result.stdout)
    assert [t["id"] for t in templates] == [
        "qwen--qwen3-32b--40k-nvidia-a100",
        "qwen--qwen3-32b--128k-nvidia-2xa100",
        "qwen--qwen3-32b--40k-nvidia-h100",
        "qwen--qwen3-32b--128k-nvidia-2xh100",
        "qwen--qwen3-32b--40k-amd-mi300",
        "qwen--qwen3-32b--128k-amd-mi300",
    ]
    assert templates[0]["memory"]["kv_cache_bytes"] == 10 * 1024**3
    rich_view = runner.invoke(app, ["plan", "Qwen/Qwen3-32B", "--config-file", str(CONFIGS / "qwen3-32b.json")])
    assert rich_view.exit_code == 0 and "--rope-scaling" in rich_view.output and "reserve 0.50 GiB" in rich_view.output


def test_plan_rejects_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}))
    result = runner.invoke(app, ["plan", "org/m", "--config-file", str(bad)])
    assert result.exit_code == 1
    assert "num_attention_heads" in result.output
    bad.write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"], "model_type": "t5"}))
    result = runner.invoke(app, ["plan", "org/m", "--config-file", str(bad)])
    assert result.exit_code == 1 and "unsupported task: text2text-generation" in result.output


@pytest.mark.integration
def test_plan_reads_the_hub(hub_server: Any) -> None:
    result = runner.invoke(app, ["--endpoint", hub_server.url, "plan", SMOLLM2, "--json"])
    assert result.exit_code == 0, result.output
    templates = json.loads(result.stdout)
    cpu = [t for t in templates if t["accelerator_family"] == "cpu"]
    assert [t["id"] for t in cpu] == ["huggingfacetb--smollm2-135m-instruct--8k-cpu"]
    # The task comes from the repository's own config and processor files.
    speech = runner.invoke(app, ["--endpoint", hub_server.url, "plan", "curation-samples/tiny-whisper-asr", "--json"])
    assert speech.exit_code == 0, speech.output
    assert [(t["id"], t["task"]) for t in json.loads(speech.stdout)] == [
        ("curation-samples--tiny-whisper-asr--0.4k-cpu", "automatic-speech-recognition")
    ]
    assert cpu[0]["model"]["repo_id"] == SMOLLM2 and len(cpu[0]["model"]["revision"]) == 40
    assert cpu[0]["memory"]["weights_bytes"] > 200_000_000  # bf16 weights from the safetensors metadata


@pytest.mark.integration
def test_conformance_and_bench_commands(
    hf_serve: Any, faulty_openai_proxy: Any, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    # Our own proxy with one known fault (streams end without `data: [DONE]`), not an upstream server's quirk.
    result = runner.invoke(
        app,
        [
            "conformance",
            faulty_openai_proxy.url("/no_done/v1"),
            "--model",
            SMOLLM2,
            "--check",
            "stream.done",
            "--check",
            "chat.role",
            "--markdown",
            str(tmp_path / "report.md"),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [(c["name"], c["status"]) for c in report["checks"]] == [  # in suite order
        ("chat.role", "pass"),
        ("stream.done", "fail"),
    ]
    assert "| `stream.done` | 1 | **FAIL** |" in (tmp_path / "report.md").read_text()

    out = tmp_path / "bench"
    result = runner.invoke(
        app,
        [
            "bench",
            hf_serve.base_url,
            "--model",
            SMOLLM2,
            "--profile",
            "sweep",
            "--concurrencies",
            "1,2",
            "--max-requests",
            "2",
            "--input-tokens",
            "16",
            "--output-tokens",
            "3",
            "--tokenizer",
            str(model_dirs[SMOLLM2]),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert [m["concurrency"] for m in metrics] == [1.0, 2.0] and all(m["requests"] == 2 for m in metrics)
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "sweep.png"}


async def _models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})


async def _broken_completions(_: Request) -> Response:
    return JSONResponse({"error": {"message": "the engine is down"}}, status_code=500)


@pytest.fixture(scope="module")
def broken_openai() -> Iterator[ThreadServer]:
    """Lists a model, fails every completion (500); and `/web/...` is a web site, not an API."""
    app = Starlette(
        routes=[
            Route("/v1/models", _models),
            Route("/v1/chat/completions", _broken_completions, methods=["POST"]),
            Route("/web/v1/models", lambda _: HTMLResponse("<html></html>")),
        ]
    )
    with ThreadServer(app, free_port()) as server:
        yield server


def test_conformance_list_names_every_check_with_its_version() -> None:
    from validators.conformance import CHECKS, TASKS

    listed = runner.invoke(app, ["conformance", "--list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    expected = [(c.name, c.version, c.description) for c in CHECKS]
    assert [(r["name"], r["version"], r["asserts"]) for r in rows] == expected
    assert set(TASKS) == {task for r in rows for task in r["tasks"]}
    view = runner.invoke(app, ["conformance", "--list"])
    assert view.exit_code == 0 and "stream.done" in view.stdout and "data: [DONE] is the last event" in view.stdout


def test_an_endpoint_that_is_down_or_not_openai_is_one_line_not_thirty_failures(broken_openai: ThreadServer) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    for command in (["conformance", down, "--model", "m"], ["bench", down, "--model", "m"]):
        result = runner.invoke(app, command)
        assert result.exit_code == ExitCode.UNREACHABLE, result.output
        assert result.stderr.startswith("error: cannot reach") and len(result.stderr.splitlines()) == 1
        assert result.stdout == ""
    web = broken_openai.url("/web/v1")
    result = runner.invoke(app, ["conformance", web, "--model", "m"])
    assert result.exit_code == ExitCode.INCOMPATIBLE
    assert "not an OpenAI-compatible API" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_benchmark_whose_requests_all_failed_does_not_exit_0(broken_openai: ThreadServer) -> None:
    bounds = ["--max-requests", "3", "--max-duration", "10"]
    result = runner.invoke(app, ["bench", broken_openai.url("/v1"), "--model", "m", *bounds, "--json"])
    assert result.exit_code == ExitCode.FAILED, result.output
    assert json.loads(result.stdout)[0]["errors"] == 3  # the metrics are still printed, for the record
    assert result.stderr.startswith("error: every request failed at c=1 (3 errors")


def test_cli_task_choices_are_the_suites_tasks() -> None:
    from flows.cli.params import TASKS as CLI_TASKS
    from validators.conformance import TASKS

    assert CLI_TASKS == TASKS
