#!/usr/bin/env bash
# train_postfilter_segment.sh: one accelerator segment for the SHIPPED model (the transform
# coder): train its post-filter on a packed subset (torch + numpy only, no network, no pip).
#
#   usage: OUT=/path/to/out scripts/train_postfilter_segment.sh [BUDGET_S] [SUBSET] [RESUME]
#
# BUDGET_S (default 420) is the whole command's wall time; SUBSET (default train-subset/) is
# made here beforehand with `python -m codec.train.pack CORPUS train-subset` and carried along;
# RESUME is an earlier segment's postfilter.pt (default: a fresh 3-layer filter). Writes
# postfilter.pt (a few MiB) and segment.json (steps, held-out loss before/after) into $OUT.
# Back here: python -m codec.train.pf_segment merge OUT/postfilter.pt runs/pf-segment
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
BUDGET=${1:-420}
SUBSET=${2:-train-subset}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
[ -f "$SUBSET/packed.json" ] || { echo "train_postfilter_segment: no packed subset at $SUBSET" >&2; exit 3; }
RESUME=()
if [ -n "${3:-}" ]; then RESUME=(--resume "$3"); else RESUME=(--layers 3); fi
exec "$PY" -m codec.train.pf_segment run --subset "$SUBSET" --init codec/pretrained/aec-base \
    --budget "$BUDGET" --out "$OUT" --device auto "${RESUME[@]}"
