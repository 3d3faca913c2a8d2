# testdata-scenario.sh — guest scenario behind testdata/kernel/ (run by tests/vm/make-testdata.sh).
#
# Builds several small LVM thin pools in one VG on $DISK1 with a real kernel, then for each pool
# writes to $OUT: the raw _tmeta (NAME.tmeta), for some pools the raw _tdata (NAME.tdata), lvs
# JSON, sha256 of every thin LV, and oracle outputs of thin-provisioning-tools 0.9.0.
# Offsets below are in 4 KiB blocks (the unit of vmt_pattern_write); C64 = 4 KiB blocks per
# 64 KiB chunk etc. Data written to pools whose _tdata is kept is deterministic text (see
# vmt_pattern_write in tests/vm/guest/lib.sh), never random.
set -eux

pvcreate -q "$DISK1"
vgcreate -q vg "$DISK1"

lvcreate -q -L 4M -n scratch vg                        # see collect()
C64=16; C1M=256

# Every operation is also logged, with thin ids, to $OUT/POOL.events.txt (POOL = the pool made
# last by mkpool); thin/snap assert the thin id LVM gives (LVM uses max(existing id)+1).
ev() { echo "$*" >> "$OUT/$CUR.events.txt"; }
mkpool() {  # mkpool NAME DATA_SIZE CHUNK
  CUR=$1
  lvcreate -q --type thin-pool -L "$2" --chunksize "$3" --poolmetadatasize 4M \
    --poolmetadataspare n -Zy -n "$1" vg
  ev "pool $1 data=$2 chunk=$3 metadata=4M zeroing=y"
}
id_of() { vmt_thin_id vg "$1"; }
thin() {    # thin POOL LV SIZE EXPECTED_ID
  lvcreate -q -V "$3" -T "vg/$1" -n "$2"
  vmt_assert_eq "$(id_of "$2")" "$4" "thin id of $2"
  ev "create_thin id=$4 lv=$2 size=$3"
}
snap() {    # snap ORIGIN NEW EXPECTED_ID (LVM sets the skip-activation flag)
  lvcreate -q -s -n "$2" "vg/$1"
  vmt_assert_eq "$(id_of "$2")" "$3" "thin id of $2"
  ev "create_snap id=$3 lv=$2 origin=$1 origin_id=$(id_of "$1")"
}
del() { local id; id=$(id_of "$1"); lvremove -q -f "vg/$1"; ev "delete id=$id lv=$1"; }
act() { lvchange -q -ay -K "vg/$1"; }
reserve() {
  dmsetup message "$(vmt_pool_dm vg "$1")" 0 reserve_metadata_snap
  ev "reserve_metadata_snap held_root=$(vmt_held_root vg "$1")"
}
# w POOL LV OFF4K N4K GEN: deterministic text naming pool/LV, 4 KiB block and generation.
w() {
  vmt_pattern_write "/dev/vg/$2" "$3" "$4" "$1/$2" "$5"
  ev "write id=$(id_of "$2") lv=$2 off4k=$3 n4k=$4 gen=$5 (text pattern)"
}
# z LV BS SEEK COUNT: zeros, dd units of BS
z() {
  dd if=/dev/zero of="/dev/vg/$1" bs="$2" seek="$3" count="$4" conv=fsync 2>/dev/null
  ev "write id=$(id_of "$1") lv=$1 bs=$2 seek=$3 count=$4 (zeros)"
}
discard() {  # discard LV OFF_BYTES LEN_BYTES
  blkdiscard -o "$2" -l "$3" "/dev/vg/$1"
  ev "discard id=$(id_of "$1") lv=$1 offset=$2 length=$3 (bytes)"
}

