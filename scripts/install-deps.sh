#!/bin/bash
# Installs what building and testing need on a fresh Debian 12 machine: Debian's
# thin-provisioning-tools (the test oracle: thin_dump, thin_delta, thin_ls, thin_restore, thin_check),
# xfsprogs (recv tests and bench mount a loop XFS to have reflink), zstd (bench/compress.sh compares
# the built-in compression with a `zstd -T0` pipeline), and for tests/package-test.sh (the .deb
# installed for real) man-db and bash-completion.
# The VM harness (tests/vm) installs qemu, lvm2 and the kernel itself, privately and cached.
set -euo pipefail
need=()
for p in thin-provisioning-tools xfsprogs zstd man-db bash-completion; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo (Rust stable) is required" >&2; exit 1; }
