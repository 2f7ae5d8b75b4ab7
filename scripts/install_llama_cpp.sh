#!/usr/bin/env bash
# Benchmark-only: llama-cpp-python (built from its source distribution) for the llama.cpp rows of
# bench/speed.py; the version is model_cards.export's LLAMA_CPP_VERSION, whose converter makes the GGUF files.
# Not part of scripts/install.sh. Idempotent. The build takes ~10 CPU-minutes on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
VERSION=${LLAMA_CPP_PYTHON_VERSION:-$("$PY" -c 'from model_cards.export import LLAMA_CPP_VERSION; print(LLAMA_CPP_VERSION)')}
DEST=bench/.work/llama_cpp
mkdir -p "$DEST"
if [ ! -d "$DEST/llama_cpp_python-$VERSION" ]; then
    "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$DEST" "llama-cpp-python==$VERSION"
    tar -xzf "$DEST/llama_cpp_python-$VERSION.tar.gz" -C "$DEST"
fi
"$PY" -m pip install --quiet diskcache  # llama_cpp's runtime need
if ! "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    # CPU build; GGML_NATIVE optimises for this machine's instruction set.
    CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"} \
        "$PY" -m pip install --verbose --no-deps --no-build-isolation "$DEST/llama_cpp_python-$VERSION" \
        || "$PY" -m pip install --verbose --no-deps "$DEST/llama_cpp_python-$VERSION"
fi
echo "llama-cpp-python $("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)') installed"
