#!/usr/bin/env python3
"""bench/server/gen.py — the zone and query files every row of bench/server.sh shares.

gen.py OUTDIR [NAMES] [HOT]
  OUTDIR/example.zone  `example.` with NAMES A records n000000..n(NAMES-1), TTL 3600
  OUTDIR/hot.txt       dnsperf input: the first HOT names (the L1/L2 hit set)
  OUTDIR/all.txt       dnsperf input: all NAMES names once, shuffled with a fixed seed
                       (forward-only rows and the 100k-entry RSS fill)
"""
import os
import random
import sys

out = sys.argv[1]
names = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
hot = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
os.makedirs(out, exist_ok=True)

with open(os.path.join(out, "example.zone"), "w") as f:
    f.write("$ORIGIN example.\n$TTL 3600\n")
    f.write("@ SOA ns.example. hostmaster.example. 1 3600 600 86400 3600\n")
    f.write("@ NS ns\n@ A 192.0.2.1\nns A 192.0.2.53\n")
    for i in range(names):
        f.write("n%06d A 10.%d.%d.%d\n" % (i, i >> 16, (i >> 8) & 255, i & 255))

with open(os.path.join(out, "hot.txt"), "w") as f:
    for i in range(hot):
        f.write("n%06d.example A\n" % i)

order = list(range(names))
random.Random(1).shuffle(order)
with open(os.path.join(out, "all.txt"), "w") as f:
    for i in order:
        f.write("n%06d.example A\n" % i)
