#!/bin/bash
# The real-kernel part of the test suite: the host check of testdata/kernel, then every scenario in
# tests/vm/scenarios in one VM boot with the release binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/vm/check-testdata.sh
[ -x target/release/thinsend-native ] || cargo build --release --quiet
T0=$(date +%s)
# What the LINBIT vectors must give on a 32 MiB LV (computed from their README's data rule).
read -r VMT_LINBIT_FULL_SHA VMT_LINBIT_DIFF_SHA < <(python3 tests/vm/linbit-expected.py 33554432)
export VMT_LINBIT_FULL_SHA VMT_LINBIT_DIFF_SHA
files=()
for f in testdata/linbit/*.stream; do files+=(--file "$f"); done
bash tests/vm/run-scenarios.sh --bin target/release/thinsend-native "${files[@]}" tests/vm/scenarios "$@"
echo "VM scenarios: $(( $(date +%s) - T0 )) s wall"
