#!/bin/bash
# The real-kernel part of the test suite: the host check of testdata/kernel, then every scenario in
# tests/vm/scenarios in one VM boot with the release binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/vm/check-testdata.sh
[ -x target/release/thinsend-native ] || cargo build --release --quiet
T0=$(date +%s)
bash tests/vm/run-scenarios.sh --bin target/release/thinsend-native tests/vm/scenarios
echo "VM scenarios: $(( $(date +%s) - T0 )) s wall"
