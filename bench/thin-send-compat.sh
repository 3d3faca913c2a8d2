#!/usr/bin/env bash
# Compatibility with thin-send-recv's thin_send (THIN_SEND_BIN, built outside the project: it is GPL),
# run against the fake LVM of bench/fake-lvm/: for SEEDS random pools (default 1 2 3; NB 64 KiB blocks
# each, default 2048), thin 1 maps random runs with holes, thin 2 is a snapshot of it with runs
# rewritten, added and unmapped, and 5% of the data blocks are zero. For each:
#   - `send --stream-format linbit` of thin 1 (full) and of thin 1 -> thin 2 (incremental) must equal
#     thin_send's streams byte for byte, once our optional VOLUME_SIZE chunk is taken out (docs/STREAM.md
#     2.3: thin_send knows no size; END's chunk count then differs by that one chunk, and only it);
#   - thin_send's streams received by `recv --to` give exactly the volumes of thin 1 and thin 2.
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
trap 'rm -rf "$T"; [ -z "$LOCK" ] || rm -f "$LOCK"' EXIT
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
rm -rf "$T"
done
