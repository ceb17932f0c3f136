"""The full-data table from the runs of bench/full_data.sh: for each task, the teacher and the three students,
each with its dev metrics (x100), the 95% bootstrap interval of the task's main metric, the share of the
teacher's main metric kept, parameters, size, batch-1 latency and batch-64 throughput, all as the run's
`report.json` (written by `distill compare`) has them. A run not finished yet is left out with a note.

    python3 bench/full_data.py [TASK...] [--runs DIR]
"""

import argparse
import json
from pathlib import Path

ROWS = [
    ("{t}", "student", "RoBERTa-tiny-cased, KD from random weights"),
    ("{t}-labels", "student", "RoBERTa-tiny-cased, labels only"),
    ("{t}-teacher-layers", "student", "the teacher's blocks 1-4, KD"),
]


def metrics(side):
    return "/".join(f"{100 * v:.2f}" for v in side["dev"]["values"].values())


def interval(side):
    i = side["dev_interval"]["main"]
    return f"[{100 * i['low']:.1f}, {100 * i['high']:.1f}]"


def speed(side, teacher):
    lat = side["latency"]["p50_ms"]
    eps = side["examples_per_second"]
    if side is teacher:
        return f"{lat:.1f} ms", f"{eps:.1f}"
    t_lat = teacher["latency"]["p50_ms"]
    t_eps = teacher["examples_per_second"]
    return f"{lat:.1f} ms ({t_lat / lat:.1f}x faster)", f"{eps:.1f} ({eps / t_eps:.1f}x)"


def row(name, side, teacher):
    kept = 100 * side["dev"]["main"] / teacher["dev"]["main"] if teacher["dev"]["main"] else float("nan")
    lat, eps = speed(side, teacher)
    return (
        f"| {name} | {metrics(side)} | {interval(side)} | {kept:.1f} | {side['parameters'] / 1e6:.1f}M "
        f"| {side['size_bytes'] / 2**20:.0f} MiB | {lat} | {eps} |"
    )


def table(task, runs):
    head = runs / task / "report.json"
    if not head.is_file():
        return f"{task}: not finished ({head} is missing)\n"
    rep = json.loads(head.read_text())
    names = "/".join(rep["teacher"]["dev"]["values"])
    teacher = rep["teacher"]
    lines = [
        f"### {task} ({rep['dev_examples']} dev examples, {names})",
        "",
        f"| model | {names} | 95% interval | % of teacher | parameters | size | batch-1 p50 "
        f"| examples/s (batch {rep['batch_size']}) |",
        "|---|---|---|---|---|---|---|---|",
        row("teacher: all-mpnet-base-v2, fine-tuned", teacher, teacher),
    ]
    missing = []
    for folder, key, label in ROWS:
        path = runs / folder.format(t=task) / "report.json"
        if path.is_file():
            lines.append(row(label, json.loads(path.read_text())[key], teacher))
        else:
            missing.append(f"{label}: {path} is missing")
    lines += [""] + [f"Not finished: {m}." for m in missing]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tasks", nargs="*", default=["sst2", "cola", "mrpc", "stsb"])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    args = ap.parse_args()
    print("\n".join(table(t, args.runs) for t in args.tasks))


if __name__ == "__main__":
    main()
