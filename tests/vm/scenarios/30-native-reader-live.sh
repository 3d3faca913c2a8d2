# The native reader on a live kernel pool: under a held metadata snapshot, `thinsend-native dump -m`,
# `ls -m` and `diff -m` read /dev/mapper/VG-POOL_tmeta itself and must equal thin_dump/thin_ls/
# thin_delta -m run on the same device; the pool keeps changing after the reserve.
set -eu
pvcreate -q "$DISK1"
vgcreate -q vg "$DISK1"
vmt_thin_pool vg/pool 512M 64k
lvcreate -q -V 1G -T vg/pool -n origin
vmt_pattern_write /dev/vg/origin 0 32000 origin 1         # 2000 chunks: a two-level tree of ~10 leaves
lvcreate -q -s -n snap1 vg/origin
vmt_pattern_write /dev/vg/origin 100 40 origin 2
vmt_pattern_write /dev/vg/origin 4000 300 origin 2
lvcreate -q -s -n snap2 vg/origin
vmt_pattern_write /dev/vg/origin 9000 64 origin 3
S1=$(vmt_thin_id vg snap1); S2=$(vmt_thin_id vg snap2); O=$(vmt_thin_id vg origin)
TP=$(vmt_pool_dm vg pool); TMETA=$(vmt_tmeta vg pool)
dmsetup message "$TP" 0 reserve_metadata_snap
# the live trees move on after the reserve
vmt_pattern_write /dev/vg/origin 20000 64 origin 4
lvcreate -q -s -n snap3 vg/origin
sync
for args in "" "--dev-id $S1" "--dev-id $S2 --dev-id $O"; do
  thin_dump -m $args "$TMETA" > want.xml
  thinsend-native dump -m $args "$TMETA" > got.xml
  cmp want.xml got.xml || { diff want.xml got.xml | head; vmt_fail "dump -m $args differs"; }
done
echo "ok: dump -m equals thin_dump -m ($(grep -c mapping got.xml) lines)"
F=DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME
thin_ls -m -o $F "$TMETA" > want.ls
thinsend-native ls -m -o $F "$TMETA" > got.ls
cmp want.ls got.ls || { diff want.ls got.ls; vmt_fail "ls -m differs"; }
echo "ok: ls -m equals thin_ls -m"
for pair in "$S1 $S2" "$S2 $S1" "$S1 $O" "$O $O"; do
  set -- $pair
  for v in "" --verbose; do
    thin_delta -m $v --snap1 $1 --snap2 $2 "$TMETA" > want.xml
    thinsend-native diff -m $v --snap1 $1 --snap2 $2 "$TMETA" > got.xml
    cmp want.xml got.xml || { diff want.xml got.xml | head; vmt_fail "diff -m $v $1 $2 differs"; }
  done
done
thinsend-native diff -m --changed-only --stats --snap1 $S1 --snap2 $S2 "$TMETA" > /dev/null 2> stats.txt
cat stats.txt
grep -q 'shared_subtrees_skipped=[1-9]' stats.txt || vmt_fail "no shared subtree skipped between snapshots"
echo "ok: diff -m equals thin_delta -m"
dmsetup message "$TP" 0 release_metadata_snap
vmt_assert_eq "$(vmt_held_root vg pool)" "-" "held root after release"
# Without a held snapshot, -m is refused with one clear line.
if thinsend-native dump -m "$TMETA" > /dev/null 2> err.txt; then vmt_fail "dump -m without a snapshot succeeded"; fi
cat err.txt
grep -q "no metadata snapshot is held" err.txt || vmt_fail "unclear error: $(cat err.txt)"
