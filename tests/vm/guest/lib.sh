# /usr/local/lib/vmtest.sh — helpers for guest scenarios (sourced before every scenario).
# Environment given to a scenario: OUT (write result files there), SCENARIO (its name),
# DISK1=/dev/vda, DISK2=/dev/vdb (empty pool disks, 4 GiB by default), cwd = a scratch dir.

# dm name of an LV: LVM doubles '-' inside VG and LV names.
vmt_dmname() { echo "$(echo "$1" | sed 's/-/--/g')-$(echo "$2" | sed 's/-/--/g')"; }

# vmt_pool_dm VG POOL: dm name of the thin-pool target: VG-POOL-tpool, or VG-POOL when the pool
# has no thin LVs (LVM then activates the pool LV itself as the thin-pool target).
vmt_pool_dm() {
  if dmsetup info "$(vmt_dmname "$1" "$2")-tpool" >/dev/null 2>&1; then echo "$(vmt_dmname "$1" "$2")-tpool"
  else vmt_dmname "$1" "$2"; fi
}

# vmt_pool_status VG POOL: the thin-pool status line (this also commits the pool's metadata,
# since dm-thin commits on a status request without --noflush).
vmt_pool_status() { dmsetup status "$(vmt_pool_dm "$1" "$2")"; }

# vmt_held_root VG POOL: the <held metadata root> field of the status ("-" when none).
vmt_held_root() { vmt_pool_status "$1" "$2" | awk '{print $7}'; }

vmt_tmeta() { echo "/dev/mapper/$(vmt_dmname "$1" "$2")_tmeta"; }
vmt_tdata() { echo "/dev/mapper/$(vmt_dmname "$1" "$2")_tdata"; }
vmt_thin_id() { lvs --noheadings -o thin_id "$1/$2" | tr -d ' '; }

vmt_fail() { echo "FAIL: $*" >&2; exit 1; }

# vmt_two_vgs: the two pool disks as the VGs vga (DISK1) and vgb (DISK2).
vmt_two_vgs() { pvcreate -q "$DISK1" "$DISK2" && vgcreate -q vga "$DISK1" && vgcreate -q vgb "$DISK2"; }
# vmt_thin_pool VG/POOL SIZE CHUNK: a thin pool with 8 MiB of metadata and no spare.
vmt_thin_pool() {
  lvcreate -q --type thin-pool -L "$2" --chunksize "$3" --poolmetadatasize 8M --poolmetadataspare n \
    -n "${1#*/}" "${1%/*}"
}
# vmt_assert_eq ACTUAL EXPECTED WHAT
vmt_assert_eq() { [ "$1" = "$2" ] || vmt_fail "$3: got '$1', expected '$2'"; echo "ok: $3 = '$1'"; }

# vmt_pattern_write DEV OFF4K COUNT4K TAG GEN
# Writes COUNT4K 4 KiB blocks at 4 KiB block offset OFF4K. Each block is one 64-byte text line
# "thinsend TAG blk4k=N gen=GEN" repeated 64 times: deterministic, unique per block and
# generation, and very compressible.
vmt_pattern_write() {
  local dev=$1 off=$2 n=$3 tag=$4 gen=$5 step=2048 c
  while [ "$n" -gt 0 ]; do
    c=$n; [ "$c" -gt $step ] && c=$step
    awk -v tag="$tag" -v off="$off" -v n="$c" -v gen="$gen" 'BEGIN {
      for (i = 0; i < n; i++) {
        l = sprintf("%-63s\n", sprintf("thinsend %s blk4k=%d gen=%d", tag, off + i, gen))
        for (k = 0; k < 6; k++) l = l l
        printf "%s", l
      } }' > /tmp/vmt_pattern.bin
    dd if=/tmp/vmt_pattern.bin of="$dev" bs=4096 seek="$off" conv=notrunc,fsync 2>/dev/null || return 1
    off=$((off + c)); n=$((n - c))
  done
  rm -f /tmp/vmt_pattern.bin
}

