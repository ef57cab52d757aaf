#!/usr/bin/env bash
# train_denoise.sh: (re)train the denoising encoder (aec encode --denoise) for a base model.
#
#   usage: scripts/train_denoise.sh CORPUS OUT [WEIGHTS]
#
# CORPUS is the training corpus (its train split is used), OUT a run folder (checkpoint,
# export), WEIGHTS the base model as `aec --weights` takes it (default: the shipped one).
# Three phases of `python -m codec.train.denoise`, all resumable (run the script again after
# an interruption): 12000 steps with 20 % clean examples, then 4000 more with 35 % clean
# (less harm to clean input), then a 6000-step fine-tune in OUT/finetune that adds the
# noise-floor feature and the per-frame strength head (config version 3) and trains on
# changed voices (25 % resampled, 30 % slowed down) so held vowels and unusual voices pass.
# The export writes two fixed encoding-time rules into the config (training ignores them):
# the clean pass-through (--pass-db, version 4) and the stationary-noise gain (--wiener, 5).
# The result is installed next to the base weights as NAME.denoise.safetensors, tied to that
# model's decoder SHA-256. About an hour on one CPU thread of a shared 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:?usage: scripts/train_denoise.sh CORPUS OUT [WEIGHTS]}
OUT=${2:?usage: scripts/train_denoise.sh CORPUS OUT [WEIGHTS]}
WEIGHTS=()
[ -n "${3:-}" ] && WEIGHTS=(--weights "$3")
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
"$PY" -m codec.train.denoise --data "$CORPUS" --out "$OUT" --steps 12000 "${WEIGHTS[@]}"
"$PY" -m codec.train.denoise --data "$CORPUS" --out "$OUT" --steps 16000 \
    --clean-share 0.35 "${WEIGHTS[@]}"
exec "$PY" -m codec.train.denoise --data "$CORPUS" --out "$OUT/finetune" --steps 6000 \
    --init-from "$OUT/checkpoint" --floor-frames 37 --strength-head --augment 0.25 \
    --stretch 0.3 --clean-share 0.35 --lr 5e-4 --pass-db 50 65 --wiener 2 0.05 75 9 3 \
    --install "${WEIGHTS[@]}"
