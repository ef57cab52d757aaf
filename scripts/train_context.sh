#!/usr/bin/env bash
# train_context.sh: (re)train the context model (codec/context, aec generate, bench.context_bits)
# for the shipped codec model, as the shipped network version 3 was trained.
#
#   usage: scripts/train_context.sh CORPUS OUT [CACHE]
#
# CORPUS is the corpus (only its train split is read), OUT a run folder (one subfolder per
# stage, each with its checkpoint and val.jsonl), CACHE the symbol cache (default
# runs/context-cache; about 10 minutes to extract 150 minutes of 6 kbps symbols once).
# Six stages of `python -m codec.context.train`, each starting from the one before
# (--init; a layer a stage adds starts fresh, or at zero where it reads new inputs):
#   v2   2400 steps, 2 passes per frame (network version 2's recipe)
#   p4   1200 steps, 4 passes coarse to fine + the reach layers (the shipped run was
#        stopped at step 681 of these 1200)
#   s1    900 steps, + past signs and a steady tone's recurrence as features
#   s2    600 steps, + a two-frame fit of the recurrence and a direct sign term
#   s3    700 steps, the same again
#   s4    700 steps, the same again; then the two side models (3000 steps each) and the
#         export to codec/pretrained/aec-base.context.* (tied to the decoder's SHA-256).
# All resumable: run the script again after an interruption. About 115 minutes on one
# thread of a shared 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:?usage: scripts/train_context.sh CORPUS OUT [CACHE]}
OUT=${2:?usage: scripts/train_context.sh CORPUS OUT [CACHE]}
CACHE=${3:-runs/context-cache}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
train() { "$PY" -m codec.context.train --data "$CORPUS" --cache "$CACHE" --hidden 48 "$@"; }
train --out "$OUT/v2" --passes 2 --steps 2400 --noise-steps 0
train --out "$OUT/p4" --passes 4 --reach 1 --init "$OUT/v2/checkpoint" --lr 1e-3 \
    --steps 1200 --noise-steps 0
train --out "$OUT/s1" --passes 4 --reach 1 --signs 1 --init "$OUT/p4/checkpoint" --lr 1e-3 \
    --steps 900 --noise-steps 0
train --out "$OUT/s2" --passes 4 --reach 1 --signs 2 --init "$OUT/s1/checkpoint" --lr 1e-3 \
    --steps 600 --noise-steps 0
train --out "$OUT/s3" --passes 4 --reach 1 --signs 2 --init "$OUT/s2/checkpoint" --lr 1e-3 \
    --steps 700 --noise-steps 0
train --out "$OUT/s4" --passes 4 --reach 1 --signs 2 --init "$OUT/s3/checkpoint" --lr 1e-3 \
    --steps 700 --export