# ---------------------------------------------------------------- snapchain (tdata, held)
# 64 KiB chunks, 64 MiB data. origin has > 252 mappings (2-level bottom tree); snapshot chain
# with a snapshot of a snapshot; a device deleted before and one after the reserve; after the
# reserve the live trees move on (writes, discards, deletes, and a new snapshot that REUSES the
# id of a device deleted after the reserve: id 7 is "recycled" in -m and "snap3" live).
mkpool snapchain 64M 64k
thin snapchain origin 48M 1
thin snapchain empty 48M 2                             # never written
thin snapchain doomed 48M 3                            # deleted after the reserve
thin snapchain gone 48M 4                              # deleted before the reserve
w snapchain origin 0 $((400 * C64)) 1                  # chunks 0-399
w snapchain origin $((600 * C64)) $((10 * C64)) 1      # chunks 600-609
w snapchain doomed 0 $((20 * C64)) 1
w snapchain doomed $((100 * C64 + 5)) 1 1              # sub-chunk write into fresh chunk 100
w snapchain gone 0 $((8 * C64)) 1
del gone
snap origin snap1 4                                    # id 4 again (max existing + 1)
w snapchain origin $((10 * C64)) $((4 * C64)) 2        # overwrite chunks 10-13
w snapchain origin $((200 * C64 + 3)) 1 2              # 4 KiB into shared chunk 200 (CoW)
w snapchain origin $((700 * C64)) $((5 * C64)) 2       # new chunks 700-704
snap origin snap2 5
act snap1
snap snap1 snap1a 6                                    # snapshot of a snapshot
w snapchain snap1 $((50 * C64)) $((3 * C64)) 3         # snap1 diverges from snap1a
w snapchain snap1 $((740 * C64)) $((2 * C64)) 3
w snapchain origin $((300 * C64)) $((2 * C64)) 3
thin snapchain recycled 48M 7
w snapchain recycled $((30 * C64)) $((4 * C64)) 3
reserve snapchain
w snapchain origin $((20 * C64)) $((6 * C64)) 4        # after the reserve
w snapchain origin $((650 * C64)) $((3 * C64)) 4
del recycled
snap origin snap3 7                                    # reuses id 7
act snap2
discard snap2 $((100 * 65536)) $((32 * 65536))         # chunks 100-131 unmapped
discard snap2 $((140 * 65536 + 4096)) $((3 * 65536))   # unaligned: partial 140/143, whole 141-142
del doomed
act snap1a
w snapchain snap1a $((5 * C64 + 1)) 1 4                # sub-chunk write into shared chunk 5

# ---------------------------------------------------------------- bigchunk (tdata, no held snap)
# 1 MiB chunks, 64 MiB data, sub-chunk writes (zeroing on), snapshot of a snapshot, discard,
# deleted device, device without mappings.
mkpool bigchunk 64M 1m
thin bigchunk vol 24M 1
thin bigchunk zero 24M 2                               # never written
thin bigchunk tmp 24M 3                                # deleted
w bigchunk vol 0 $((6 * C1M)) 1                        # chunks 0-5
w bigchunk vol $((10 * C1M + 7)) 1 1                   # 4 KiB in fresh chunk 10
w bigchunk vol $((20 * C1M)) $((2 * C1M)) 1            # chunks 20-21
w bigchunk tmp 0 $C1M 1
snap vol s1 4
w bigchunk vol $((2 * C1M + 100)) 2 2                  # 8 KiB into shared chunk 2 (CoW of 1 MiB)
w bigchunk vol $((12 * C1M)) $C1M 2                    # new chunk 12
act s1
snap s1 s1s 5
w bigchunk s1 $((4 * C1M)) $C1M 3
w bigchunk s1 $((23 * C1M + 255)) 1 3                  # last 4 KiB of the LV
discard vol $((20 * 1048576)) $((2 * 1048576))         # chunks 20-21 unmapped
del tmp

