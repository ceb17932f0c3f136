"""Faults in a loop: a real, small run (configs/tiny.yaml, longer) is hit again and again at random points by
one of four faults, and restarted after each with the same command, as a user would:

- SIGKILL;
- SIGTERM;
- a full disk: the run's folder lives on a small tmpfs, which is filled up while the run writes;
- a read-only folder: the run's folder is bind-mounted read-only under the running process (a mount
  namespace of its own: as root, `chmod` would not stop it).

After every fault, nothing under a real name in the folder may be half-written (every safetensors file whole,
every JSON file and every metrics line parsing, every PNG complete; hidden `.NAME.tmp` temporaries are the
only files a fault may leave unfinished), and a fault that leaves a message must have named what happened
(`No space left on device` or `Read-only file system` with the path; `interrupted` for SIGTERM). When a run completes, its weights, its
targets and its export must equal, byte for byte, those of an uninterrupted run; the folder is then removed and
the next round starts. Prints the tally and exits 1 on the first broken check.

    python3 tools/fault_loop.py [--faults 100] [--bin target/debug/distill] [--seed 0]

The script re-executes itself in a user and mount namespace (`unshare -rm`) to mount its tmpfs.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Longer than the tests' tiny run, so that faults land in every stage, and evaluations (each writing
# last/) every few updates.
SETS = ["teacher.finetune.epochs=12", "train.epochs=12", "train.eval_every=4", "seed=7"]
COMPARED = ["teacher/model/model.safetensors", "targets/train.safetensors",
            "student/best/model.safetensors", "student/last/model.safetensors",
            "student/last/optimizer.safetensors", "export/model.safetensors"]
# What the message of each fault that leaves one must say, and whether it must name the path too.
MESSAGES = {"full": ("No space left on device", True), "ro": ("Read-only file system", True),
            "term": ("interrupted (SIGINT or SIGTERM)", False)}


def command(binary, out):
    cmd = [binary, "run", "configs/tiny.yaml", "--set", f"output_dir={out}"]
    for s in SETS:
        cmd += ["--set", s]
    return cmd


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def whole(path):
    """Why the file under a real name is not whole, or None."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        if name.endswith(".safetensors"):
            (n,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8:8 + n])
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if len(data) != 8 + n + end:
                return f"{len(data)} bytes, the header says {8 + n + end}"
        elif name.endswith(".jsonl"):
            for i, line in enumerate(data.decode().splitlines()):
                json.loads(line)
            if data and not data.endswith(b"\n"):
                return "the last line has no newline"
        elif name.endswith(".json"):
            json.loads(data)
        elif name.endswith(".png"):
            if not data.startswith(b"\x89PNG\r\n\x1a\n") or not data.endswith(b"IEND\xaeB`\x82"):
                return "not a complete PNG"
    except (ValueError, KeyError, struct.error) as e:
        return f"{type(e).__name__}: {e}"
    return None


def check_folder(out):
    for d, dirs, files in os.walk(out):
        dirs[:] = [x for x in dirs if not x.startswith(".")]  # hidden temporaries: unfinished by design
        for f in files:
            if f.startswith("."):
                continue
            why = whole(os.path.join(d, f))
            if why:
                return f"{os.path.join(d, f)}: half-written ({why})"
    return None


