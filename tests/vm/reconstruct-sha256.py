#!/usr/bin/env python3
"""reconstruct-sha256.py — rebuild thin LVs from a thin_dump XML and the pool's data device.

Usage: reconstruct-sha256.py THIN_DUMP.xml TDATA[.gz] EXPECTED.sha256

EXPECTED.sha256 has lines "SHA256 THIN_ID LV_NAME SIZE_BYTES" (as written by
tests/vm/testdata-scenario.sh). For each line, the device THIN_ID is rebuilt virtual block by
virtual block (mapped -> that data block of TDATA, unmapped -> zeros) over SIZE_BYTES, and its
sha256 compared with SHA256. Prints one "ok"/"MISMATCH" line per device; exit 1 on a mismatch.
This checks that a testdata image's metadata and data device belong together, and is a model of
what a full send of each device must produce.
"""
import gzip
import hashlib
import sys
import xml.etree.ElementTree as ET


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    xml_path, tdata_path, sha_path = sys.argv[1:]
    root = ET.parse(xml_path).getroot()
    bs = int(root.get("data_block_size")) * 512
    devs = {}
    for dev in root.iter("device"):
        m = {}
        for e in dev:
            if e.tag == "range_mapping":
                o, d, n = (int(e.get(k)) for k in ("origin_begin", "data_begin", "length"))
                for i in range(n):
                    m[o + i] = d + i
            elif e.tag == "single_mapping":
                m[int(e.get("origin_block"))] = int(e.get("data_block"))
        devs[int(dev.get("dev_id"))] = m
    op = gzip.open if tdata_path.endswith(".gz") else open
    with op(tdata_path, "rb") as f:
        tdata = f.read()
    zero = bytes(bs)
    bad = 0
    for line in open(sha_path):
        want, dev_id, name, size = line.split()
        dev_id, size = int(dev_id), int(size)
        if dev_id not in devs:
            print(f"MISMATCH {name} (id {dev_id}): no such device in {xml_path}")
            bad += 1
            continue
        h = hashlib.sha256()
        m = devs[dev_id]
        for vb in range((size + bs - 1) // bs):
            n = min(bs, size - vb * bs)
            if vb in m:
                chunk = tdata[m[vb] * bs:m[vb] * bs + n]
                if len(chunk) != n:
                    print(f"MISMATCH {name}: data block {m[vb]} beyond the data device")
                    bad += 1
                    break
                h.update(chunk)
            else:
                h.update(zero[:n])
        got = h.hexdigest()
        if got == want:
            print(f"ok {name} (id {dev_id}, {len(m)} mappings)")
        else:
            print(f"MISMATCH {name} (id {dev_id}): rebuilt {got}, guest read {want}")
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
