#!/usr/bin/env bash
# Install the external tools the rate-distortion bench compares against, and say
# what is there afterwards. Idempotent; a tool that fails to install is reported,
# never fatal: bench.rd skips a missing codec or metric with a warning.
#   Debian: opus-tools (opusenc/opusdec), lame, vorbis-tools (oggenc/oggdec), ffmpeg
#   PyPI (into .venv): pesq, pystoi, visqol-python, numba (ViSQOL runs 3-10x faster
#   with it, bit-exact)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
APT_PKGS="opus-tools lame vorbis-tools ffmpeg"
PIP_PKGS="pesq pystoi visqol-python numba"

install_apt() {
    if ! command -v apt-get >/dev/null; then
        echo "bench/setup.sh: no apt-get; install $APT_PKGS by hand" >&2; return
    fi
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null 2>&1 || echo "apt-get update failed" >&2
    for pkg in $APT_PKGS; do
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "$pkg" >/dev/null 2>&1 || echo "bench/setup.sh: apt-get install $pkg failed" >&2
    done
}

install_pip() {
    if [ ! -x "$PY" ]; then
        echo "bench/setup.sh: $PY missing; run scripts/setup.sh first" >&2; return
    fi
    for pkg in $PIP_PKGS; do
        "$PY" -m pip install -q --disable-pip-version-check "$pkg" >/dev/null 2>&1 \
            || echo "bench/setup.sh: pip install $pkg failed" >&2
    done
}

report() {
    echo "bench tools:"
    for tool in opusenc opusdec lame oggenc oggdec ffmpeg ffprobe; do
        if command -v "$tool" >/dev/null; then
            printf '  %-8s %s\n' "$tool" "$("$tool" --version 2>&1 | head -n 1)"
        else
            printf '  %-8s MISSING (codec skipped)\n' "$tool"
        fi
    done
    echo "bench metrics:"
    for mod in pesq pystoi visqol numba; do
        if "$PY" -c "import $mod" >/dev/null 2>&1; then
            printf '  %-8s ok\n' "$mod"
        else
            printf '  %-8s MISSING (metric skipped)\n' "$mod"
        fi
    done
}

check_metrics() {
    # Importing is not enough: score a real clip against a noisier copy of itself.
    [ -x "$PY" ] || return
    echo "bench metric smoke test (codec/data/sample.flac vs itself + noise):"
    "$PY" - <<'PYEOF' 2>&1 | sed 's/^/  /'
import numpy as np
import soundfile as sf
from bench.scoring import PerceptualMeters
audio, rate = sf.read("codec/data/sample.flac", dtype="float32")
audio = audio[: 4 * rate]
noisy = (audio + 0.003 * np.random.default_rng(0).standard_normal(audio.shape)).astype("float32")
meters = PerceptualMeters()
print("pesq-wb         %.2f" % meters.pesq_wb(audio, noisy, rate))
print("visqol speech   %.2f" % meters.visqol(audio, noisy, rate, speech=True)[0])
print("visqol audio    %.2f" % meters.visqol(audio, noisy, rate, speech=False)[0])
print("stoi            %.3f" % meters.stoi(audio, noisy, rate))
print("missing:", ", ".join(sorted(meters.missing)) or "none")
PYEOF
}

install_apt
install_pip
report
check_metrics