# ---------------------------------------------------------------- manymap (held, no tdata)
# 64 KiB chunks, ~3000 mappings in one device (many leaves under one internal root); after a
# snapshot only a middle range is rewritten, so most leaves stay shared with the snapshot.
mkpool manymap 320M 64k
thin manymap mm 512M 1
z mm 64k 0 2000                                        # chunks 0-1999
z mm 64k 3000 1000                                     # chunks 3000-3999
snap mm mm_s1 2
z mm 64k 500 300                                       # chunks 500-799 rewritten
snap mm mm_s2 3
reserve manymap
z mm 64k 4000 100                                      # new chunks 4000-4099
z mm 64k 1500 1                                        # one CoW
act mm_s1
discard mm_s1 $((1000 * 65536)) $((200 * 65536))       # chunks 1000-1199
act mm_s2
snap mm_s2 mm_s3 4

# ---------------------------------------------------------------- sparse128k (no held, no tdata)
# 128 KiB chunks, huge virtual sizes with writes near the end (large virtual block numbers),
# scattered single chunks, a snapshot chain of depth 4, deleted devices (holes in the ids),
# a device without mappings.
mkpool sparse128k 128M 128k
thin sparse128k huge 1T 1
thin sparse128k mid 8G 2
thin sparse128k nomap 1G 3                             # never written
thin sparse128k del1 1G 4
thin sparse128k del2 1G 5
for s in 0 8192 819200 8388600; do                     # 1 TiB = 8388608 chunks of 128 KiB
  z huge 128k $s 8
done
i=0; while [ $i -lt 40 ]; do                           # 40 scattered chunks
  z mid 128k $((i * 1597 + 3)) 1
  i=$((i + 1))
done
z del1 128k 0 4
z del2 128k 100 4
del del1
snap mid c1 6                                          # chain mid <- c1 <- c2 <- c3 <- c4
z mid 128k 3 1
act c1; snap c1 c2 7
z c1 128k 1600 1
act c2; snap c2 c3 8
z c2 128k 3197 2
act c3; snap c3 c4 9
act c4
z c4 128k 60000 1
del del2
thin sparse128k late 1G 10
z late 4k 1 1                                          # 4 KiB into a fresh 128 KiB chunk

# ---------------------------------------------------------------- fresh (held, nothing after)
# Held metadata snapshot identical to the live state; devices without mappings.
mkpool fresh 32M 64k
thin fresh blank 16M 1
snap blank blanksnap 2
reserve fresh

# ---------------------------------------------------------------- nodevs (no thin devices)
mkpool nodevs 32M 64k

# ---------------------------------------------------------------- manydevs (held, no tdata)
# > 252 thin devices (top-level mapping tree and details tree both get 2 levels). All devices
# but "base" are made with raw pool messages, bypassing LVM, so lvs.json lists only "base"
# (LVM's own transaction id is untouched).
mkpool manydevs 64M 64k
thin manydevs base 16M 1
w manydevs base 0 $((3 * C64)) 1
lvchange -q -an vg/base
TP=vg-manydevs-tpool
id=100; while [ $id -lt 370 ]; do
  if [ $((id % 10)) = 5 ]; then dmsetup message $TP 0 "create_snap $id 1"
  else dmsetup message $TP 0 "create_thin $id"; fi
  id=$((id + 1))
done
ev "raw messages: create_thin 100..369, except create_snap ID 1 for every ID ending in 5"
for id in 101 200 369; do                              # give a few raw devices mappings
  dmsetup create "t$id" --table "0 32768 thin /dev/mapper/$TP $id"
  dd if=/dev/zero of="/dev/mapper/t$id" bs=64k seek=$((id % 7)) count=3 conv=fsync 2>/dev/null
  dmsetup remove "t$id"
  ev "write id=$id bs=64k seek=$((id % 7)) count=3 (zeros, raw thin target)"
done
reserve manydevs
for id in 102 103 104 250; do dmsetup message $TP 0 "delete $id"; ev "raw message: delete $id"; done
dmsetup message $TP 0 "create_snap 400 101"
ev "raw message: create_snap 400 101"

