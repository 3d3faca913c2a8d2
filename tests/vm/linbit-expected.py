#!/usr/bin/env python3
"""sha256 of the images the LINBIT vectors give on an LV of SIZE bytes (testdata/linbit/README.md:
thin block b holds the 10-byte text 'blk' + b as six digits + ' ', repeated, cut at 64 KiB).
Prints 'FULL_SHA DIFF_SHA'."""
import hashlib, sys
size = int(sys.argv[1])
bs = 65536
def block(b):
    t = ("blk%06d " % b).encode()
    return (t * (bs // len(t) + 1))[:bs]
def image(blocks):
    h = hashlib.sha256()
    zero = bytes(bs)
    for b in range(size // bs):
        h.update(block(b) if b in blocks else zero)
    return h.hexdigest()
full = {0, 1, 2, 3, 10, 20, 21, 100}
diff = {0, 1, 2, 3, 10, 100, 200, 201, 202, 300}
print(image(full), image(diff))
