#!/usr/bin/env bash
# Install vec and everything it needs into ./.venv (idempotent; `make` calls it when .venv is missing).
#
# PyTorch: on a fresh x86_64 Linux machine whose pip finds no usable torch, this installs the pair
# VEC_TORCH_PAIR (default torch==2.14.1 torchvision==0.29.1, which this project's build machine has on local
# disk; timm needs torchvision, and PyPI's torchvision does not import beside a CPU-only torch 2.13). Users
# with GPUs set VEC_TORCH_PAIR to their own pair, or pre-install torch: pyproject only asks for torch>=2.4.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)

if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    case "$(uname -m)" in
        aarch64) default_pair="torch==2.9.1 torchvision==0.24.1" ;;
        *) default_pair="torch==2.14.1 torchvision==0.29.1" ;;
    esac
    # shellcheck disable=SC2086  # the pair is two words on purpose
    "${PIP[@]}" install ${VEC_TORCH_PAIR:-$default_pair} 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import torch, torchvision" || { echo "torch/torchvision failed to install" >&2; exit 1; }
fi
"${PIP[@]}" install -e ".[dev,distributed]" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import vecstore, ingest, query, faiss, duckdb, fitsio, timm" \
    || { echo "vec failed to install" >&2; exit 1; }
echo "vec installed in $VENV"
