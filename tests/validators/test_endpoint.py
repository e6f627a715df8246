"""validators/endpoint.py: one GET /models tells an OpenAI-compatible API from nothing, or from something else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from registry.net import free_port
from tests.fixtures.ground_truth import GroundTruthProcess
from tests.validators.faulty_proxy import ThreadServer
from validators.endpoint import served_models
from validators.errors import EndpointUnreachableError, NotOpenAIEndpointError


async def _answers(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "html":
        return HTMLResponse("<html>a web page</html>")
    if kind == "object":
        return JSONResponse({"models": ["x"]})
    if kind == "key":
        return JSONResponse({"error": "needs a key"}, status_code=401)
    return JSONResponse({"detail": "Not Found"}, status_code=404)


@pytest.fixture(scope="module")
def not_openai() -> Iterator[ThreadServer]:
    app = Starlette(routes=[Route("/{kind}/v1/models", _answers)])
    with ThreadServer(app, free_port()) as server:
        yield server


def test_nothing_listening_is_unreachable() -> None:
    with pytest.raises(EndpointUnreachableError, match="Connection refused"):
        served_models(f"http://127.0.0.1:{free_port()}/v1")


def test_answers_that_are_not_a_model_list(not_openai: ThreadServer) -> None:
    for kind, why in (("html", "not JSON"), ("object", "no 'data' list"), ("missing", "HTTP 404")):
        with pytest.raises(NotOpenAIEndpointError, match=why):
            served_models(not_openai.url(f"/{kind}/v1"))
    assert served_models(not_openai.url("/key/v1")) == ()  # it answers; the key is the caller's business


def test_an_openai_server_lists_its_models(ground_truth: GroundTruthProcess) -> None:
    assert served_models(ground_truth.base_url) == (ground_truth.schedule.model,)
