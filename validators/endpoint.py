"""Is a base URL an OpenAI-compatible API at all? One `GET /models`, asked before a conformance run or a benchmark.

Without it an unreachable or unrelated server makes every check (or every request) fail on its own, slowly and
thirty times over; with it, the caller gets one typed error within seconds: `EndpointUnreachableError` when
nothing answers, `NotOpenAIEndpointError` when something answers that is not an OpenAI model list.
"""

from __future__ import annotations

import httpx

from validators.errors import EndpointUnreachableError, NotOpenAIEndpointError

PROBE_TIMEOUT_S = 10.0


def served_models(base_url: str, *, timeout_s: float = PROBE_TIMEOUT_S, api_key: str | None = None) -> tuple[str, ...]:
    """The model ids `GET <base_url>/models` lists (empty when the server needs a key this call lacks)."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s, follow_redirects=False)
    except httpx.TimeoutException as exc:
        raise EndpointUnreachableError(f"{base_url} did not answer GET /models within {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise EndpointUnreachableError(
            f"cannot reach {base_url} ({type(exc).__name__}: {str(exc)[:120]}); is the server running there?"
        ) from exc
    if response.status_code in (401, 403):
        return ()
    if response.status_code != 200:
        raise NotOpenAIEndpointError(
            f"{base_url} is not an OpenAI-compatible API: GET /models answered HTTP {response.status_code} "
            "(the base URL usually ends in /v1)"
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise NotOpenAIEndpointError(f"{base_url} is not an OpenAI-compatible API: GET /models is not JSON") from exc
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise NotOpenAIEndpointError(
            f"{base_url} is not an OpenAI-compatible API: GET /models has no 'data' list of models"
        )
    return tuple(str(item["id"]) for item in data if isinstance(item, dict) and "id" in item)
