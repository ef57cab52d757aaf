#!/usr/bin/env bash
# Create .venv (if missing) and install aec with its test and bench extras.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "aec needs Python 3.11 or newer ($PY is $("$PY" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || {
        # Debian ships venv separately.
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            "$PY" -m venv .venv
        else
            echo "python3 -m venv failed: install python3-venv" >&2; exit 1
        fi
    }
fi
# libsndfile ships inside the soundfile wheel; nothing else is needed from Debian.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
