#!/bin/bash
# The whole test suite: installs what it needs, then formatting, lints, every cargo test (oracle,
# corruption, fuzz, round trips), the Debian package installed for real (unless THINSEND_SKIP_PACKAGE=1)
# and, unless THINSEND_SKIP_VM=1, the real-kernel scenarios in a VM.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Release binaries: the oracle and fuzz tests run many pools, and the VM runs the release build.
cargo build --workspace --release --quiet
cargo test --workspace --release 2>&1 | tee target/cargo-test.log
grep -q '^test result: FAILED' target/cargo-test.log && exit 1
# The Debian package, built, installed with apt-get, checked and removed (about a minute; root).
if [ "${THINSEND_SKIP_PACKAGE:-0}" != 1 ]; then
  bash tests/package-test.sh
fi
if [ "${THINSEND_SKIP_VM:-0}" != 1 ] && [ -x tests/vm/run-all.sh ]; then
  bash tests/vm/run-all.sh
fi
echo "test suite finished in $(( $(date +%s) - T0 )) s"
