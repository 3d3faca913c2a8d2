# Demo: two pools in two VGs on the two disks; reserve a metadata snapshot on one, check that
# `dmsetup status` shows the held root and that thin_dump -m reads it, then release it.
set -eux
vmt_two_vgs
for vg in vga vgb; do
  lvcreate -q --type thin-pool -L 64M --chunksize 128k --poolmetadatasize 4M --poolmetadataspare n -n pool $vg
  lvcreate -q -V 32M -T $vg/pool -n thin
  dd if=/dev/zero of=/dev/$vg/thin bs=128k count=8 conv=fsync 2>/dev/null
done
lvcreate -q -s -n snap vgb/thin
vmt_assert_eq "$(vmt_held_root vgb pool)" "-" "held root before reserve"
dmsetup message vgb-pool-tpool 0 reserve_metadata_snap
held=$(vmt_held_root vgb pool)
case $held in ''|-|*[!0-9]*) vmt_fail "no numeric held root after reserve: '$held'";; esac
echo "held metadata root: $held"
vmt_assert_eq "$(vmt_held_root vga pool)" "-" "other pool has no held root"
thin_dump -m "$(vmt_tmeta vgb pool)" > "$OUT/thin_dump-m.xml"
grep -q "metadata_snap=\"$held\"" "$OUT/thin_dump-m.xml" || echo "(note: thin_dump -m header does not name the held root)"
vmt_assert_eq "$(grep -c '<device ' "$OUT/thin_dump-m.xml")" 2 "devices in metadata snapshot"
dmsetup message vgb-pool-tpool 0 release_metadata_snap
vmt_assert_eq "$(vmt_held_root vgb pool)" "-" "held root after release"
