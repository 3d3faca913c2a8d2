#!/usr/bin/env bash
# Compatibility with thin-send-recv's thin_send (THIN_SEND_BIN, built outside the project: it is GPL),
# run against the fake LVM of bench/fake-lvm/: for SEEDS random pools (default 1 2 3; NB 64 KiB blocks
# each, default 2048), thin 1 maps random runs with holes, thin 2 is a snapshot of it with runs
# rewritten, added and unmapped, and 5% of the data blocks are zero. For each:
#   - `send --stream-format linbit` of thin 1 (full) and of thin 1 -> thin 2 (incremental) must equal
#     thin_send's streams byte for byte, once our optional VOLUME_SIZE chunk is taken out (docs/STREAM.md
#     2.3: thin_send knows no size; END's chunk count then differs by that one chunk, and only it);
#   - thin_send's streams received by `recv --to` give exactly the volumes of thin 1 and thin 2;
#   - with THIN_RECV_BIN (thin-send-recv's thin_recv) and root: our streams received by thin_recv give
#     exactly those volumes too. thin_recv opens /dev/VG/LV, so the script makes /dev/tsncompatPID/t,
#     a link to a loop device over a scratch file, and removes both after. thin_recv does UNMAP with
#     BLKDISCARD and goes on when the device has none (loop devices on this kernel): each range it
#     reports so must hold thin 1's bytes, and every other byte thin 2's.
# Not a benchmark: it sits here with the other scripts that run a reference tool built outside.
set -euo pipefail
cd "$(dirname "$0")/.."
TSR=${THIN_SEND_BIN:?set THIN_SEND_BIN to the thin_send of thin-send-recv}
cargo build --release --quiet
B=$PWD/target/release/thinsend-native
FAKE=$PWD/bench/fake-lvm
LOCK=""
[ -e /var/run/thin-send-recv.lock ] || LOCK=/var/run/thin-send-recv.lock
for SEED in ${SEEDS:-1 2 3}; do
T=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-compat.XXXXXX")
RL=""
RVG=tsncompat$$
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"; rm -rf "/dev/$RVG"; [ -z "$RL" ] || losetup -d "$RL"; [ -z "$LOCK" ] || rm -f "$LOCK"' EXIT
NB=${NB:-2048}; BS=65536
python3 - "$NB" "$T" "$SEED" <<'PY'
import sys, random
nb, t, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
r = random.Random(seed)
# thin 1: random runs mapped (with holes), thin 2: snapshot of 1 with random changes: rewrites, new blocks, unmaps
m1 = {}
b = 0; nxt = 0
while b < nb:
    run = r.randint(1, 64)
    if r.random() < 0.7:
        for k in range(b, min(nb, b+run)):
            m1[k] = nxt; nxt += 1
    b += run
