#!/usr/bin/env python3
"""llama.cpp's quantizer inside the llama.cpp image (runs in the image; the pipeline never imports it).

`python /opt/llama.cpp/quantize.py IN.gguf OUT.gguf TYPE [--threads N]` calls `llama_model_quantize` of the
libllama that llama-cpp-python ships (the function the `llama-quantize` tool wraps), so a GGUF quantized here is
quantized by exactly the llama.cpp release the image serves with. TYPE is a llama.cpp file type such as q8_0 or
q4_k_m. Where a tensor's rows do not fit the type's block size, llama.cpp falls back to another type and logs
it; those lines are on stderr. Exit 0 on success, 1 when llama.cpp reports a failure, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path


def ftypes() -> dict[str, int]:
    """Quant type name (lower case, e.g. q4_k_m) -> llama_ftype value, from the bindings' own constants."""
    import llama_cpp  # type: ignore[import-not-found]  # only inside the llama.cpp image

    prefix = "LLAMA_FTYPE_MOSTLY_"
    return {
        name[len(prefix) :].lower(): int(getattr(llama_cpp, name)) for name in dir(llama_cpp) if name.startswith(prefix)
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quantize", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("type")
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    args = parser.parse_args(argv)
    import llama_cpp

    known = ftypes()
    ftype = known.get(args.type.lower())
    if ftype is None:
        print(f"quantize: unknown type {args.type!r}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    if not args.source.is_file():
        print(f"quantize: {args.source} is not a file", file=sys.stderr)
        return 2
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = args.threads
    code = llama_cpp.llama_model_quantize(str(args.source).encode(), str(args.target).encode(), ctypes.byref(params))
    if code != 0:
        print(f"quantize: llama_model_quantize returned {code}", file=sys.stderr)
        return 1
    print(f"quantize: wrote {args.target} ({args.type}, {args.target.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
