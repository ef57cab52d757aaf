#!/usr/bin/env bash
# Mutation check: break the codec on purpose, one way at a time, and make sure a test notices.
#
#   bash scripts/mutants.sh              # every mutant against the tests meant to catch it
#   bash scripts/mutants.sh --suite      # every mutant against the whole default suite (slow)
#   bash scripts/mutants.sh NAME...      # only these mutants
#
# Each mutant is a monkeypatch from tests/mutants.py, switched on by AEC_MUTANT through
# tests/mutant_site/sitecustomize.py (in pytest and in every `aec` subprocess the tests
# start). No source file is edited. Prints one row per mutant (killed by which tests, or
# SURVIVED) and exits 1 if any mutant survived, or if the unmutated tests fail.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

declare -A TARGETS=(
  [decoder_gain_half]="tests/test_quality.py"
  [decoder_gain_double]="tests/test_quality.py"
  [decoder_silence]="tests/test_quality.py"
  [encoder_frame_shift]="tests/test_quality.py"
  [untrained_decoder]="tests/test_quality.py"
  [channel_swap]="tests/test_channels.py"
  [channel_mixdown]="tests/test_channels.py"
  [no_chunk_crc_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_canonical_varint_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_unknown_trailer_tag_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_trailer_size_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_index_records_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_index_sum_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_max_header_bytes_check]="tests/test_spec_musts.py tests/test_fuzz.py"
  [no_cdf_precision_check]="tests/test_spec_musts.py"
)

suite=0
names=()
for arg in "$@"; do
  case "$arg" in
    --suite) suite=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) names+=("$arg") ;;
  esac
done
if [ ${#names[@]} -eq 0 ]; then
  mapfile -t names < <(PYTHONPATH=tests "$PY" -m mutants)
fi

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

run_tests() {  # run_tests MUTANT TARGETS... -> pytest exit code; output in $log/MUTANT
  local name=$1; shift
  local -a args=(-q -rf -x -p no:cacheprovider --no-header)
  if [ "$suite" = 1 ]; then set -- ; fi
  AEC_MUTANT=${name#unmutated} PYTHONPATH="tests/mutant_site${PYTHONPATH:+:$PYTHONPATH}" \
    nice -n 10 "$PY" -m pytest "${args[@]}" "$@" >"$log/$name" 2>&1
}

start=$SECONDS
all_targets=$(printf '%s\n' "${TARGETS[@]}" | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$suite" = 1 ]; then all_targets=""; fi
# The unmutated tests must pass, or "killed" would mean nothing.
if ! run_tests unmutated $all_targets; then
  echo "the tests fail without any mutant:"; tail -20 "$log/unmutated"; exit 1
fi

survived=0
printf '%-30s %-9s %s\n' "mutant" "result" "first failing test"
for name in "${names[@]}"; do
  targets=${TARGETS[$name]:-}
  if [ -z "$targets" ] && [ "$suite" = 0 ]; then
    echo "no targets for mutant $name (add it to TARGETS in $0)"; exit 1
  fi
  run_tests "$name" $targets
  code=$?
  failing=$(grep -E '^(FAILED|ERROR) ' "$log/$name" | sed -E 's/^(FAILED|ERROR) //; s/ - .*//' \
            | sed -E 's#^tests/##' | tr '\n' ' ')
  if [ "$code" = 1 ] && [ -n "$failing" ]; then
    printf '%-30s %-9s %s\n' "$name" "killed" "$failing"
  elif [ "$code" = 0 ]; then
    printf '%-30s %-9s %s\n' "$name" "SURVIVED" "-"
    survived=$((survived + 1))
  else
    printf '%-30s %-9s %s\n' "$name" "ERROR" "pytest exit $code: $(tail -1 "$log/$name")"
    survived=$((survived + 1))
  fi
done
echo "mutation check: ${#names[@]} mutants, $survived survived, $((SECONDS - start)) s"
[ "$survived" = 0 ]
