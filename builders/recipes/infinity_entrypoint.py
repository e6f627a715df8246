#!/usr/bin/env python3
"""infinity entrypoint (runs inside the image; standard library only, never imported by the pipeline).

Fetches one staged model exactly like hf-serve (`hf_serve_entrypoint.py`, copied next to this file: blob storage
via `MODEL_BLOB_URL` + `MODEL_REVISION`, or a mounted `MODEL_DIR`; every file's size and sha256 verified), then
execs `infinity_emb v2` on the verified snapshot, served under the repo id with the OpenAI routes under /v1.

Arguments (each also from the environment): --model-id (MODEL_ID), --revision (MODEL_REVISION), --host (HOST,
0.0.0.0), --port (PORT, 8000), --device (DEVICE, cpu); anything else is passed to `infinity_emb v2`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hf_serve_entrypoint import prepare_model  # type: ignore[import-not-found]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="infinity", add_help=True)
    parser.add_argument("--model-id", default=os.environ.get("MODEL_ID"))
    parser.add_argument("--revision", default=os.environ.get("MODEL_REVISION"))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - container server
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    parser.add_argument("--device", default=os.environ.get("DEVICE", "cpu"))
    args, extra = parser.parse_known_args(argv)
    snap = prepare_model("infinity", args.model_id, args.revision, Path(os.environ.get("HF_HOME", "/var/lib/hf")))
    if isinstance(snap, int):
        return snap
    os.environ["HF_HUB_OFFLINE"] = "1"
    command = [
        "infinity_emb",
        "v2",
        "--model-id",
        str(snap),
        "--served-model-name",
        args.model_id,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--url-prefix",
        "/v1",
        "--engine",
        "torch",
        "--device",
        args.device,
        "--no-bettertransformer",
    ]
    os.execvp(command[0], [*command, *extra])  # noqa: S606 - fixed program, no shell
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
