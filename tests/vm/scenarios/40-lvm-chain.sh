# A full send and two incrementals, `thinsend-native send | thinsend-native recv`, from one pool to
# another, in both directions of chunk size (64 KiB -> 128 KiB and 1 MiB -> 64 KiB): after every
# step the target's sha256 equals the source snapshot's, discards on the source read as zeros on
# the target, the target's tags record the source, and the pool holds no metadata snapshot.
set -eu
vmt_two_vgs
vmt_thin_pool vga/p64 512M 64k
vmt_thin_pool vga/p1m 512M 1m
vmt_thin_pool vgb/p128 512M 128k
vmt_thin_pool vgb/q64 512M 64k

sha() { sha256sum "$1" | cut -d' ' -f1; }
same() { # LV_A LV_B WHAT: contents equal
  lvchange -q -ay -K "$1" "$2"
  a=$(sha "/dev/$1"); b=$(sha "/dev/$2")
  [ "$a" = "$b" ] || vmt_fail "$3: $1 ($a) != $2 ($b)"
  echo "ok: $3: $1 = $2 ($a)"
}
chain() { # SRC_POOL DST_POOL
  src=$1; dst=$2; o=vga/o_$src; r=vgb/r_$src
  lvcreate -q -V 96M -T "vga/$src" -n "o_$src"
  vmt_pattern_write "/dev/$o" 0 5000 "$o" 1            # ~20 MiB
  vmt_pattern_write "/dev/$o" 20000 17 "$o" 1          # unaligned tail
  lvcreate -q -s -n "s1_$src" "$o"
  thinsend-native send "vga/s1_$src" | thinsend-native recv --pool "vgb/$dst" "$r"
  same "vga/s1_$src" "$r" "full send $src -> $dst"
  lvs --noheadings -o tags "$r" | grep -q 'thinsend.src.' || vmt_fail "no state tag on $r"
  # change: rewrite, extend, discard (aligned to both chunk sizes, and partial)
  vmt_pattern_write "/dev/$o" 100 300 "$o" 2
  vmt_pattern_write "/dev/$o" 9000 500 "$o" 2
  blkdiscard -o $((4 << 20)) -l $((4 << 20)) "/dev/$o"
  blkdiscard -o $((1024 * 1024 + 4096 * 3)) -l $((8 << 20)) "/dev/$o" 2>/dev/null || true
  lvcreate -q -s -n "s2_$src" "$o"
  thinsend-native send "vga/s1_$src" "vga/s2_$src" | thinsend-native recv "$r"
  same "vga/s2_$src" "$r" "incremental 1 $src -> $dst"
  # a discarded range reads as zeros on the target
  z=$(dd if="/dev/$r" bs=1M skip=4 count=4 2>/dev/null | tr -d '\0' | wc -c)
  vmt_assert_eq "$z" 0 "discarded 4 MiB read as zeros on $r"
  vmt_pattern_write "/dev/$o" 3000 64 "$o" 3
  blkdiscard -o 0 -l $((2 << 20)) "/dev/$o"
  lvcreate -q -s -n "s3_$src" "$o"
  thinsend-native send "vga/s2_$src" "vga/s3_$src" | thinsend-native recv --snapshot "r_${src}_at_s3" "$r"
  same "vga/s3_$src" "$r" "incremental 2 $src -> $dst"
  same "vga/s3_$src" "vgb/r_${src}_at_s3" "--snapshot copy"
  vmt_assert_eq "$(vmt_held_root vga "$src")" "-" "no metadata snapshot left on vga/$src"
  lvs -a vgb | grep -q thinsend_tmp && vmt_fail "temporary LV left behind"
  return 0
}
chain p64 p128
chain p1m q64
# read from the pool's data device instead of the LV: same result, snapshot stays inactive
lvchange -q -an vga/s3_p64 vga/s2_p64
thinsend-native send --read-from pool-data vga/s2_p64 vga/s3_p64 > /tmp/inc.stream
lvs --noheadings -o lv_attr vga/s3_p64 | grep -q '^ *V....-' || vmt_fail "pool-data send activated the snapshot"
lvcreate -q -s -n r2 vgb/r_p64_at_s3
lvcreate -q -V 96M -T vgb/p128 -n fresh
thinsend-native send --read-from pool-data vga/s2_p64 | thinsend-native recv --force vgb/fresh
thinsend-native recv vgb/fresh < /tmp/inc.stream
same vga/s3_p64 vgb/fresh "pool-data reads"
# diff with LVM names prints thin_delta-style XML on stdout only
thinsend-native diff --changed-only vga/s1_p64 vga/s2_p64 > d.xml
grep -q '<different ' d.xml || vmt_fail "diff vg/a vg/b shows no change"
vmt_assert_eq "$(vmt_held_root vga p64)" "-" "no metadata snapshot left after diff"
