"""`python -m devstack.samples.convert OUT`: the SmolLM2 GGUF conversion, run as a child process."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack.samples.real import convert_smollm2

if __name__ == "__main__":
    convert_smollm2(Path(sys.argv[1]))
