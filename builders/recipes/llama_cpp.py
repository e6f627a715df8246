"""llama.cpp's image: llama-cpp-python's OpenAI-compatible server on CPU over a GGUF file, built here.

llama-cpp-python publishes only an sdist, so its wheel is compiled once on the host from the sdist the lock pins
by hash (`SOURCE_BUILD`; builders/local_wheels.py), portable to any x86-64 CPU with AVX2 (no -march=native),
without OpenMP (the base image has no libgomp) and without the llava library. The image also carries llama.cpp's
own converter (`convert_hf_to_gguf.py` with its `conversion` package and `gguf-py`, from the same sdist) with its
Python dependencies (the CPU torch, transformers 4.57.6 as llama.cpp's requirements pin it, sentencepiece,
protobuf) and the quantizer (`quantize.py`: libllama's `llama_model_quantize`), so GGUF files can be derived from
staged safetensors inside the image with no network (docs/images.md has the commands). How the server starts is
registry/runtimes/llama_cpp.py.
"""

from __future__ import annotations

from pathlib import Path

from builders.locks import build_lock_name, read_lock
from builders.recipes.base import SourceBuild, recipe_for
from builders.recipes.offline import CPU_TORCH_TRIM, ENTRYPOINT, ENTRYPOINT_LOCK_NAME, LOCAL_BASE_IMAGE, build_files
from registry.runtimes.interface import RUNTIME_VENV
from registry.runtimes.llama_cpp import RUNTIME

TOOLS_DIR = "/opt/llama.cpp"
CONVERTER = f"{TOOLS_DIR}/convert_hf_to_gguf.py"
QUANTIZER = f"{TOOLS_DIR}/quantize.py"
PYTHON = f"{RUNTIME_VENV}/bin/python"
# The server, plus what llama.cpp's requirements-convert_hf_to_gguf.txt asks for (torch: the local CPU build;
# gguf-py's own dependencies: numpy, tqdm, pyyaml, requests).
REQUIREMENTS = (
    f"llama-cpp-python[server]=={RUNTIME.version}",
    "torch==2.13.0",
    "transformers==4.57.6",
    "numpy~=2.2.6",
    "sentencepiece>=0.1.98,<0.3.0",
    "protobuf>=4.21.0,<5.0.0",
    "tqdm>=4.27",
    "pyyaml>=5.1",
    "requests>=2.25",
)
SOURCE_BUILD = SourceBuild(
    package="llama-cpp-python",
    env={"CMAKE_ARGS": "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF"},
    build_requirements=("scikit-build-core[pyproject]>=0.9.2", "cmake>=3.21", "ninja>=1.11"),
    sdist_files=("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/conversion", "vendor/llama.cpp/gguf-py"),
)
_QUANTIZE_SOURCE = (Path(__file__).resolve().parent / "llama_cpp_quantize.py").read_text(encoding="utf-8")

RECIPE = recipe_for(
    RUNTIME,
    base_image=LOCAL_BASE_IMAGE,
    build_files=build_files(
        RUNTIME,
        read_lock(ENTRYPOINT_LOCK_NAME),
        extra_files={"quantize.py": (_QUANTIZE_SOURCE, QUANTIZER)},
        sdist_dirs=((SOURCE_BUILD.package, TOOLS_DIR),),
        trim=CPU_TORCH_TRIM,
    ),
    requirements=REQUIREMENTS,
    lock=read_lock(RUNTIME.name),
    source_builds=(SOURCE_BUILD,),
    build_lock=read_lock(build_lock_name(RUNTIME.name)),
    entrypoint=ENTRYPOINT,
)