m2 = dict(m1)
for _ in range(r.randint(1, nb//8)):
    k = r.randrange(nb); op = r.random(); run = r.randint(1, 16)
    for j in range(k, min(nb, k+run)):
        if op < 0.6: m2[j] = nxt; nxt += 1
        elif op < 0.8: m2.pop(j, None)
        else:
            if j not in m2: m2[j] = nxt; nxt += 1
ndata = nxt + 10
def dev(i, m, trans):
    out = ['  <device dev_id="%d" mapped_blocks="%d" transaction="%d" creation_time="0" snap_time="1">' % (i, len(m), trans)]
    for k in sorted(m):
        out.append('    <single_mapping origin_block="%d" data_block="%d" time="%d"/>' % (k, m[k], 0 if m1.get(k) == m[k] else 1))
    out.append('  </device>')
    return out
x = ['<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="%d">' % ndata]
x += dev(1, m1, 0) + dev(2, m2, 1)
x.append('</superblock>')
open(t + '/pool.xml', 'w').write('\n'.join(x) + '\n')
data = bytearray(r.randbytes(ndata * 65536))
# some all-zero data blocks (zero detection must not change LINBIT bytes)
for k in r.sample(range(ndata), ndata // 20):
    data[k*65536:(k+1)*65536] = bytes(65536)
open(t + '/data', 'wb').write(data)
for name, m in (('vol1', m1), ('vol2', m2)):
    v = bytearray(nb * 65536)
    for k, d in m.items():
        v[k*65536:(k+1)*65536] = data[d*65536:(d+1)*65536]
    open(t + '/' + name, 'wb').write(v)
PY
truncate -s 64M $T/meta; thin_restore -q -i $T/pool.xml -o $T/meta
printf 'vg bench\npool pool %s\nlv a 1 %s\nlv b 2 %s\nstate %s\n' $T/meta $T/vol1 $T/vol2 $T > $T/conf
TS="env PATH=$FAKE:$PATH FAKE_LVM_CONF=$T/conf $TSR -s"
VOL=$((NB * BS))
$TS bench/a > $T/tfull
$TS bench/a bench/b > $T/tinc
$B send --metadata $T/meta --source $T/vol1 --thin-id 1 --size $VOL --stream-format linbit --quiet > $T/ofull
$B send --metadata $T/meta --source $T/vol2 --thin-id 2 --base-id 1 --size $VOL --stream-format linbit --quiet > $T/oinc
fail() { echo "compat seed $SEED: $*" >&2; exit 1; }
$B recv --to $T/r1 --size $VOL --quiet < $T/tfull
cmp -s $T/r1 $T/vol1 || fail "thin_send's full stream received differs from thin 1"
cp $T/r1 $T/r2
$B recv --to $T/r2 --size $VOL --force --quiet < $T/tinc
cmp -s $T/r2 $T/vol2 || fail "thin_send's incremental stream received differs from thin 2"
# ours carries the optional VOLUME_SIZE chunk (docs/STREAM.md 2.3): strip it (36 bytes after BEGIN)
# and compare the rest; END's chunk count differs by that one chunk
for k in full inc; do
  python3 -c "import sys; b=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(b[:28]+b[64:])" $T/o$k $T/o$k.s
  # the one difference allowed: END's chunk count (the first of its payload's three big-endian u64:
  # chunks, data chunks, unmap chunks), ours one more
  python3 - $T/t$k $T/o$k.s <<'PY' || fail "$k stream differs from thin_send's"
import sys
t, o = (open(p, 'rb').read() for p in sys.argv[1:3])
assert len(t) == len(o) and t[:-24] == o[:-24] and t[-16:] == o[-16:], 'differs'
assert int.from_bytes(o[-24:-16], 'big') == int.from_bytes(t[-24:-16], 'big') + 1, 'END chunk count'
PY
  echo "seed $SEED $k: $(stat -c %s $T/t$k) bytes, equal to thin_send's but for VOLUME_SIZE; received equal to the volume"
done
# thin_recv (as LINSTOR's peers run it) on our streams: full into a zeroed LV, then the incremental
if [ -n "${THIN_RECV_BIN:-}" ]; then
  truncate -s $VOL $T/lv
  RL=$(losetup -f --show $T/lv)
  mkdir -p /dev/$RVG && ln -sfn $RL /dev/$RVG/t
  printf 'vg %s\npool pool %s\nlv t 3 %s\nstate %s\n' $RVG $T/meta $RL $T > $T/rconf
  TR="env PATH=$FAKE:$PATH FAKE_LVM_CONF=$T/rconf $THIN_RECV_BIN $RVG/t"
  $TR < $T/ofull 2>$T/rerr || fail "thin_recv refused our full stream: $(tail -n 1 $T/rerr)"
  cmp -s $RL $T/vol1 || fail "our full stream received by thin_recv differs from thin 1"
  $TR < $T/oinc 2>$T/rerr || fail "thin_recv refused our incremental stream: $(tail -n 1 $T/rerr)"
  # a device without discard (loop devices here) makes thin_recv print each UNMAP it could not do
  # and go on: those ranges keep thin 1's bytes, the rest must be thin 2's
  python3 - $RL $T/vol1 $T/vol2 $T/rerr <<'PY' || fail "our incremental stream received by thin_recv differs from thin 2"
import re, sys
got, v1, v2 = (open(p, 'rb').read() for p in sys.argv[1:4])
want = bytearray(v2)
skipped = [tuple(map(int, m)) for m in re.findall(r'unmap\(,(\d+),(\d+)\) failed: Operation not supported', open(sys.argv[4]).read())]
for off, n in skipped:
    want[off:off + n] = v1[off:off + n]
assert got == bytes(want), 'differs'
print(len(skipped), file=open(sys.argv[4] + '.n', 'w'))
PY
  losetup -d $RL; RL=""; rm -rf /dev/$RVG
  echo "seed $SEED: our full and incremental streams received by thin_recv equal thin 1 and thin 2 ($(cat $T/rerr.n) UNMAPs the device could not discard kept thin 1's bytes)"
fi
[ -n "${KEEP:-}" ] || rm -rf "$T"
done
