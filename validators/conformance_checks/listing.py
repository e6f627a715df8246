"""`GET /v1/models`: the listing validates as openai `Model` items and contains the served id."""

from __future__ import annotations

from openai.types import Model

from validators.conformance_checks.base import Outcome, Session, failed, passed, require_ok, validate_model


def models_listing(session: Session) -> Outcome:
    exchange = session.get("/models")
    body = require_ok(exchange, "GET /models")
    data = body.get("data") if isinstance(body, dict) else None
    if body.get("object") != "list" or not isinstance(data, list):
        return failed("GET /models is not {'object': 'list', 'data': [...]}", exchange.evidence())
    for item in data:
        validate_model(Model, item, exchange, "a /models item")
        if not isinstance(item.get("created"), int):
            return failed(
                f"/models item {item.get('id')!r} has created={item.get('created')!r}, not an integer unix time",
                exchange.evidence(),
            )
    ids = [item.get("id") for item in data]
    if session.target.model not in ids:
        return failed(f"the served id {session.target.model!r} is not listed (ids: {ids[:10]})", exchange.evidence())
    return passed(f"lists {session.target.model!r} among {len(ids)} model(s)")
