"""Medians over several `bench/run.sh` runs: bench/medians.py RUN_DIR... (each holding distill.json and
pytorch.json). Prints each figure's median on both sides, the ratio of the medians and the ratio in each run,
since this machine's speed moves by 10-20% from one run to the next."""

import json
import statistics
import sys
from pathlib import Path

from compare import rows

runs = [rows(*(json.load(open(Path(d) / f)) for f in ("distill.json", "pytorch.json"))) for d in sys.argv[1:]]
torch = json.load(open(Path(sys.argv[1]) / "pytorch.json")).get("torch", "")
print(f"| workload | distill (median of {len(runs)}) | PyTorch {torch} (median of {len(runs)}) | ratio of medians | ratio in each run |")
print("|---|---|---|---|---|")
for i, (name, *_rest) in enumerate(runs[0]):
    ours = statistics.median(r[i][1] for r in runs)
    base = statistics.median(r[i][2] for r in runs)
    each = ", ".join(f"{r[i][1] / r[i][2]:.2f}" for r in runs)
    print(f"| {name} | {ours:,.1f} | {base:,.1f} | {ours / base:.2f} | {each} |")
