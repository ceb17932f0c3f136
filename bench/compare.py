"""Side-by-side table of `distill bench` and bench/pytorch_baseline.py results (JSON files), with ratios.
`rows` is also what bench/medians.py reads over several runs."""

import json
import sys


def rows(ours, base):
    """(workload, distill, PyTorch, which is better) for every figure both files have."""
    rows = []
    for o, b in zip(ours["student_train"], base["student_train"]):
        prec = o.get("precision", "fp32")
        assert prec == b.get("precision", "fp32"), f"training precisions differ: {prec} vs {b.get('precision')}"
        rows.append((f"student train step b{o['batch']} s{o['seq']} {prec} (tokens/s)", o["tokens_per_s"], b["tokens_per_s"], "higher"))
    if "mpnet_train" in ours and "mpnet_train" in base:
        o, b = ours["mpnet_train"], base["mpnet_train"]
        rows.append((f"teacher (MPNet-base) train step b32 s128 {o.get('precision', 'fp32')} (tokens/s)",
                     o["tokens_per_s"], b["tokens_per_s"], "higher"))
    for key, name in [("teacher_inference", "teacher (BERT-base) inference"),
                      ("teacher_bf16_inference", "teacher (BERT-base) bf16 inference"),
                      ("mpnet_inference", "teacher (MPNet-base) inference"),
                      ("mpnet_bf16_inference", "teacher (MPNet-base) bf16 inference")]:
        if key in ours and key in base:
            rows.append((f"{name} b32 s128 (tokens/s)", ours[key]["tokens_per_s"], base[key]["tokens_per_s"], "higher"))
    for o, b in zip(ours["student_latency"], base["student_latency"]):
        rows.append((f"student batch-1 latency s{o['seq']} p50 (ms)", o["p50_ms"], b["p50_ms"], "lower"))
        rows.append((f"student batch-1 latency s{o['seq']} p99 (ms)", o["p99_ms"], b["p99_ms"], "lower"))
    for key, name in [("student_inference", "student"), ("student_int8_inference", "student int8")]:
        if key in ours and key in base:
            rows.append((f"{name} inference b32 s128 (tokens/s)", ours[key]["tokens_per_s"], base[key]["tokens_per_s"], "higher"))
    for o, b in zip(ours.get("student_int8_latency", []), base.get("student_int8_latency", [])):
        rows.append((f"student int8 batch-1 latency s{o['seq']} p50 (ms)", o["p50_ms"], b["p50_ms"], "lower"))
        rows.append((f"student int8 batch-1 latency s{o['seq']} p99 (ms)", o["p99_ms"], b["p99_ms"], "lower"))
    if "ceilings" in ours and "ceilings" in base:
        o, b = ours["ceilings"], base["ceilings"]
        rows.append(("matrix product 4096x512 -> 2048 (GFLOP/s)", o["matmul_gflops"], b["matmul_gflops"], "higher"))
        rows.append(("student's 24 dense layers alone, 16 tokens, p50 (ms)", o["dense_s16_ms"], b["dense_s16_ms"], "lower"))
    rows.append(("peak memory (MiB)", ours["peak_rss_mib"], base["peak_rss_mib"], "lower"))
    return rows


def main():
    ours, base = (json.load(open(p)) for p in sys.argv[1:3])
    table = rows(ours, base)
    print(f"| workload | distill | PyTorch {base.get('torch', '')} | ratio (distill / PyTorch) |")
    print("|---|---|---|---|")
    for name, o, b, _ in table:
        print(f"| {name} | {o:,.1f} | {b:,.1f} | {o / b:.2f} |")
    steps = [(f"student s{o['seq']}", o, b) for o, b in zip(ours["student_train"], base["student_train"])]
    if "mpnet_train" in ours and "mpnet_train" in base:
        steps.append(("teacher (MPNet-base) s128", ours["mpnet_train"], base["mpnet_train"]))
    for name, o, b in steps:
        print(f"\nstep breakdown {name} (s): forward {o['forward_s']:.2f} vs {b['forward_s']:.2f}, "
              f"backward {o['backward_s']:.2f} vs {b['backward_s']:.2f}, optimizer {o['optimizer_s']:.2f} vs {b['optimizer_s']:.2f}")


if __name__ == "__main__":
    main()