def fill(disk):
    """Fills the tmpfs at `disk` to the last byte (unbuffered, so that closing the file writes nothing)."""
    with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def run_with_fault(kind, delay, binary, out, disk):
    """Starts the run, applies the fault after `delay` seconds; (exit status, stderr)."""
    cmd = command(binary, out)
    if kind == "ro":
        # The run and the remount share a mount namespace of their own, gone when they end.
        script = ('"$@" 2>"$ERR" & pid=$!; sleep "$DELAY"; '
                  'mount --bind "$OUT" "$OUT" && mount -o remount,bind,ro "$OUT"; wait $pid')
        err = os.path.join(os.path.dirname(out), "stderr")
        env = dict(os.environ, ERR=err, DELAY=f"{delay:.3f}", OUT=out)
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *cmd], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL)
        with open(err, encoding="utf-8", errors="replace") as f:
            return p.returncode, f.read()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        if kind == "kill":
            p.send_signal(signal.SIGKILL)
        elif kind == "term":
            p.send_signal(signal.SIGTERM)
        elif kind == "full":
            fill(disk)
    _, err = p.communicate()
    filler = os.path.join(disk, "filler")
    if os.path.exists(filler):
        os.remove(filler)
    return p.returncode, err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--bin", default=os.environ.get("DISTILL_BIN", "target/debug/distill"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmpfs-mib", type=int, default=64)
    a = ap.parse_args()
    binary = os.path.abspath(os.path.join(ROOT, a.bin))
    if os.environ.get("FAULT_LOOP_NS") != "1":
        env = dict(os.environ, FAULT_LOOP_NS="1")
        os.execvpe("unshare", ["unshare", "-rm", sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                   env)
    work = tempfile.mkdtemp(prefix="fault-loop-")
    disk = os.path.join(work, "disk")
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.tmpfs_mib}m", "none", disk], check=True)
    try:
        return loop(a, binary, work, disk)
    finally:
        subprocess.run(["umount", "-l", disk])
        shutil.rmtree(work, ignore_errors=True)


def loop(a, binary, work, disk):
    rng = random.Random(a.seed)
    ref = os.path.join(work, "ref")
    t0 = time.monotonic()
    subprocess.run(command(binary, ref), cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    span = time.monotonic() - t0
    want = {f: sha(os.path.join(ref, f)) for f in COMPARED}
    print(f"uninterrupted run: {span:.2f} s; faults at uniform random points within it", flush=True)
    out = os.path.join(disk, "run")
    tally = {k: {"applied": 0, "interrupted": 0, "named": 0} for k in ("kill", "term", "full", "ro")}
    rounds = 0
    for i in range(a.faults):
        kind = rng.choice(list(tally))
        rc, err = run_with_fault(kind, rng.uniform(0.0, span), binary, out, disk)
        t = tally[kind]
        t["applied"] += 1
        if "panicked" in err:
            sys.exit(f"fault {i} ({kind}): a panic:\n{err}")
        if rc != 0:
            t["interrupted"] += 1
            if kind in MESSAGES:
                # A fault that leaves a message names what happened and where.
                text, path = MESSAGES[kind]
                lines = [l for l in err.splitlines() if l.startswith("error:")]
                if not any(text in l and (out in l or not path) for l in lines):
                    sys.exit(f"fault {i} ({kind}): the error does not name the fault and the path:\n{err}")
                t["named"] += 1
        why = check_folder(out)
        if why:
            sys.exit(f"fault {i} ({kind}): {why}")
        if rc == 0:
            rounds += finish_round(out, want, i)
    # The last round, to the end without faults.
    done = subprocess.run(command(binary, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"the final restart failed:\n{done.stderr}")
    rounds += finish_round(out, want, a.faults)
    interrupted = sum(t["interrupted"] for t in tally.values())
    print(f"{a.faults} faults ({interrupted} of them stopped a run), {rounds} rounds run to the end, "
          f"every one byte-identical to the uninterrupted run; no half-written file after any fault.")
    print("| fault | applied | stopped a run | error named the fault (and the path) |")
    print("|---|---:|---:|---:|")
    for k, t in tally.items():
        named = t["named"] if k in MESSAGES else "n/a (no message)"
        print(f"| {k} | {t['applied']} | {t['interrupted']} | {named} |")
    return 0


def finish_round(out, want, i):
    got = {f: sha(os.path.join(out, f)) for f in want}
    bad = [f for f in want if got[f] != want[f]]
    if bad:
        sys.exit(f"after fault {i}: the finished run differs from the uninterrupted one in {bad}")
    shutil.rmtree(out)
    return 1


if __name__ == "__main__":
    sys.exit(main())
