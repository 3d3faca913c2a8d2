#!/bin/bash
# check-testdata.sh — verify testdata/kernel/ on the host, without a VM (a few seconds).
#
# Usage: tests/vm/check-testdata.sh [DIR]     (default: testdata/kernel)
#
# For every NAME.tmeta.gz: the host's thin-provisioning-tools, run on the gunzipped image, must
# reproduce byte for byte the oracle outputs computed in the guest on the live pool
# (NAME.thin_dump.xml, NAME.thin_dump-m.xml, NAME.thin_ls*.txt, every NAME.thin_delta*.A-B.xml,
# NAME.thin_check.txt); for every NAME.tdata.gz, each thin LV rebuilt from the dump and the data
# device must hash to what the guest read (NAME.sha256). Prints PASS/FAIL per check and
# "N passed, M failed"; exits 1 if any failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${1:-$HERE/../../testdata/kernel}
. "$HERE/lib.sh"
command -v thin_dump >/dev/null && command -v python3 >/dev/null || vm_install_pkgs thin-provisioning-tools python3
LSF=DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME

# thin tools open files with O_DIRECT, which tmpfs refuses: keep the images on a disk filesystem.
T=$(mktemp -d "${THINSEND_CHECK_TMP:-/var/tmp}/thinsend-check.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
ko() { echo "FAIL $*"; fail=$((fail + 1)); }
# same NAME EXPECTED_FILE CMD...: the command's stdout must equal the file
same() {
  local what=$1 exp=$2; shift 2
  if "$@" > "$T/out" 2> "$T/err" && cmp -s "$T/out" "$exp"; then ok "$what"
  else ko "$what: '$*' differs from $(basename "$exp") (or failed: $(head -c 300 "$T/err"))"
    diff "$exp" "$T/out" | head -n 10 | sed 's/^/    /' || true
  fi
}

shopt -s nullglob
imgs=("$DIR"/*.tmeta.gz)
[ ${#imgs[@]} -gt 0 ] || vm_die "no *.tmeta.gz in $DIR"
for gz in "${imgs[@]}"; do
  n=$(basename "$gz" .tmeta.gz)
  img=$T/$n.tmeta
  gunzip -c "$gz" > "$img"
  same "$n thin_dump" "$DIR/$n.thin_dump.xml" thin_dump "$img"
  same "$n thin_ls" "$DIR/$n.thin_ls.txt" thin_ls -o "$LSF" "$img"
  [ -f "$DIR/$n.thin_dump-m.xml" ] && same "$n thin_dump -m" "$DIR/$n.thin_dump-m.xml" thin_dump -m "$img"
  [ -f "$DIR/$n.thin_ls-m.txt" ] && same "$n thin_ls -m" "$DIR/$n.thin_ls-m.txt" thin_ls -m -o "$LSF" "$img"
  for f in "$DIR/$n".thin_delta*.xml; do
    b=$(basename "$f" .xml); kind=${b#"$n".thin_delta}; pair=${kind##*.}; kind=${kind%.*}
    args=()
    case $kind in *-m*) args+=(-m);; esac
    case $kind in *verbose*) args+=(--verbose);; esac
    same "$n thin_delta ${args[*]} $pair" "$f" thin_delta "${args[@]}" --snap1 "${pair%-*}" --snap2 "${pair#*-}" "$img"
  done
  same "$n thin_check" "$DIR/$n.thin_check.txt" sh -c 'thin_check "$1" 2>&1; echo "rc=$?"' sh "$img"
  if [ -f "$DIR/$n.tdata.gz" ]; then
    if python3 "$HERE/reconstruct-sha256.py" "$DIR/$n.thin_dump.xml" "$DIR/$n.tdata.gz" "$DIR/$n.sha256" > "$T/rec" 2>&1; then
      ok "$n thin LVs rebuilt from tmeta+tdata match the guest's sha256 ($(grep -c '^ok' "$T/rec") devices)"
    else ko "$n rebuild from tmeta+tdata:"; sed 's/^/    /' "$T/rec"; fi
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
