#!/usr/bin/env bash
# train_segment.sh: one accelerator segment (torch + numpy only, no network, no pip).
#
#   usage: OUT=/path/to/out scripts/train_segment.sh BUDGET_S SUBSET CHECKPOINT
#
# Resumes from CHECKPOINT (an autoencoder checkpoint folder), trains in bf16 on the packed
# SUBSET (default train-subset/, made here beforehand by
# `python -m codec.train.pack CORPUS train-subset`, and carried to the machine) for
# BUDGET_S wall seconds in all (default 420, i.e. 7 min: under the 8-minute ceiling,
# start-up and the held-out check included), and writes into $OUT at most 8 files of
# at most 16 MiB: checkpoint.tar.NN parts, segment.json (steps, throughput, held-out
# loss before/after) and log.jsonl. Back here, join them with
#   python -m codec.train.segment merge FILES_DIR runs/segment
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
BUDGET=${1:-420}
SUBSET=${2:-train-subset}
CHECKPOINT=${3:?usage: train_segment.sh [BUDGET_S] [SUBSET] CHECKPOINT (an autoencoder checkpoint folder)}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
[ -f "$SUBSET/packed.json" ] || { echo "train_segment: no packed subset at $SUBSET" >&2; exit 3; }
[ -f "$CHECKPOINT/state.json" ] || { echo "train_segment: no checkpoint at $CHECKPOINT" >&2; exit 3; }
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu only")' >&2
exec "$PY" -m codec.train.segment run --subset "$SUBSET" --init-from "$CHECKPOINT" \
    --budget "$BUDGET" --out "$OUT" --device auto
