# verify and heal on real thin LVs (issue 13). A 1 GiB thin LV with 10% mapped is received into
# another pool; `verify` says equal and each side reads only its mapped blocks (the bytes read are
# printed and bounded by the mapped size, far below the volume). Then the source's snapshot that
# the replica is at is deleted (no incremental can follow) and the replica is damaged (a write and
# a discard): `verify` names the differences, `heal` repairs the replica from the newer snapshot
# without a common base, a second `verify` (BLAKE3) says equal, and an incremental `send` from the
# healed base is accepted, after which the sha256 match.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 1G 64k
vmt_thin_pool vgb/pool 1G 64k
lvcreate -q -V 1G -T vga/pool -n o
head -c $((2621 * 4096)) /dev/urandom > run.bin
i=0
while [ $i -lt 10 ]; do # 10 runs of 2621 x 4 KiB: 10% of the volume
  dd if=run.bin of=/dev/vga/o bs=4096 seek=$((i * 26214)) conv=notrunc,fsync 2>/dev/null
  i=$((i + 1))
done
lvcreate -q -s -n s1 vga/o
thinsend-native send vga/s1 | thinsend-native recv --quiet --pool vgb/pool vgb/r

sha() { sha256sum "$1" | cut -d' ' -f1; }
same() { # LV_A LV_B WHAT: contents equal
  lvchange -q -ay -K "$1" "$2"
  a=$(sha "/dev/$1"); b=$(sha "/dev/$2")
  [ "$a" = "$b" ] || vmt_fail "$3: $1 ($a) != $2 ($b)"
  echo "ok: $3: $1 = $2 ($a)"
}
read_bytes() { # WHICH FILE: bytes verify --stats says it read of the source or the replica
  sed -n "s/.*read \([0-9]*\) bytes of the source, \([0-9]*\) bytes of the replica.*/\1 \2/p" "$2" |
    awk -v w="$1" '{ print (w == "source") ? $1 : $2 }'
}

thinsend-native verify --stats vga/s1 vgb/r > out.txt 2> stats.txt || vmt_fail "fresh replica: $(cat out.txt stats.txt)"
cat out.txt stats.txt
src=$(read_bytes source stats.txt); rep=$(read_bytes replica stats.txt)
echo "verify of a 1 GiB volume with 10% mapped read $src bytes of the source and $rep of the replica"
mapped=$((10 * 2621 * 4096))
for x in "$src" "$rep"; do
  [ "$x" -ge "$mapped" ] && [ "$x" -le $((mapped + 10 * 65536)) ] ||
    vmt_fail "read $x bytes: not the mapped bytes ($mapped, rounded out to 64 KiB chunks)"
done

# a newer snapshot, the old base deleted on the source, the replica damaged
vmt_pattern_write /dev/vga/o 100000 500 o 2
lvcreate -q -s -n s2 vga/o
lvremove -q -f vga/s1
lvchange -q -ay vgb/r
vmt_pattern_write /dev/vgb/r 5000 10 tamper 9
blkdiscard -o $((78642 * 4096)) -l $((1 << 20)) /dev/vgb/r
lvchange -q -an vgb/r
if thinsend-native verify vga/s2 vgb/r > out.txt 2> err.txt; then vmt_fail "damaged replica: equal"; fi
cat out.txt err.txt
vmt_assert_eq "$(head -1 out.txt | cut -d: -f1)" "differ" "verify reports differences"
grep -q "^$((5000 * 4096 / 65536 * 65536)) " out.txt || vmt_fail "the write at 4 KiB block 5000 is not named"

thinsend-native heal --stats vga/s2 vgb/r > heal.txt 2> err.txt || vmt_fail "heal: $(cat heal.txt err.txt)"
cat heal.txt err.txt
grep -q "^healed: sent" heal.txt || vmt_fail "heal reports no bytes sent"
thinsend-native verify --hash blake3 vga/s2 vgb/r || vmt_fail "verify after heal"
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "temporary LV left behind"
lvs --noheadings -o tags vgb/r | grep -q thinsend.src || vmt_fail "the healed replica records no base"

# the healed replica is at s2: an incremental from s2 is accepted
vmt_pattern_write /dev/vga/o 200000 100 o 3
lvcreate -q -s -n s3 vga/o
thinsend-native send vga/s2 vga/s3 | thinsend-native recv --quiet vgb/r
same vga/s3 vgb/r "incremental from the healed base (sha256)"
vmt_assert_eq "$(vmt_held_root vga pool)" "-" "no metadata snapshot left on vga/pool"
vmt_assert_eq "$(vmt_held_root vgb pool)" "-" "no metadata snapshot left on vgb/pool"
