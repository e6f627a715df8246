"""A light runtime for the scale benchmark: the server the shared entrypoint execs in the stand-in image.

The stand-in image is built exactly as hf-serve's (builders/recipes/offline.py: the Debian base, the entrypoint's
locked venv with model-signing, builders/recipes/model_entrypoint.py as ENTRYPOINT); only the server it execs
(/opt/curation/server.json) is this file instead of `transformers serve` (benchmarks/scale_stack.py). So each cell
fetches the staged weights from blob storage and verifies their signature and every sha256 as the real runtime
does, then this standard-library server answers /health, /v1/models and /v1/chat/completions (plain and
streamed): the first token after TTFT_S, one token every ITL_S, `max_tokens` tokens (at most 64). I/O-bound: a
few milliseconds of CPU per request.

    python3 scale_standin.py --model-dir DIR --served-name ORG/NAME --host H --port P
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TTFT_S = float(os.environ.get("STANDIN_TTFT_S", "0.05"))
ITL_S = float(os.environ.get("STANDIN_ITL_S", "0.01"))
MAX_TOKENS = 64


def _error(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": None}}


class StandIn(BaseHTTPRequestHandler):
    model = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            card = {"id": self.model, "object": "model", "created": int(time.time()), "owned_by": "standin"}
            self._send(200, {"object": "list", "data": [card]})
        else:
            self._send(*_error(404, f"no route {self.path}", "not_found_error"))

    def _request(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return None
        return dict(body)

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            self._send(*_error(404, f"no route {self.path}", "not_found_error"))
            return
        body = self._request()
        if body is None:
            self._send(*_error(400, "messages must be a non-empty list of objects", "invalid_request_error"))
            return
        if body.get("model") != self.model:
            self._send(*_error(404, f"model {body.get('model')!r} does not exist", "not_found_error"))
            return
        tokens = max(1, min(int(body.get("max_tokens") or body.get("max_completion_tokens") or 16), MAX_TOKENS))
        if body.get("stream"):
            self._stream(body, tokens)
        else:
            time.sleep(TTFT_S + (tokens - 1) * ITL_S)
            self._send(200, self._completion(tokens))

    def _usage(self, tokens: int) -> dict[str, int]:
        return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}

    def _completion(self, tokens: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": " tok" * tokens},
                    "finish_reason": "length",
                }
            ],
            "usage": self._usage(tokens),
        }

    def _event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        chunk = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def _stream(self, body: dict[str, Any], tokens: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk"}
        base |= {"model": self.model, "created": int(time.time())}
        time.sleep(TTFT_S)
        for i in range(tokens):
            delta: dict[str, Any] = {"content": " tok"}
            if i == 0:
                delta["role"] = "assistant"
            last = i == tokens - 1
            choice = {"index": 0, "delta": delta, "finish_reason": "length" if last else None}
            self._event({**base, "choices": [choice]})
            if not last:
                time.sleep(ITL_S)
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**base, "choices": [], "usage": self._usage(tokens)})
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="standin")
    parser.add_argument("--model-dir", required=True, help="the verified local copy the entrypoint laid out")
    parser.add_argument("--served-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args(argv)
    if not Path(args.model_dir).is_dir():
        print(f"standin: {args.model_dir} is not a directory", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 in a container has no default handler
    StandIn.model = str(args.served_name)
    server = ThreadingHTTPServer((args.host, args.port), StandIn)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
