#!/usr/bin/env bash
# make_corpus.sh: build the training corpus of real audio (speech, music, sound effects)
# from audio shipped inside Debian 12 (bookworm, main) packages. Needs root and the
# Debian package mirror only (apt-get download; no other network).
#
#   usage: scripts/make_corpus.sh OUTDIR [--narrowband] [--strict]
#                         [--sr 24000] [--channels 1|2] [--clip-sec 30] [--jobs N]
#                         [--cache DIR] [--music-cap-min 20] [--sfx-cap-min 15]
#                         [--speech-cap-min 0] [--no-apt-install]
#
#   --narrowband   also add the 8 kHz telephone-band Asterisk voice prompts and 8 kHz
#                  music-on-hold to TRAIN. Off by default: they carry nothing above 4 kHz.
#   --strict       drop fillets-ng-data-cs (Czech game dialogue, ~106 min of speech).
#   --sr/--channels output format (default 24000 Hz mono, 16-bit PCM WAV).
#   --clip-sec     longest clip; longer files are cut into near-equal pieces <= this.
#   --*-cap-min    TRAIN cap per (package, kind) in minutes (0 = no cap). Train music also
#                  keeps at most 120 s per track (evenly spaced pieces).
#   --cache        where .deb files and extracted audio are kept (default OUTDIR/.cache).
#
# Output: OUTDIR/train/{speech,music,sfx}/PKG/*.wav, OUTDIR/manifest.csv
# (path,split,kind,source_package,license,seconds,lang,orig_sr,orig_file,rms_dbfs,hf8k_db),
# OUTDIR/licenses/PKG.copyright, OUTDIR/SUMMARY.txt. Deterministic for a given package set.
# The held-out split is by source package, listed in codec/train/split.py (VALID_PACKAGES):
# their files stay under train/ (the loader splits by package) and the manifest marks
# them "valid". The logic lives in codec/train/corpus.py (tested without downloads).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
APT=1; ARGS=()
for a in "$@"; do
  case "$a" in
    --no-apt-install) APT=0;;
    -h|--help) sed -n '2,26p' "$0"; exit 0;;
    *) ARGS+=("$a");;
  esac
done
[ ${#ARGS[@]} -gt 0 ] || { echo "usage: $0 OUTDIR [options] (see --help)" >&2; exit 2; }

if [ "$APT" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  need=""
  for t in sox:sox ffmpeg:ffmpeg ffprobe:ffmpeg; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need="$need ${t#*:}"
  done
  [ -x /usr/bin/python3 ] || need="$need python3"
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy, soundfile' >/dev/null 2>&1 || need="$need python3-numpy python3-soundfile"
  dpkg -s libsox-fmt-all >/dev/null 2>&1 || need="$need libsox-fmt-all"
  apt-get update -qq      # package lists are needed by apt-get download too
  if [ -n "$need" ]; then
    echo "[make_corpus] apt-get install$need"
    apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
fi
# Debian's python3 (with python3-numpy, python3-soundfile), not the venv; only
# codec/train/corpus.py and codec/train/split.py are imported.
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec /usr/bin/python3 -m codec.train.corpus "${ARGS[@]}"
