"""Medians of bench/ab.sh's runs: bench/ab.py DIR (holding before-N.json and after-N.json). Prints each
figure's median for both builds, their ratio, and the spread of the after build's runs."""

import json
import statistics
import sys
from pathlib import Path

from compare import rows

d = Path(sys.argv[1])
before = sorted(d.glob("before-*.json"))
after = sorted(d.glob("after-*.json"))
runs = [rows(json.load(open(a)), json.load(open(b))) for a, b in zip(after, before)]
print(f"| workload | before (median of {len(runs)}) | after (median of {len(runs)}) | after / before | after's runs |")
print("|---|---|---|---|---|")
for i, (name, *_rest) in enumerate(runs[0]):
    new = statistics.median(r[i][1] for r in runs)
    old = statistics.median(r[i][2] for r in runs)
    each = ", ".join(f"{r[i][1]:,.1f}" for r in runs)
    print(f"| {name} | {old:,.1f} | {new:,.1f} | {new / old:.3f} | {each} |")
