"""A stand-in for the upstream `text-embeddings-router` (TEI), baked into a test image; never imported.

It answers TEI's command line (`--model-id PATH --served-model-name NAME --hostname H --port P`, other flags
accepted and ignored) with /health, /v1/models, /v1/embeddings (a fixed-size vector per input) and /info, which
says which stand-in build is serving (STANDIN_VERSION, baked into the image), the files of the model directory it
was given, and whether a `python3` is on its PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--served-model-name", default="")
    parser.add_argument("--hostname", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args()
    model_dir = Path(args.model_id)
    info = {
        "standin": os.environ.get("STANDIN_VERSION", ""),
        "model_dir": str(model_dir),
        "files": sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()),
        "served_name": args.served_model_name,
        "python_on_path": shutil.which("python3"),
        "hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
        "blob_url_seen": "MODEL_BLOB_URL" in os.environ,
    }

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send({"status": "ok"})
            elif self.path == "/v1/models":
                self._send({"object": "list", "data": [{"id": args.served_model_name, "object": "model"}]})
            elif self.path == "/info":
                self._send(info)
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            inputs = request.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else inputs
            data = [{"object": "embedding", "index": i, "embedding": [0.5] * 8} for i, _ in enumerate(inputs)]
            self._send({"object": "list", "data": data, "model": args.served_model_name})

    ThreadingHTTPServer((args.hostname, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
