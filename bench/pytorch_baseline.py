"""PyTorch baseline for `distill bench`: the same shapes with transformers' BertForSequenceClassification.

Student (RoBERTa-tiny-cased shape: 4 layers, hidden 512, 8 heads, FFN 2048, vocab 28996) training steps
(forward + backward + AdamW) at batch 32 x 128 and x 64 tokens, student batch-1 latency at 16/32/64 tokens,
teacher (BERT-base and MPNet-base shapes) inference at 32 x 128, an MPNet-base training step at 32 x 128. Random weights and ids, fp32 (the training steps optionally
in autocast bf16, or f16 with a GradScaler: `--precision`), dropout as configured (0.1).
Usage: tools/.venv/bin/python bench/pytorch_baseline.py [--threads 2] [--steps 3] [--json out.json]
"""

import argparse
import json
import resource
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, MPNetConfig, MPNetForSequenceClassification


def config(**kw):
    base = dict(vocab_size=28996, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                intermediate_size=2048, max_position_embeddings=512, num_labels=2,
                attn_implementation="eager")
    base.update(kw)
    return BertConfig(**base)


DEVICE = torch.device("cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def batch(b, s, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (b, s), generator=g)
    return ids.to(DEVICE), torch.ones(b, s, dtype=torch.long, device=DEVICE)


PRECISION = {"fp32": None, "bf16": torch.bfloat16, "f16": torch.float16}


def train_steps(model, b, s, steps, precision="fp32"):
    """fp32, or autocast mixed precision (bf16, or f16 with a GradScaler) over fp32 weights."""
    ids, mask = batch(b, s, model.config.vocab_size, 1)
    labels = (torch.arange(b) % 2).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    dtype = PRECISION[precision]
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
    model.train()
    fwd, bwd, upd = [], [], []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype is not None):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.item()
        t1 = time.perf_counter()
        scaler.scale(loss).backward()
        sync()
        t2 = time.perf_counter()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i > 0:
            fwd.append(t1 - t0); bwd.append(t2 - t1); upd.append(t3 - t2)
    mean = lambda v: sum(v) / len(v)
    step = mean(fwd) + mean(bwd) + mean(upd)
    return dict(batch=b, seq=s, precision=precision, tokens_per_s=b * s / step, step_s=step, forward_s=mean(fwd),
                backward_s=mean(bwd), optimizer_s=mean(upd))


@torch.inference_mode()
def inference(model, b, s, steps, dtype=None):
    """Tokens/s of a forward pass; with `dtype`, under autocast (bf16 products over fp32 weights)."""
    ids, mask = batch(b, s, model.config.vocab_size, 2)
    model.eval()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype is not None):
            model(input_ids=ids, attention_mask=mask).logits.tolist()
        if i > 0:
            times.append(time.perf_counter() - t0)
    m = sum(times) / len(times)
    return dict(batch=b, seq=s, tokens_per_s=b * s / m, batch_s=m)


@torch.inference_mode()
def latency(model, s, runs):
    ids, mask = batch(1, s, model.config.vocab_size, 3)
    model.eval()
    times = []
    for i in range(runs + 3):
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask).logits.tolist()
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    pick = lambda p: times[round((len(times) - 1) * p)]
    return dict(seq=s, p50_ms=pick(0.5), p99_ms=pick(0.99))


@torch.inference_mode()
def ceilings(steps):
    """The matrix-product rate at 4096 x 512 -> 2048 and the student's 24 dense layers on 16 tokens
    (every weight read once: the memory-bandwidth bound of batch-1 latency), as `distill bench` measures."""
    x, w = torch.randn(4096, 512), torch.randn(2048, 512)
    best = float("inf")
    for _ in range(max(steps, 2) + 1):
        t0 = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - t0)
    layers = [(torch.randn(o, i) * 0.02, torch.zeros(o))
              for _ in range(4) for i, o in [(512, 512)] * 4 + [(512, 2048), (2048, 512)]]
    xs = {512: torch.randn(16, 512), 2048: torch.randn(16, 2048)}
    times = []
    for r in range(23):
        t0 = time.perf_counter()
        for w, b in layers:
            torch.nn.functional.linear(xs[w.shape[1]], w, b)
        if r >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return dict(matmul_gflops=2 * 4096 * 512 * 2048 / best / 1e9, dense_s16_ms=times[len(times) // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--latency-runs", type=int, default=50)
    ap.add_argument("--skip-teacher", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (int8 rows and ceilings are CPU-only)")
    ap.add_argument("--precision", default="fp32", choices=sorted(PRECISION),
                    help="the training steps' precision (autocast over fp32 weights); inference is fp32")
    ap.add_argument("--json")
    a = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {"threads": a.threads, "torch": torch.__version__}
    student = BertForSequenceClassification(config()).to(DEVICE)
    out["student_train"] = [train_steps(student, 32, s, a.steps, a.precision) for s in (128, 64)]
    out["student_latency"] = [latency(student, s, a.latency_runs) for s in (16, 32, 64)]
    out["student_inference"] = inference(student, 32, 128, a.steps)
    if DEVICE.type == "cpu":
        # The same student in PyTorch's dynamic int8 (nn.Linear layers), beside `distill bench`'s int8 rows.
        int8 = torch.ao.quantization.quantize_dynamic(student.eval(), {torch.nn.Linear}, dtype=torch.qint8)
        out["student_int8_latency"] = [latency(int8, s, a.latency_runs) for s in (16, 32, 64)]
        out["student_int8_inference"] = inference(int8, 32, 128, a.steps)
    if not a.skip_teacher:
        teacher = BertForSequenceClassification(config(hidden_size=768, num_hidden_layers=12,
                                                       num_attention_heads=12, intermediate_size=3072)).to(DEVICE)
        out["teacher_inference"] = inference(teacher, 32, 128, a.steps)
        # all-mpnet-base-v2's shape (MPNet-base: relative position bias, 514 positions).
        mpnet = MPNetForSequenceClassification(MPNetConfig(vocab_size=30527, num_labels=2)).to(DEVICE)
        out["mpnet_inference"] = inference(mpnet, 32, 128, a.steps)
        # A step of the teacher's fine-tuning, beside `distill bench`'s row.
        out["mpnet_train"] = train_steps(mpnet, 32, 128, a.steps, a.precision)
        if DEVICE.type == "cpu":
            # Beside `distill bench`'s bf16 rows (`teacher.precision: bf16`), where this CPU has AVX-512 BF16.
            out["teacher_bf16_inference"] = inference(teacher, 32, 128, a.steps, torch.bfloat16)
            out["mpnet_bf16_inference"] = inference(mpnet, 32, 128, a.steps, torch.bfloat16)
    if DEVICE.type == "cpu":
        out["ceilings"] = ceilings(a.steps)
    out["device"] = str(DEVICE)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