# Between scenarios (called by /init, PID 1): kill what the scenario left running (timeout only
# kills the scenario's shell), deactivate everything and wipe both pool disks.
vmt_cleanup() {
  local p k=0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    # kernel threads have no exe link
    if [ "$p" != 1 ] && [ -e "/proc/$p/exe" ]; then kill -9 "$p" 2>/dev/null && k=$((k + 1)); fi
  done
  [ $k = 0 ] || { echo "killed $k leftover processes"; sleep 0.2; }
  # file systems a failed scenario left mounted on device-mapper devices
  awk '$1 ~ /^\/dev\/(mapper|dm-|vg)/ {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null && echo "unmounted $m"
  done
  for d in $(dmsetup info -c --noheadings -o name 2>/dev/null); do dmsetup resume "$d" 2>/dev/null; done
  for vg in $(vgs --noheadings -o vg_name 2>/dev/null); do vgchange -an -q "$vg"; done
  dmsetup remove_all --force 2>/dev/null
  for d in /dev/vda /dev/vdb; do
    blkdiscard "$d" 2>/dev/null || dd if=/dev/zero of="$d" bs=1M count=16 conv=fsync 2>/dev/null
  done
  dmsetup ls
}

# vmt_sshd: an ssh server (dropbear) on 127.0.0.1:2222 with a generated host key, root logging in
# with a generated key. Sets VMT_SSH_CMD (an ssh command for --ssh-cmd / sync) and VMT_REMOTE_BIN
# (a wrapper that runs thinsend-native with the guest's environment, since ssh starts commands in a
# clean one).
vmt_sshd() {
  ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
  grep -q '^root:' /etc/passwd 2>/dev/null || echo 'root:x:0:0:root:/root:/bin/sh' >> /etc/passwd
  grep -q '^root:' /etc/group 2>/dev/null || echo 'root:x:0:' >> /etc/group
  [ -f /etc/shells ] || printf '/bin/sh\n' > /etc/shells
  mkdir -p /root/.ssh /etc/dropbear && chmod 700 /root /root/.ssh
  [ -f /root/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519
  cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
  cat > /usr/local/bin/thinsend-remote <<'W'
#!/bin/sh
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1 LVM_SUPPRESS_FD_WARNINGS=1
exec /usr/local/bin/thinsend-native "$@"
W
  chmod 755 /usr/local/bin/thinsend-remote
  dropbear -R -s -p 127.0.0.1:2222 -P /run/dropbear.pid || return 1
  VMT_SSH_CMD="ssh -p 2222 -i /root/.ssh/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
  VMT_REMOTE_BIN=/usr/local/bin/thinsend-remote
  i=0; until $VMT_SSH_CMD root@127.0.0.1 true 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 50 ] || { echo "vmt_sshd: ssh to 127.0.0.1:2222 does not work" >&2; return 1; }; sleep 0.2
  done
  echo "ok: sshd (dropbear) on 127.0.0.1:2222, root key login works"
}

# vmt_sync_helpers: the functions the sync scenarios share, defined in the caller's shell (after
# vmt_sshd): tsync (sync through the guest's ssh server), sha LV (activated, its sha256), field NAME
# FILE (a JSON field's value), sync_snaps VG LV (the sync snapshots of LV in VG, sorted) and equal
# SRC_SNAP DST_LV WHAT (their sha256 equal, or the scenario fails).
vmt_sync_helpers() {
  tsync() { thinsend-native sync --ssh-cmd "$VMT_SSH_CMD" --remote-bin "$VMT_REMOTE_BIN" "$@"; }
  sha() { lvchange -q -ay -K "$1"; sha256sum "/dev/$1" | cut -d' ' -f1; }
  field() { grep -o "\"$1\":[^,}]*" "$2" | head -1 | cut -d: -f2- | tr -d '"'; }
  sync_snaps() { lvs --noheadings -o lv_name -S "lv_tags=thinsend.sync.of.$2" "$1" | tr -d ' ' | sort; }
  equal() {
    a=$(sha "$1"); b=$(sha "$2")
    [ "$a" = "$b" ] || vmt_fail "$3: $2 ($b) != $1 ($a)"
    echo "ok: $3: $2 = $1 ($a)"
  }
}
