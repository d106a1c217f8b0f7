#!/usr/bin/env bash
# fuzz.sh [FUZZTIME]: run every fuzz target of the module for FUZZTIME each
# (default 10s). Targets are found by their declarations, so a new
# `func FuzzXxx(f *testing.F)` in any *_test.go is included without edits.
# New failing inputs are written to the package's testdata/fuzz/ (commit them).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-10s}
found=0
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  found=$((found + 1))
  echo "fuzz: $name in $pkg for $fuzztime"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"  </dev/null
done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . \
           | sed -e 's|^\./||' -e 's|:func |:|' | sort)

if [ "$found" -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi
echo "fuzz: $found targets passed"
