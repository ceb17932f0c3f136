"""Reads a run's TensorBoard event files with the `tensorboard` package (EventAccumulator, as `tensorboard
--logdir` does) and checks them against its metrics.jsonl: every step record's loss, learning rate,
gradient norm and loss terms, and every evaluation's dev metrics, at the same steps with the same values
(float32), for the teacher's fine-tuning (when there was one) and the student; and the teacher's dev score
as a constant line beside the student's.

    python3 tools/parity/check_tensorboard.py RUN_DIR
"""

import json
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def expected(metrics):
    """{tag: {step: value}} from a metrics.jsonl; a later line for a step replaces an earlier one."""
    out = {}
    for line in metrics.read_text().splitlines():
        r = json.loads(line)
        step = r["step"]
        if "dev" in r:
            for k, v in r["dev"].items():
                out.setdefault(f"dev/{k}", {})[step] = v
            continue
        values = {"train/loss": r["loss"], "train/lr": r["lr"], "train/grad_norm": r["grad_norm"]}
        if "loss_scale" in r:
            values["train/loss_scale"] = r["loss_scale"]
        for name, t in r["terms"].items():
            values[f"train/{name}"] = t["raw"]
            values[f"train/{name}_weighted"] = t["weighted"]
        for k, v in values.items():
            out.setdefault(k, {})[step] = v
    return out


def check(tb_dir, metrics):
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = expected(metrics)
    problems = []
    for tag, points in want.items():
        if tag not in tags:
            problems.append(f"{tb_dir}: no `{tag}`")
            continue
        got = {e.step: e.value for e in acc.Scalars(tag)}
        for step, v in points.items():
            if step not in got:
                problems.append(f"{tb_dir}: `{tag}` has no step {step}")
            elif abs(got[step] - v) > 1e-6 * max(1.0, abs(v)):
                problems.append(f"{tb_dir}: `{tag}` step {step}: {got[step]} != {v}")
    return acc, tags, sum(len(p) for p in want.values()), problems


def main():
    run = Path(sys.argv[1])
    problems, checked = [], 0
    for name, metrics in [("teacher", run / "teacher/finetune/metrics.jsonl"),
                          ("student", run / "student/metrics.jsonl")]:
        if not metrics.is_file():
            continue
        acc, tags, n, p = check(run / "tb" / name, metrics)
        problems += p
        checked += n
        if name == "student":
            report = json.loads((run / "report.json").read_text())
            for k, v in report["teacher"]["dev"]["values"].items():
                line = [e.value for e in acc.Scalars(f"dev/teacher_{k}")] if f"dev/teacher_{k}" in tags else []
                if len(line) < 1 or any(abs(x - v) > 1e-6 for x in line):
                    problems.append(f"student: the teacher's line `dev/teacher_{k}` is {line}, want {v}")
    if problems:
        sys.exit("\n".join(problems[:20]))
    print(f"TENSORBOARD OK: {checked} scalars of metrics.jsonl found in {run}/tb with the same steps and values")


if __name__ == "__main__":
    main()
