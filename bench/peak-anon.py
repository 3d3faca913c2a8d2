#!/usr/bin/env python3
"""Runs a command and prints its peak anonymous memory (RssAnon, sampled every 0.5 ms) in KiB on
stderr as 'peak_anon_kib=N'. File-backed pages (the mapped metadata) are not anonymous memory."""
import subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
peak = 0
path = f"/proc/{p.pid}/status"
while p.poll() is None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]))
                    break
    except OSError:
        pass
    time.sleep(0.0005)
print(f"peak_anon_kib={peak}", file=sys.stderr)
sys.exit(p.returncode)
