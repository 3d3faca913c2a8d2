#!/bin/bash
# make-testdata.sh — regenerate testdata/kernel/: metadata (and some data) devices of thin pools
# written by a real kernel, with oracle outputs of thin-provisioning-tools computed in the guest.
#
# Usage: bash tests/vm/make-testdata.sh [DEST]     (default DEST: testdata/kernel)
#
# One qemu boot runs tests/vm/testdata-scenario.sh (about 1.5 min under TCG), then the results
# are gzipped into DEST, a README.md is written, and tests/vm/check-testdata.sh verifies them on
# the host. Environment knobs: see tests/vm/lib.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DEST=${1:-$REPO/testdata/kernel}
. "$HERE/lib.sh"
export VM_MEM=${VM_MEM:-1024} VM_SCENARIO_TIMEOUT=${VM_SCENARIO_TIMEOUT:-560}

RES=$(mktemp -d "${TMPDIR:-/tmp}/thinsend-testdata.XXXXXX")
trap 'rm -rf "$RES"' EXIT
NOBINS=()
vm_run "$RES" NOBINS "$HERE/testdata-scenario.sh"
S=$RES/testdata-scenario
if [ "$(cat "$S/rc" 2>/dev/null)" != 0 ]; then
  echo "guest scenario failed (rc=$(cat "$S/rc" 2>/dev/null || echo none)); last lines of its log:" >&2
  tail -n 40 "$S/log" 2>/dev/null >&2 || tail -n 40 "$RES/console.log" >&2
  exit 1
fi

