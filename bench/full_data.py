"""The full-data table from the runs of bench/full_data.sh: for each task, the teacher and the students,
each with its dev metrics (x100), the 95% bootstrap interval of the task's main metric, the share of the
teacher's main metric kept, parameters, size, batch-1 latency and batch-64 throughput, all as the run's
`report.json` (written by `distill compare`) has them. A run not finished yet is left out with a note. A
student trained for another number of epochs (`EPOCHS=6` in bench/full_data.sh: runs/TASK-NAME-e6) follows
its row, labelled with its epochs.

    python3 bench/full_data.py [TASK...] [--runs DIR]
"""

import argparse
import json
from pathlib import Path

ROWS = [
    ("{t}-teacher-layers", "the teacher's blocks 1-4, KD"),
    ("{t}-tiny-even", "RoBERTa-tiny's shape from the teacher, evenly spaced, KD"),
    ("{t}-tiny-importance", "RoBERTa-tiny's shape from the teacher, by importance, KD"),
    ("{t}-tiny-units", "RoBERTa-tiny's shape from the teacher, heads and FFN units by importance, KD"),
    ("{t}-tiny-gradient", "RoBERTa-tiny's shape from the teacher, by the loss gradient, KD"),
    ("{t}-tiny-prune", "RoBERTa-tiny's shape pruned from the teacher's width in steps while distilling"),
    ("{t}-tiny-even-labels", "RoBERTa-tiny's shape from the teacher, evenly spaced, labels only"),
    ("{t}-tiny-cased-even", "RoBERTa-tiny-cased from the teacher (vocabulary transferred), KD"),
    ("{t}", "RoBERTa-tiny-cased, KD from random weights"),
    ("{t}-labels", "RoBERTa-tiny-cased, labels only"),
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
    reports = {}
    for folder, label in ROWS:
        path = runs / folder.format(t=task) / "report.json"
        if path.is_file():
            reports[label] = json.loads(path.read_text())
        found = runs.glob(folder.format(t=task) + "-e*/report.json")
        longer = {p.parent.name.rsplit("-e", 1)[1]: p for p in found}
        for e in sorted((e for e in longer if e.isdigit()), key=int):
            reports[f"{label}, {e} epochs"] = json.loads(longer[e].read_text())
    if not reports:
        return f"{task}: no run finished (no runs/{task}*/report.json)\n"
    # The teacher's row, and every ratio, from the first finished run in ROWS's order.
    rep = next(iter(reports.values()))
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
    lines += [row(label, r["student"], teacher) for label, r in reports.items()]
    missing = [label for _, label in ROWS if label not in reports]
    lines += ["", f"Not run or not finished: {', '.join(missing)}." if missing else ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tasks", nargs="*", default=["sst2", "cola", "mrpc", "stsb"])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    args = ap.parse_args()
    print("\n".join(table(t, args.runs) for t in args.tasks))


if __name__ == "__main__":
    main()
