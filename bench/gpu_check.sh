#!/usr/bin/env bash
# make gpu-check: the GPU path measured, in one table (bench/gpu_check.py says what each
# row measures). From a fresh clone:
#
#   bash bench/gpu_check.sh [flags of bench/gpu_check.py]      # or: make gpu-check ARGS=...
#   bash bench/gpu_check.sh --device cpu                       # the CPU path, small
#
# 1. Python: .venv made by `make setup` (the CPU build of torch on Linux), or $PYTHON as
#    it is (say an image's python that already has CUDA torch), with the project's other
#    packages installed into it if they are missing.
# 2. torch: when nvidia-smi sees a GPU and this torch cannot use it, the CUDA build
#    torch==$TORCH_VERSION from $TORCH_INDEX_URL; a clear message if that fails.
# 3. Small shards (the test suite's part of the sample data) in $SHARDS.
# 4. The table: python bench/gpu_check.py --shards $SHARDS "$@".
#
# Environment: PYTHON, TORCH_VERSION (2.13.0), TORCH_INDEX_URL (PyTorch's CUDA 13.0 wheel
# index; a machine with its own package mirror names the mirror's), WHEELS (a folder of
# wheel files: install from it alone, for a machine that reaches no registry), SHARDS
# (runs/gpu-check/shards).
set -euo pipefail
cd "$(dirname "$0")/.."
export GPU_CHECK_STARTED=${GPU_CHECK_STARTED:-$(date +%s)}  # gpu_check.py's --budget counts from here

TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu130}
SHARDS=${SHARDS:-runs/gpu-check/shards}
WHEELS=${WHEELS:-}
INPUTS=(dataengine/sample_data/sf_selfplay_200.pgn dataengine/sample_data/lichess_puzzles_300.csv
        dataengine/sample_data/openings_a.tsv)

say() { echo "gpu-check: $*" >&2; }
pip_from() {  # pip install from $WHEELS alone when it is set, else from the usual index
    if [ -n "$WHEELS" ]; then
        "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-build-isolation "$@"
    else
        "$PY" -m pip install -q "$@"
    fi
}

# -- 1. Python ------------------------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    if ! "$PY" -c 'import chess, numba, psutil, tqdm, webdataset, yaml, zarr, zstandard' 2>/dev/null; then
        say "installing the project's packages into $PY"
        pip_from -e . || { say "could not install the project's packages into $PY" \
            "(no registry here? put their wheels in a folder and set WHEELS=folder)"; exit 1; }
    fi
else
    make setup >&2 || { say "make setup failed; on a machine without a package registry, set" \
        "PYTHON=<a python with torch> and WHEELS=<folder of the project's wheels>"; exit 1; }
    PY=.venv/bin/python
fi

# -- 2. a CUDA build of torch where a GPU is visible ----------------------------------
want_gpu=1
case " $* " in *" --device cpu "*|*" --device=cpu "*) want_gpu=0 ;; esac
gpu_visible() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }
torch_cuda() { "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; }
if [ "$want_gpu" = 1 ] && gpu_visible && ! torch_cuda; then
    have=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)
    say "nvidia-smi sees $(nvidia-smi -L | head -1), but torch $have cannot use it:" \
        "installing torch==$TORCH_VERSION from $TORCH_INDEX_URL"
    if [ -n "$WHEELS" ]; then
        installed() { pip_from "torch==$TORCH_VERSION"; }
    else
        installed() { "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"; }
    fi
    if ! installed; then
        cat >&2 <<EOF
gpu-check: could not install a CUDA build of torch ($TORCH_VERSION from ${WHEELS:-$TORCH_INDEX_URL}).
  The GPU path cannot be measured with torch $have. Any one of these gets it:
    TORCH_INDEX_URL=<your mirror's CUDA wheel index> make gpu-check
    WHEELS=<folder with the CUDA torch wheel and its nvidia-* wheels> make gpu-check
    PYTHON=<a python whose torch sees the GPU> make gpu-check
  or measure the CPU path only: make gpu-check ARGS="--device cpu"
EOF
        exit 1
    fi
    torch_cuda || { say "torch $TORCH_VERSION is installed but torch.cuda.is_available() is" \
        "false: does its CUDA version match the driver's? (nvidia-smi)"; nvidia-smi >&2; exit 1; }
fi

# -- 3. small shards, 4. the table ------------------------------------------------------
"$PY" -m dataengine.build "${INPUTS[@]}" --out "$SHARDS" --quiet
exec "$PY" bench/gpu_check.py --shards "$SHARDS" "$@"
