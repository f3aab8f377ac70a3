#!/usr/bin/env bash
# The reliability fuzz tests (loaders, configs) under the `long` hypothesis profile (2000 random examples per test,
# not derandomized; profiles in tests/reliability/conftest.py), with hypothesis' per-test statistics. Run from the
# repository root; takes tens of minutes on 2 cores (the default `ci` profile takes seconds):
#   experiments/reliability/fuzz_long.sh                      # every fuzz test
#   experiments/reliability/fuzz_long.sh -k parquet           # extra pytest arguments, e.g. one test
# Writes the full log and a summary (examples tried per test) to $OUT (default outputs/reliability/fuzz-<time>/).
# Overridable: PYTEST (command), OUT (folder).
set -euo pipefail

PYTEST=${PYTEST:-.venv/bin/pytest}
OUT=${OUT:-outputs/reliability/fuzz-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
FILES=(tests/reliability/test_fuzz_loaders.py)
[[ -f tests/reliability/test_fuzz_configs.py ]] && FILES+=(tests/reliability/test_fuzz_configs.py)

echo "git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -Is)" \
  > "$OUT/summary.txt"
status=0
HYPOTHESIS_PROFILE=long "$PYTEST" "${FILES[@]}" -q --hypothesis-show-statistics "$@" \
  2>&1 | tee "$OUT/fuzz.log" || status=$?

# hypothesis prints, per test, "tests/...::test_x:", "- during generate phase (...)", "- N passing, M failing, ..."
awk '/^tests\/reliability\/.*::/ { test = $1; sub(/:$/, "", test) }
     /- during .* phase/ { phase = $3 }
     / passing, .* failing/ { gsub(/^ *- */, ""); print test " (" phase "): " $0 }' "$OUT/fuzz.log" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
exit "$status"
