"""A reference OpenAI `/v1/embeddings` server for the embeddings conformance tests (test code, not a runtime).

No embeddings runtime installs from PyPI here without replacing pinned packages (`transformers serve` has no
`/v1/embeddings`; `infinity-emb` downgrades huggingface_hub, numpy, typer and uvicorn; TEI and llama.cpp need
builds
or wheels that are not available), so the embeddings checks run against this small server over the real
all-MiniLM-L6-v2 weights: mean pooling + L2 normalisation (the sentence-transformers recipe), float or base64
output, and the OpenAI error envelope. It rejects `dimensions` with a 400 (the model is not
Matryoshka-trained).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def make_app(model_id: str, model_dir: Path) -> Starlette:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    created = int(time.time())

    def embed(texts: list[str]) -> tuple[np.ndarray, int]:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        vectors = torch.nn.functional.normalize(pooled, dim=-1).numpy().astype("<f4")
        return vectors, int(batch["attention_mask"].sum())

    async def models(_: Request) -> JSONResponse:
        item = {"id": model_id, "object": "model", "created": created, "owned_by": model_id.split("/", maxsplit=1)[0]}
        return JSONResponse({"object": "list", "data": [item]})

    async def embeddings(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        if body.get("model") != model_id:
            return _error(404, f"model {body.get('model')!r} does not exist", "model", "model_not_found")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _error(400, "input must be a string or a non-empty list of strings", "input")
        if body.get("dimensions") is not None:
            return _error(400, "this model does not support the dimensions parameter", "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _error(400, "encoding_format must be float or base64", "encoding_format")
        vectors, tokens = embed(texts)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.tobytes()).decode() if encoding == "base64" else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": model_id, "usage": usage})

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )
