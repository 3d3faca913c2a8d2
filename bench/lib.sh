# Sourced by the bench scripts: the pools and data they share.

# bench_pool DIR NB NC: DIR/meta, restored by thin_restore from DIR/pool.xml: thin 1 maps a volume
# of NB 64 KiB blocks onto data blocks 0..NB; with NC > 0, thin 2 is a snapshot of it with NC
# blocks rewritten, scattered (every NB/NC-th block, onto data blocks NB..NB+NC).
bench_pool() {
  local dir=$1 nb=$2 nc=$3
  python3 - "$nb" "$nc" >"$dir/pool.xml" <<'PY'
import sys
nb, nc = int(sys.argv[1]), int(sys.argv[2])
out = ['<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="%d">' % (nb + nc)]
out.append('  <device dev_id="1" mapped_blocks="%d" transaction="0" creation_time="0" snap_time="1">' % nb)
out.append('    <range_mapping origin_begin="0" data_begin="0" length="%d" time="0"/>' % nb)
out.append('  </device>')
if nc > 0:
    step = nb // nc
    out.append('  <device dev_id="2" mapped_blocks="%d" transaction="1" creation_time="1" snap_time="1">' % nb)
    b = 0
    for k in range(nc):
        c = k * step + step // 2          # the changed block
        if c > b:
            out.append('    <range_mapping origin_begin="%d" data_begin="%d" length="%d" time="0"/>' % (b, b, c - b))
        out.append('    <single_mapping origin_block="%d" data_block="%d" time="1"/>' % (c, nb + k))
        b = c + 1
    if b < nb:
        out.append('    <range_mapping origin_begin="%d" data_begin="%d" length="%d" time="0"/>' % (b, b, nb - b))
    out.append('  </device>')
out.append('</superblock>')
print("\n".join(out))
PY
  truncate -s 64M "$dir/meta"
  thin_restore -q -i "$dir/pool.xml" -o "$dir/meta" 2>/dev/null || thin_restore -i "$dir/pool.xml" -o "$dir/meta" >/dev/null
}

# bench_random_data FILE BLOCKS: FILE of BLOCKS 64 KiB blocks of random bytes (a 64 MiB random seed
# repeated: fine where only throughput and equality matter).
bench_random_data() {
  local file=$1 blocks=$2
  head -c $((64 << 20)) /dev/urandom >"$file.seed"
  for _ in $(seq $(((blocks + 1023) / 1024))); do cat "$file.seed"; done >"$file"
  truncate -s $((blocks * 65536)) "$file"
  rm "$file.seed"
}
