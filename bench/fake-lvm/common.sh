# Shared by the fake lvs/dmsetup/thin_dump/thin_delta (sourced, not run). They stand in for LVM and
# device-mapper so that thin-send-recv's thin_send can run against a bench's pool without either.
#
# FAKE_LVM_CONF names a file of lines (words separated by blanks, no blanks inside a word):
#   vg NAME                   the one volume group
#   pool NAME META_FILE       the thin pool and the file that holds its metadata
#   lv NAME THIN_ID DEV_PATH  a thin LV of the pool and the path its lv_dm_path reports (what thin_send
#                             opens and reads: a loop device, or any file)
#   state DIR                 where dmsetup records that the metadata snapshot is reserved
# The pool's lv_dm_path is /dev/mapper/VG-POOL (nothing is created there: the pool is only a name
# that thin_send pastes into its dmsetup and thin tools command lines, and these fakes map it back).
fake() { echo "fake-lvm $(basename "$0"): $*" >&2; exit 5; }
[ -n "${FAKE_LVM_CONF:-}" ] && [ -r "$FAKE_LVM_CONF" ] || fake "FAKE_LVM_CONF is not set or not readable"
# conf KEY [NAME]: the words after KEY (and NAME) on the first line that starts with them
conf() {
  awk -v k="$1" -v n="${2:-}" '$1 == k && (n == "" || $2 == n) {
    s = n == "" ? 2 : 3; out = ""
    for (i = s; i <= NF; i++) out = out (i > s ? " " : "") $i
    print out; exit }' "$FAKE_LVM_CONF"
}
VG=$(conf vg)
read -r POOL META < <(conf pool) || true
STATE=$(conf state)
[ -n "$VG" ] && [ -n "$POOL" ] && [ -n "$META" ] && [ -n "$STATE" ] || fake "$FAKE_LVM_CONF needs vg, pool and state lines"
POOL_DM=/dev/mapper/$VG-$POOL
# real TOOL: the first TOOL on PATH that is not one of these fakes
real() {
  local d here
  here=$(cd "$(dirname "$0")" && pwd)
  IFS=: read -ra dirs <<<"$PATH"
  for d in "${dirs[@]}" /usr/sbin /sbin; do
    [ "$(cd "$d" 2>/dev/null && pwd)" = "$here" ] && continue
    [ -x "$d/$1" ] && { echo "$d/$1"; return; }
  done
  fake "no real $1 on PATH"
}
# tmeta PATH: META when PATH is the pool's metadata device as thin_send names it
tmeta() { [ "$1" = "${POOL_DM}_tmeta" ] || fake "unknown metadata device $1 (the pool's is ${POOL_DM}_tmeta)"; echo "$META"; }
reserved() { [ -e "$STATE/metadata_snap" ]; }
