"""Issue 8's comparison: the U-Net benches of `benches/nets.rs` (Flex) beside the PyTorch twin
`torch_unet.py`, run back to back and interleaved (twin, bench, twin, bench, ...), medians of the
rounds (5 by default, as issue 8 asks), and the ratio PyTorch time / our time (≥ 1 means at
least as fast as PyTorch).

    python benches/reference/compare_unet.py [--rounds 5] [--python PY] [--threads 2]

Run it on an otherwise idle machine: no build, no other benchmark. The twin's own figure for the
MNIST train step should read ~178-186 ms on the 2-core reference machine; a slower one means the
machine was busy and the ratio is not to be trusted (it is printed beside the result).
Needs PyTorch in the interpreter given by --python (default: python3).
"""
import argparse
import re
import statistics
import subprocess
import sys

# (bench id in benches/nets.rs, twin config, twin figure)
PAIRS = [
    ("flex/unet_mnist_forward_b64", "mnist", "forward_ms"),
    ("flex/unet_mnist_train_step_b64", "mnist", "step_ms"),
    ("flex/unet_cifar10_forward_b32", "cifar10", "forward_ms"),
    ("flex/unet_cifar10_train_step_b32", "cifar10", "step_ms"),
]
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def run_twin(python, config, threads, script):
    out = subprocess.run(
        [python, script, config, str(threads)], check=True, capture_output=True, text=True
    ).stdout
    return {m[1]: float(m[2]) for m in re.finditer(rf"^{config} (\w+) ([\d.]+)$", out, re.M)}


def run_bench():
    pattern = "flex/unet_(mnist_forward_b64$|mnist_train_step|cifar10)"
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "nets", "--", pattern],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {}
    for m in re.finditer(r"^(\S+)\s*\n?\s+time:\s+\[\S+ \S+ ([\d.]+) (\S+)", out, re.M):
        found[m[1]] = float(m[2]) * UNITS[m[3]]
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)  # issue 8: x5 each, medians
    ap.add_argument("--python", default="python3")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    script = __file__.replace("compare_unet.py", "torch_unet.py")
    twin = {(c, f): [] for _, c, f in PAIRS}
    ours = {b: [] for b, _, _ in PAIRS}
    for r in range(args.rounds):
        for config in ("mnist", "cifar10"):
            for fig, v in run_twin(args.python, config, args.threads, script).items():
                if (config, fig) in twin:  # not the parameter count
                    twin[(config, fig)].append(v)
        for bench, v in run_bench().items():
            if bench in ours:
                ours[bench].append(v)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print("| work | this library (Flex) | PyTorch | ratio (PyTorch / ours) | rounds: ours | rounds: PyTorch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for bench, config, fig in PAIRS:
        a, b = ours[bench], twin[(config, fig)]
        if not a or not b:
            print(f"| {bench} | missing | missing | | | |")
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        rounds = lambda xs: ", ".join(f"{x:.0f}" for x in xs)
        print(
            f"| {bench} | {ma:.0f} ms | {mb:.0f} ms | {mb / ma:.2f}x | {rounds(a)} | {rounds(b)} |"
        )


if __name__ == "__main__":
    main()
