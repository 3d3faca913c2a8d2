# `sync` through a real ssh server (dropbear on 127.0.0.1:2222, OpenSSH's client) (issue 12):
# - push: five runs with writes and discards between them, the first full, the rest incremental;
#   after each, DST and its kept snapshot equal SRC's snapshot (sha256); --keep 2 leaves exactly two
#   sync snapshots per side, plus DST's kept base; --dry-run predicts the exact bytes of the next run;
# - pull: full, then incremental, into a local LV from the "remote" host.
# (95-sync-recovery.sh: a lost base, a modified DST, -r with a failing volume.)
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 256M 64k
vmt_thin_pool vga/pool2 128M 64k
vmt_thin_pool vgb/pool 256M 64k
vmt_thin_pool vgb/pool2 16M 64k
vmt_sshd
H=root@127.0.0.1
vmt_sync_helpers

lvcreate -q -V 64M -T vga/pool -n d
vmt_pattern_write /dev/vga/d 0 4000 d 1
for i in 1 2 3 4 5; do
  if [ "$i" -gt 1 ]; then
    vmt_pattern_write /dev/vga/d $((i * 700)) 300 d "$i"
    blkdiscard -o $(((i * 2 + 1) << 20)) -l $((1 << 20)) /dev/vga/d
  fi
  if [ "$i" = 5 ]; then
    tsync --dry-run --keep 2 --format json vga/d $H:vgb/d > dry.json || { cat dry.json; vmt_fail "--dry-run"; }
    cat dry.json
  fi
  t0=$(date +%s)
  tsync --keep 2 --format json vga/d $H:vgb/d > run$i.json || { cat run$i.json; vmt_fail "push run $i"; }
  cat run$i.json; echo "push run $i: $(($(date +%s) - t0)) s"
  want=incremental; [ "$i" = 1 ] && want=full
  vmt_assert_eq "$(field mode run$i.json)" "$want" "push run $i mode"
  equal "vga/$(field snapshot run$i.json)" vgb/d "push run $i"
  equal "vga/$(field snapshot run$i.json)" "vgb/$(field dst_snapshot run$i.json)" "push run $i, DST's snapshot"
  n=$(sync_snaps vga d | wc -l); m=$(sync_snaps vgb d | wc -l)
  want=$i; [ "$i" -gt 2 ] && want=2
  vmt_assert_eq "$n $m" "$want $want" "push run $i: sync snapshots on SRC and DST"
  lvs vgb/d_thinsend_base > /dev/null || vmt_fail "push run $i: no kept base on DST"
done
vmt_assert_eq "$(field stream_bytes dry.json)" "$(field stream_bytes run5.json)" "--dry-run predicted the bytes of run 5"
vmt_assert_eq "$(field base dry.json)" "$(field base run5.json)" "--dry-run predicted the base"
grep -q '"pruned_src":\["d_ts_' dry.json || vmt_fail "--dry-run does not say what would be pruned"
lvs -a vga vgb

# pull: SRC on the "remote" host, DST here (another source LV: its snapshots are its own)
lvcreate -q -V 32M -T vga/pool -n p
vmt_pattern_write /dev/vga/p 0 1000 p 1
tsync --format json $H:vga/p vgb/p > pull1.json || { cat pull1.json; vmt_fail "pull 1"; }
vmt_assert_eq "$(field mode pull1.json)" full "pull run 1 mode"
equal "vga/$(field snapshot pull1.json)" vgb/p "pull run 1"
vmt_pattern_write /dev/vga/p 100 50 p 2
tsync --format json $H:vga/p vgb/p > pull2.json || { cat pull2.json; vmt_fail "pull 2"; }
vmt_assert_eq "$(field mode pull2.json)" incremental "pull run 2 mode"
equal "vga/$(field snapshot pull2.json)" vgb/p "pull run 2"

lvs -a vga vgb
