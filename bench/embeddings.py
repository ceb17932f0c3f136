"""The sentence-embedding table (docs/performance.md, "Sentence embeddings"): STS-B dev by cosine from each
embedding run's report.json (configs/stsb-embedding.yaml, stsb-embedding-tiny.yaml, stsb-static.yaml), and the
speed of the teacher and of every export timed side by side in this one run with `distill embed --time` on the
same inputs (the first --sentences of STS-B dev's 3,000: batch-1 p50 over the first 200, throughput at batch
32), rounds interleaved, medians. Run it with nothing else on the cores.

    python3 bench/embeddings.py [--distill target/release/distill] [--rounds 3] [--sentences 1000]
"""

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path

RUNS = [
    ("runs/stsb-embedding", "the teacher's blocks 1-4"),
    ("runs/stsb-embedding-tiny", "RoBERTa-tiny's shape from its blocks 1-4, Dense to 768"),
    ("runs/stsb-embedding-tiny-1500", "the same at 1,500 updates"),
    ("runs/stsb-static", "static (model2vec's distillation), 256 dimensions"),
]
TEACHER = "models/all-mpnet-base-v2"


def timing(distill, folder, inputs):
    out = subprocess.run([distill, "-q", "embed", folder, "--file", inputs, "--time", "--batch-size", "32"],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    return r["latency"]["p50_ms"], r["examples_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distill", default="target/release/distill")
    ap.add_argument("--glue", default="../shared/glue")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=1000)
    a = ap.parse_args()
    rows = [l.rstrip("\n").split("\t") for l in open(f"{a.glue}/STS-B/dev.tsv", encoding="utf-8")]
    head = rows[0]
    i1, i2 = head.index("sentence1"), head.index("sentence2")
    sentences = ([r[i1] for r in rows[1:]] + [r[i2] for r in rows[1:]])[: a.sentences]
    inputs = Path(tempfile.mkdtemp()) / "sts-b-dev-sentences.txt"
    inputs.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    models = [(TEACHER, "teacher: all-mpnet-base-v2, untouched", None)]
    for run, label in RUNS:
        report = Path(run) / "report.json"
        if report.is_file():
            models.append((f"{run}/export", label, json.loads(report.read_text())))
        else:
            print(f"{run}: no report.json (not run yet)")
    times = {m[0]: [] for m in models}
    for _ in range(a.rounds):
        for folder, _, _ in models:
            times[folder].append(timing(a.distill, folder, str(inputs)))
    med = {f: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for f, v in times.items()}
    t_lat, t_eps = med[TEACHER]
    first = next((m[2] for m in models if m[2]), None)
    print(f"{len(sentences)} sentences, {a.rounds} rounds interleaved, medians\n")
    print("| model | Spearman | 95% interval | Pearson | % of teacher (Spearman) | parameters | dims "
          "| batch-1 p50 | sentences/s (batch 32) | training |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for folder, label, rep in models:
        side = (rep or first)["teacher" if rep is None else "student"] if (rep or first) else None
        lat, eps = med[folder]
        if side is None:
            print(f"| {label} | | | | | | | {lat:.2f} ms | {eps:.1f} | |")
            continue
        t = first["teacher"]
        kept = 100 * side["spearman"] / t["spearman"]
        ci = side["spearman_ci"]
        speed = "" if rep is None else f" ({t_lat / lat:.1f}x faster)"
        tput = "" if rep is None else f" ({eps / t_eps:.1f}x)"
        if rep is None:
            train = "none"
        elif rep["train_steps"] == 0:
            train = f"none ({rep['train_seconds'] / 60:.0f} min from the vocabulary)"
        else:
            train = f"{rep['train_steps']} steps, {rep['train_seconds'] / 60:.0f} min"
        print(f"| {label} | **{side['spearman']:.2f}** | [{ci['low']:.2f}, {ci['high']:.2f}] | {side['pearson']:.2f} "
              f"| {kept:.1f} | {side['parameters'] / 1e6:.1f}M | {side['dimensions']} | {lat:.2f} ms{speed} "
              f"| {eps:.1f}{tput} | {train} |")


if __name__ == "__main__":
    main()