mkdir -p "$DEST"
rm -f "$DEST"/*.gz "$DEST"/*.xml "$DEST"/*.txt "$DEST"/*.json "$DEST"/*.sha256
for f in "$S"/*; do
  b=$(basename "$f")
  case $b in
    *.tmeta|*.tdata) gzip -9n -c "$f" > "$DEST/$b.gz" ;;
    *.xml|*.txt|*.json|*.sha256) cp "$f" "$DEST/$b" ;;
  esac
done
for f in "$S"/*.tmeta; do
  n=$(basename "$f" .tmeta)
  python3 "$HERE/tmeta-stats.py" "$f" > "$DEST/$n.tree.txt"
done

versions=$(vm_versions)
secs=$(cat "$S/secs"); wall=$(cat "$RES/vm_wall_seconds")
{
cat <<EOF
# testdata/kernel: thin-pool metadata written by a real kernel

Made by \`bash tests/vm/make-testdata.sh\` (one qemu boot running \`tests/vm/testdata-scenario.sh\`;
the guest scenario took ${secs} s, the boot ${wall} s under TCG). Regenerate the same way; the
check \`bash tests/vm/check-testdata.sh\` (host only, seconds) must then pass.
Versions: ${versions}.

All pools are in one VG \`vg\`, made with \`lvcreate --type thin-pool --poolmetadatasize 4M
--poolmetadataspare n -Zy\` (zeroing of new chunks on). Thin ids are LVM's (max existing id + 1,
so a deleted top id is reused). Written data is either a deterministic text pattern (every 4 KiB
block is the 64-byte line "thinsend POOL/LV blk4k=N gen=G" 64 times; generation G = the write
phase) or zeros; never random.

## Pools
| pool | chunk | held metadata snap | data kept | what it exercises |
|---|---|---|---|---|
| snapchain | 64 KiB | yes | tdata | origin with 418 mappings (2-level bottom tree), snapshots (snap1, snap2), snapshot of a snapshot (snap1a), device with no mappings, a device deleted before (id 4, reused by snap1) and one after the reserve (id 3), sub-chunk writes, CoW; after the reserve: writes, discards (aligned, and unaligned with partial chunks), a new snapshot, and id 7 reused (held: "recycled", live: snap3) |
| bigchunk | 1 MiB | no | tdata | 4/8 KiB writes into 1 MiB chunks (fresh and shared), snapshot of a snapshot, discard of 2 chunks, deleted device (id 3), device with no mappings, write to the last 4 KiB of an LV |
| manymap | 64 KiB | yes | no | ~3000 mappings per device (13 leaves under one internal node); snapshots share most leaves with the origin; after the reserve: new mappings, one CoW, 200-chunk discard in a snapshot, snapshot of a snapshot |
| sparse128k | 128 KiB | no | no | 1 TiB and 8 GiB LVs with writes at large virtual blocks (up to 8388607), 40 scattered chunks, snapshot chain of depth 4 (mid <- c1 <- c2 <- c3 <- c4), deleted ids 4 and 5, 4 KiB write into a fresh chunk, device with no mappings |
| fresh | 64 KiB | yes | no | held snapshot identical to the live state (shares both roots), two devices without mappings sharing one empty leaf |
| nodevs | 64 KiB | no | no | a pool with no thin devices at all (empty top-level and details trees) |
| manydevs | 64 KiB | yes | no | 268 live / 271 held devices (top-level and details trees have 2 levels), made by raw pool messages (create_thin / create_snap / delete) so lvs.json lists only "base"; many snapshots share one leaf |

## Files (per pool NAME)
| file | content |
|---|---|
| NAME.tmeta.gz | gzip of the raw \`_tmeta\` device (dd with iflag=direct after a \`dmsetup status\`, which commits), taken while the metadata snapshot (if any) is still held |
| NAME.tdata.gz | gzip of the raw \`_tdata\` device (snapchain, bigchunk) |
| NAME.sha256 | "SHA256 THIN_ID LV_NAME SIZE_BYTES": every live thin LV read in the guest (snapshots activated with \`lvchange -ay -K\`) |
| NAME.events.txt | every operation in order, with thin ids, offsets and generations (also the held root at the reserve) |
| NAME.lvs.json | \`lvs --reportformat json -a -o lv_name,lv_attr,lv_size,thin_id,origin,pool_lv,chunk_size,lv_uuid,vg_name\` |
| NAME.dmsetup_status.txt | the pool's status line; field 7 is the held metadata root (\`-\` = none) |
| NAME.thin_dump.xml, NAME.thin_ls.txt | \`thin_dump\`, \`thin_ls -o <all 16 fields>\` of the live superblock |
| NAME.thin_dump-m.xml, NAME.thin_ls-m.txt | the same with \`-m\` (held pools only), run on the live \`_tmeta\` in the guest |
| NAME.thin_delta[-verbose].A-B.xml | \`thin_delta [--verbose] --snap1 A --snap2 B\` on the live superblock |
| NAME.thin_delta-m[-verbose].A-B.xml | the same with \`-m\` (held metadata snapshot) |
| NAME.thin_check.txt | \`thin_check\` output plus "rc=N" |
| NAME.tree.txt | btree shapes and node sharing, from \`tests/vm/tmeta-stats.py\` (diagnostic, host-made) |

The non-\`-m\` tools cannot open a live \`_tmeta\` (the pool holds it: EBUSY), so in the guest they ran
on the dd copy (written to a scratch linear LV: the tools use O_DIRECT, which tmpfs refuses);
\`thin_dump -m\` on the copy was checked equal to the live one. thin_ls fields are the full list
thin_ls 0.9.0 accepts: $(echo DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME).
Note thin-tools 0.9.0 prints \`nr_data_blocks="0"\` with \`-m\` (the snapshot superblock has no
space maps).

## What the kernel wrote (numbers from the generation checked in; see NAME.tree.txt)
- A thin snapshot shares the origin's whole bottom tree (same root block) until either side is
  written; a write then copies only the path root -> leaf, so untouched leaves stay shared
  (manymap: 7 to 13 of 13 leaves shared between device pairs). Devices created empty, and their
  snapshots, share one empty leaf.
- The held metadata snapshot shares unchanged subtrees with the live trees (snapchain: 4 leaves;
  manymap: 14 leaves; manydevs: every untouched device tree), while the live top-level and
  details roots have moved on; in "fresh" both roots are the same blocks.
- \`thin_check\` (0.9.0) passes (rc=0) on every image, including those with a held snapshot.
- Block numbers (e.g. the held root) differ from one regeneration to the next (the pool also
  commits on a 1 s timer, so the number of commits depends on timing); contents do not.

## Sizes
| pool | tmeta.gz bytes | tdata.gz bytes | other files | their bytes |
|---|---|---|---|---|
EOF
for f in "$DEST"/*.tmeta.gz; do
  n=$(basename "$f" .tmeta.gz)
  td=-; [ -f "$DEST/$n.tdata.gz" ] && td=$(stat -c %s "$DEST/$n.tdata.gz")
  others=$(ls "$DEST/$n".* | grep -v -e '\.tmeta\.gz$' -e '\.tdata\.gz$')
  echo "| $n | $(stat -c %s "$f") | $td | $(echo "$others" | wc -l) | $(cat $others | wc -c) |"
done
echo
echo "Total: $(find "$DEST" -type f ! -name 'README.md*' -printf '%s\n' | awk '{s += $1} END {print s}') bytes in $(find "$DEST" -type f ! -name 'README.md*' | wc -l) files plus this README."
} > "$DEST/README.md.tmp"
mv "$DEST/README.md.tmp" "$DEST/README.md"
vm_log "wrote $(ls "$DEST" | wc -l) files, $(du -sh "$DEST" | cut -f1), to $DEST"
bash "$HERE/check-testdata.sh" "$DEST"
