# Demo: a thin pool, a thin LV, a thin snapshot; the snapshot keeps the old contents.
set -eux
pvcreate -q "$DISK1"
vgcreate -q vg1 "$DISK1"
lvcreate -q --type thin-pool -L 128M --chunksize 64k --poolmetadatasize 4M --poolmetadataspare n -n pool vg1
lvcreate -q -V 16M -T vg1/pool -n origin
vmt_pattern_write /dev/vg1/origin 0 256 origin 1
before=$(sha256sum < /dev/vg1/origin)
lvcreate -q -s -n snap vg1/origin
lvchange -q -ay -K vg1/snap
vmt_pattern_write /dev/vg1/origin 16 4 origin 2
vmt_assert_eq "$(sha256sum < /dev/vg1/snap)" "$before" "snapshot contents unchanged"
[ "$(sha256sum < /dev/vg1/origin)" != "$before" ] || vmt_fail "origin did not change"
vmt_assert_eq "$(vmt_thin_id vg1 origin) $(vmt_thin_id vg1 snap)" "1 2" "thin ids"
lvs -a -o lv_name,lv_attr,lv_size,thin_id,origin,pool_lv,data_percent vg1 | tee "$OUT/lvs.txt"
