#!/bin/bash
# Wall time of the README's first command in a fresh clone: the install, then the quick pipeline.
#   benchmarks/first_command.sh [REPOSITORY] [WORKDIR]     (defaults: this checkout, a new temporary directory)
# The SPEEDY record is simulated unless ~/.cache/sparta/speedy holds it (then it is prepared in seconds).
set -euo pipefail
repo=${1:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}
work=${2:-$(mktemp -d)}
git clone -q "$repo" "$work/sparta" && cd "$work/sparta"
t0=$(date +%s)
python3 -m venv .venv && . .venv/bin/activate && pip install -q torch==2.13.0 && pip install -q -e .
t1=$(date +%s)
sparta reproduce --preset quick --only sparta,autoencoder,pca --out runs/quick > reproduce.log 2>&1
t2=$(date +%s)
echo "install $((t1 - t0)) s, pipeline $((t2 - t1)) s, total $((t2 - t0)) s ($work/sparta, log reproduce.log)"
