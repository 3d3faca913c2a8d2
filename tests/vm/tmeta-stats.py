#!/usr/bin/env python3
"""tmeta-stats.py — shape of the btrees in a dm-thin metadata image (test-data diagnostics).

Usage: tmeta-stats.py IMAGE[.gz]

Prints, for the live superblock and (if held_root != 0) the held metadata snapshot: the depth and
node counts of the top-level mapping tree, the details tree and every device's bottom-level tree,
then which btree nodes are shared: between devices of the same superblock (snapshots share
subtrees with their origin) and between the held snapshot and the live trees.
Written from the format description in docs (dm-thin-metadata.md); read-only, no validation
beyond the node header, meant to describe kernel-written test images, not to check them.
"""
import gzip
import struct
import sys
from itertools import combinations

BS = 4096


def load(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        return f.read()


class Meta:
    def __init__(self, img):
        self.img = img

    def block(self, b):
        if b < 0 or (b + 1) * BS > len(self.img):
            raise ValueError(f"block {b} outside the image")
        return self.img[b * BS:(b + 1) * BS]

    def node(self, b):
        d = self.block(b)
        flags, blocknr, nr, mx, vsz = struct.unpack_from("<IQIII", d, 4)
        if blocknr != b:
            raise ValueError(f"block {b}: node header says blocknr {blocknr}")
        keys = struct.unpack_from(f"<{nr}Q", d, 32)
        vals = [d[32 + 8 * mx + i * vsz:32 + 8 * mx + (i + 1) * vsz] for i in range(nr)]
        return flags, keys, vals, vsz

    def walk(self, root):
        """Yield (block, depth, is_leaf, keys, values) for every node, depth-first."""
        stack = [(root, 0)]
        while stack:
            b, depth = stack.pop()
            flags, keys, vals, _ = self.node(b)
            leaf = flags & 2 != 0
            yield b, depth, leaf, keys, vals
            if not leaf:
                for v in reversed(vals):
                    stack.append((struct.unpack("<Q", v)[0], depth + 1))

    def superblock(self, b):
        d = self.block(b)
        time, trans, held = struct.unpack_from("<IQQ", d, 44)
        mroot, droot = struct.unpack_from("<QQ", d, 320)
        dbs, = struct.unpack_from("<I", d, 336)
        return dict(block=b, time=time, trans=trans, held=held, mapping_root=mroot,
                    details_root=droot, data_block_size=dbs)


def tree_shape(m, root):
    """(levels, leaves, internals, entries, set of node blocks)"""
    levels = leaves = internals = entries = 0
    blocks = set()
    for b, depth, leaf, keys, _ in m.walk(root):
        blocks.add(b)
        levels = max(levels, depth + 1)
        if leaf:
            leaves += 1
            entries += len(keys)
        else:
            internals += 1
    return levels, leaves, internals, entries, blocks


def describe(m, sb, label):
    out = [f"{label}: superblock block {sb['block']}, time {sb['time']}, transaction {sb['trans']}, "
           f"data_block_size {sb['data_block_size']} sectors"]
    lv, lf, inn, ent, _ = tree_shape(m, sb["mapping_root"])
    out.append(f"  top-level mapping tree: root {sb['mapping_root']}, {lv} level(s), {lf} leaves, "
               f"{inn} internal, {ent} devices")
    lv, lf, inn, ent, _ = tree_shape(m, sb["details_root"])
    out.append(f"  details tree: root {sb['details_root']}, {lv} level(s), {lf} leaves, {inn} internal, "
               f"{ent} entries")
    devs = {}
    for b, _, leaf, keys, vals in m.walk(sb["mapping_root"]):
        if leaf:
            for k, v in zip(keys, vals):
                devs[k] = struct.unpack("<Q", v)[0]
    shapes = {}
    for dev, root in sorted(devs.items()):
        shapes[dev] = tree_shape(m, root)
    if len(devs) > 12:  # e.g. hundreds of raw devices: summarise
        multi = [d for d, s in shapes.items() if s[3] > 0]
        out.append(f"  {len(devs)} device trees; with mappings: {multi}")
    for dev, (lv, lf, inn, ent, _) in shapes.items():
        if len(devs) > 12 and ent == 0:
            continue
        out.append(f"  dev {dev}: root {devs[dev]}, {lv} level(s), {lf} leaves, {inn} internal, "
                   f"{ent} mappings")
    shared = []
    for a, b in combinations(sorted(devs), 2):
        common = shapes[a][4] & shapes[b][4]
        if common:
            nleaf = sum(1 for x in common if m.node(x)[0] & 2)
            shared.append(f"{a}&{b}: {len(common)} nodes ({nleaf} leaves)")
    if shared:
        out.append("  btree nodes shared between device trees: " + "; ".join(shared[:30])
                   + (f"; ... ({len(shared)} pairs)" if len(shared) > 30 else ""))
    else:
        out.append("  no btree node is shared between device trees")
    allblocks = set()
    for s in shapes.values():
        allblocks |= s[4]
    return out, devs, shapes, allblocks


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    m = Meta(load(sys.argv[1]))
    live = m.superblock(0)
    out, ldevs, lshapes, lblocks = describe(m, live, "live")
    print("\n".join(out))
    if live["held"]:
        held = m.superblock(live["held"])
        out, hdevs, hshapes, hblocks = describe(m, held, f"held metadata snapshot (held_root {live['held']})")
        print("\n".join(out))
        print(f"  top-level root shared with live: {held['mapping_root'] == live['mapping_root']}, "
              f"details root shared: {held['details_root'] == live['details_root']}")
        same = [d for d in hdevs if d in ldevs and hdevs[d] == ldevs[d]]
        print(f"  devices whose whole bottom tree is shared with live (same root): {same}")
        common = hblocks & lblocks
        nleaf = sum(1 for x in common if m.node(x)[0] & 2)
        print(f"  bottom-tree nodes shared between held and live: {len(common)} of {len(hblocks)} "
              f"({nleaf} leaves)")


if __name__ == "__main__":
    main()
