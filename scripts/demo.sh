#!/usr/bin/env bash
# Set everything up, then encode and decode the bundled sample with the shipped weights
# and print the round-trip report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/aec roundtrip codec/data/sample.flac "$@"
