"""PyTorch twins of the second-order score-matching steps in `benches/train.rs` (issue 9).

Seed 000's time-conditioned MLP (sinusoidal embedding 128 -> Linear -> SiLU -> Linear, concatenated
to x, three hidden layers of 128 with SiLU, output 2; 83,074 parameters, asserted), batch 256,
t = 0, one Adam step each, written the idiomatic way with autograd.grad(create_graph=True):

- esm:    explicit score matching, 0.5*|s|^2 + tr(ds/dx), the trace exact over both input dims;
- ssm_vr: sliced score matching with one Gaussian projection, variance-reduced,
          0.5*|s|^2 + v^T (ds/dx) v.

Run beside `cargo bench --bench train --features flex -- '_loss_backward_adam'` on an idle machine:

    python benches/reference/torch_second_order.py [--steps 200]
"""
import argparse
import math
import time

import torch
import torch.nn as nn

PARAMS = 83_074  # score_nets::TimeMlp with the bench's config, Module::num_params


class Sinusoidal(nn.Module):
    def __init__(self, dim, max_period=10000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half))

    def forward(self, t):
        a = t[:, None] * self.freqs[None]
        return torch.cat([a.cos(), a.sin()], -1)


class SeedMlp(nn.Module):
    def __init__(self, d=2, hidden=128, layers=3, emb=128):
        super().__init__()
        self.emb = nn.Sequential(Sinusoidal(emb), nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        mods, width = [], d + emb
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        mods.append(nn.Linear(width, d))
        self.body = nn.Sequential(*mods)

    def forward(self, x, t):
        return self.body(torch.cat([x, self.emb(t)], -1))


def esm_loss(model, x, t):
    x = x.detach().requires_grad_(True)
    s = model(x, t)
    trace = 0.0
    for j in range(x.shape[1]):
        (g,) = torch.autograd.grad(s[:, j].sum(), x, create_graph=True)
        trace = trace + g[:, j]
    return (0.5 * (s**2).sum(1) + trace).mean()


def ssm_vr_loss(model, x, t):
    x = x.detach().requires_grad_(True)
    v = torch.randn_like(x)
    s = model(x, t)
    (jtv,) = torch.autograd.grad((s * v).sum(), x, create_graph=True)
    return (0.5 * (s**2).sum(1) + (jtv * v).sum(1)).mean()


def ms_per_step(loss_fn, steps, batch=256):
    torch.manual_seed(0)
    model = SeedMlp()
    n = sum(p.numel() for p in model.parameters())
    assert n == PARAMS, f"{n} parameters, the Rust network has {PARAMS}"
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(batch, 2) * 4.0
    t = torch.zeros(batch)

    def step():
        loss = loss_fn(model, x, t)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(20):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps * 1e3


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    print(f"torch esm_exact_trace step batch 256: {ms_per_step(esm_loss, args.steps):.3f} ms/step")
    print(f"torch ssm_vr_1proj step batch 256: {ms_per_step(ssm_vr_loss, args.steps):.3f} ms/step")
