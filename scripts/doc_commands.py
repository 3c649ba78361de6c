#!/usr/bin/env python3
"""Every shell command in README.md, docs/*.md and the crates' READMEs, run as written or accounted for.

The documentation's commands are collected from its ```sh blocks and from inline code that
starts with `cargo`, `python`, `scripts/` or `.ci/`. Each one must appear in exactly one table
below, or this script fails (so a new command in the docs cannot go unchecked):

- RUN: under 2 minutes here once the build is warm; run as written from the repository root,
  and a non-zero exit fails the script;
- IN_CI: what `.ci/run` itself runs (the test command, fmt, clippy, doc);
- LONG: over 2 minutes here, listed with the time measured on this 2-core machine;
- BENCH: criterion benches, listed with their measured wall time (release build warm), not run
  by CI: timings taken on a shared CI machine say nothing, and `cargo clippy --all-targets`
  already compiles every bench;
- ELSEWHERE: commands that need something CI does not have (a GPU, a browser, PyTorch) or are
  not complete commands (`cargo run` in a sentence).

    python3 scripts/doc_commands.py          # check the tables, run RUN
    python3 scripts/doc_commands.py --list   # check the tables only
"""
import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN = [
    # release build of the 2-D demo; trains 4,000 steps and draws the figures
    "cargo run --release --example ring_2d -- --out docs/img",
    # release build; every sampler and ODE solver against NFE on the exact ring score
    "cargo run --release --example nfe_figure -- --out docs/img",
    # the few-step samplers' quality and convergence-order tests, with their figures printed
    "cargo test --workspace --test few_step_quality -- --nocapture",
    "cargo test --workspace --test few_step_order -- --nocapture",
    # release build; two data-parallel workers as threads train the ring MLP 2,000 steps (~15 s)
    "cargo run --release --example train_distributed -- threads --workers 2",
]

IN_CI = [
    "cargo test --workspace",
    # the documentation's Rust blocks: part of the test command above
    "cargo test --workspace --doc",
    "cargo fmt --check",
    "cargo clippy -D warnings",
    "cargo doc",
    ".ci/run",
    "scripts/doc_commands.py",
]

LONG = {
    "cargo run --release --example mnist_ve_sde": "22 min 45 s, measured (README: the default run)",
    "cargo run --example mnist_ve_sde": "the same run in a debug build: far longer, not timed",
    "cargo run --release -p score-eval --example train_judge": "363 s, measured (README)",
}

# Wall times of the whole command, measured one after another on the idle machine on 2026-11-27
# with the release build of the benches warm (`time`); CI-sized criterion runs unless
# SCORE_BENCH_FULL is set.
BENCH = {
    "cargo bench --bench backends --features flex": "23 s measured",
    "cargo bench --bench train -- ddpm_eps": "19 s measured",
    "SCORE_BENCH_FULL=1 cargo bench --bench samplers -- pc_rd_langevin": "74 s measured (10k "
    "samples x 100 steps per iteration, on two backends)",
    "cargo bench --bench nets --features flex": "224 s measured (U-Net steps of 0.2-4 s, "
    "10 samples each)",
    "cargo bench --bench nets": "199 s measured (the same benches: flex is a default feature)",
}

ELSEWHERE = {
    "cargo run --release --example mnist_ve_sde --features cuda": "needs an NVIDIA GPU and CUDA",
    "scripts/wgpu-check.sh": "needs a GPU (or Mesa's lavapipe) and a wgpu build: 10-25 min",
    "python benches/reference/compare_unet.py --python <python with torch>": "needs PyTorch; "
    "each round runs the twin and the release benches of nets.rs",
    "python ../shared/perf/torch_energy_dsm.py": "needs PyTorch; the energy-DSM twin of "
    "benches/train.rs energy_dsm_2x128_*",
    "python benches/reference/torch_second_order.py": "needs PyTorch; the ESM and SSM-VR twins "
    "of benches/train.rs esm_exact_trace_* and ssm_vr_1proj_*",
    "cargo run --release --example mnist_ve_sde -- --judge-idx mnist_ref_6min-images-idx3-ubyte":
    "needs the PyTorch recipe's output (README: against the PyTorch recipe)",
    "cargo run --release --example train_distributed -- orchestrator --port 3000": "a server "
    "that runs until Ctrl-C; tests/distributed.rs starts it with its node processes",
    "cargo run --release --example train_distributed -- node --node 0 --nodes 2 --orchestrator "
    "ws://10.0.0.1:3000 --host 10.0.0.1 --port 3001": "needs the orchestrator and a second "
    "machine (10.0.0.2); tests/distributed.rs runs the same on localhost",
    "cargo run --release --example train_distributed -- node --node 1 --nodes 2 --orchestrator "
    "ws://10.0.0.1:3000 --host 10.0.0.2 --port 3001": "the second machine of the line above",
    "cargo run": "a phrase in a sentence, not a command",
    "cargo": "a word in a sentence, not a command",
}
for crate in ["core", "nets", "train", "sample", "data", "eval"]:
    ELSEWHERE[f"cargo doc -p score-{crate} --open"] = (
        "opens a browser; CI builds the same docs with cargo doc --workspace --no-deps"
    )

INLINE = re.compile(r"`((?:SCORE_[A-Z_]+=\S+ )?(?:cargo|python|scripts/|\.ci/)[^`]*)`")


def doc_commands():
    """(command, file) for every command the documentation shows."""
    files = ["README.md"] + sorted(glob.glob("docs/*.md")) + sorted(glob.glob("crates/*/README.md"))
    found = []
    for path in files:
        in_sh = False
        for line in open(os.path.join(ROOT, path), encoding="utf-8"):
            stripped = line.strip()
            if stripped.startswith("```"):
                in_sh = not in_sh and stripped in ("```sh", "```bash", "```shell")
                continue
            if in_sh:
                command = re.sub(r"\s+#.*$", "", stripped)  # a trailing comment
                if command and not command.startswith("#"):
                    found.append((command, path))
            else:
                found.extend((m.group(1), path) for m in INLINE.finditer(line))
    return found


def main():
    known = set(RUN) | set(IN_CI) | set(LONG) | set(BENCH) | set(ELSEWHERE)
    missing = sorted({(c, f) for c, f in doc_commands() if c not in known})
    if missing:
        for c, f in missing:
            print(f"unaccounted command in {f}: {c}")
        sys.exit("add each to a table of scripts/doc_commands.py (run it if under 2 minutes)")
    shown = {c for c, _ in doc_commands()}
    stale = sorted(known - shown)
    if stale:
        sys.exit(f"commands in the tables that no document shows any more: {stale}")
    if "--list" in sys.argv:
        for c in RUN:
            print(f"run        {c}")
        for c in IN_CI:
            print(f"in .ci/run {c}")
        for c, why in LONG.items():
            print(f"long       {c}: {why}")
        for c, why in BENCH.items():
            print(f"bench      {c}: {why}")
        for c, why in ELSEWHERE.items():
            print(f"elsewhere  {c}: {why}")
        return
    for c in RUN:
        print(f"== {c}", flush=True)
        start = time.monotonic()
        subprocess.run(c, shell=True, cwd=ROOT, check=True)
        print(f"== {c}: ok in {time.monotonic() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