# ---------------------------------------------------------------- collect
# collect POOL TDATA(0|1) "PAIRS" "MPAIRS": PAIRS are thin_delta "ID1-ID2" pairs for the live
# trees, MPAIRS for the held metadata snapshot (-m). Non -m tools cannot open the live _tmeta
# (the pool holds it exclusively: EBUSY), so they run on the dd copy, put on a scratch linear LV
# (they open with O_DIRECT, which the initramfs tmpfs refuses); -m ones run on the live device.
collect() {
  pool=$1 tdata=$2 pairs=$3 mpairs=$4
  o=$OUT/$pool tp=$(vmt_pool_dm vg "$pool") tm=/dev/mapper/vg-${pool}_tmeta
  lvs --reportformat json -a -o lv_name,lv_attr,lv_size,thin_id,origin,pool_lv,chunk_size,lv_uuid,vg_name \
    -S "pool_lv=$pool || lv_name=~^$pool" vg > "$o.lvs.json"
  if [ "$tdata" = 1 ]; then
    : > "$o.sha256"
    lvs --noheadings --units b --nosuffix -o lv_name,thin_id,lv_size -S "pool_lv=$pool" vg |
    while read -r lv id size; do
      act "$lv"
      echo "$(sha256sum < "/dev/vg/$lv" | cut -d' ' -f1) $id $lv $size" >> "$o.sha256"
    done
  fi
  sync
  dmsetup status "$tp" > "$o.dmsetup_status.txt"      # also commits the pool's metadata
  blockdev --flushbufs "$tm"
  dd if="$tm" of="$o.tmeta" bs=1M iflag=direct 2>/dev/null
  if [ "$tdata" = 1 ]; then
    blockdev --flushbufs "/dev/mapper/vg-${pool}_tdata"
    dd if="/dev/mapper/vg-${pool}_tdata" of="$o.tdata" bs=1M iflag=direct 2>/dev/null
  fi
  dd if="$o.tmeta" of=/dev/vg/scratch bs=1M oflag=direct 2>/dev/null
  c=/dev/vg/scratch
  thin_dump "$c" > "$o.thin_dump.xml"
  thin_ls -o "$LSF" "$c" > "$o.thin_ls.txt"
  sh -c 'thin_check "$1"; echo "rc=$?"' sh "$c" > "$o.thin_check.txt" 2>&1
  for p in $pairs; do
    thin_delta --snap1 "${p%-*}" --snap2 "${p#*-}" "$c" > "$o.thin_delta.$p.xml"
    thin_delta --verbose --snap1 "${p%-*}" --snap2 "${p#*-}" "$c" > "$o.thin_delta-verbose.$p.xml"
  done
  case $(awk '{print $7}' "$o.dmsetup_status.txt") in -) ;; *)
    thin_dump -m "$tm" > "$o.thin_dump-m.xml"
    thin_ls -m -o "$LSF" "$tm" > "$o.thin_ls-m.txt"
    for p in $mpairs; do
      thin_delta -m --snap1 "${p%-*}" --snap2 "${p#*-}" "$tm" > "$o.thin_delta-m.$p.xml"
      thin_delta -m --verbose --snap1 "${p%-*}" --snap2 "${p#*-}" "$tm" > "$o.thin_delta-m-verbose.$p.xml"
    done
    # the same -m tools on the copy must agree with the live device
    thin_dump -m "$c" | cmp - "$o.thin_dump-m.xml"
  esac
}
LSF=DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME

lvs -a -o lv_name,lv_attr,lv_size,thin_id,origin,pool_lv,chunk_size,data_percent,metadata_percent vg
collect snapchain 1 "1-4 4-6 4-5 5-1 1-7 1-2" "1-4 4-6 4-5 5-1 3-1 7-1"
collect bigchunk 1 "1-4 4-5 1-2" ""
collect manymap 0 "1-2 2-3 3-4 1-3" "1-2 2-3"
collect sparse128k 0 "2-6 6-7 7-8 8-9 1-2" ""
collect fresh 0 "1-2" "1-2"
collect nodevs 0 "" ""
collect manydevs 0 "1-105 101-400 100-369" "1-105 100-369"
ls -l "$OUT"
