"""PyTorch twin of score-nets' U-Net, for the speed comparison of issue 8.

Builds the same network as `UNetConfig::mnist()` (719,841 parameters) or `UNetConfig::cifar10()`
and times, at the benches' batch sizes, a forward pass (what a sampler pays per network
evaluation) and a train step (forward, backward of a mean-square loss, Adam update).

    python benches/reference/torch_unet.py mnist [threads]     # batch 64, 1x28x28
    python benches/reference/torch_unet.py cifar10 [threads]   # batch 32, 3x32x32

Prints one line per figure: `<config> forward_ms <median>` and `<config> step_ms <median>`
(medians of 10 timed repetitions after 2 warm-up calls), as benches/reference/compare_unet.py
reads them.
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (in_channels, base, mults, res_blocks, upsample_conv, attention_levels, emb_dim, emb_out,
#  batch, image size)
CONFIGS = {
    "mnist": (1, 32, (1, 2, 2), 1, False, (), 32, 128, 64, 28),
    "cifar10": (3, 64, (1, 2, 2, 2), 2, True, (1,), 64, 256, 32, 32),
}
GROUPS = 8


class TimeEmbedding(nn.Module):
    """Sinusoidal features [cos, sin] of 1000·t (score-nets' order; DDPM writes [sin, cos],
    diffusers' `flip_sin_to_cos=True` gives this one), then Linear → SiLU → Linear."""

    def __init__(self, dim, out):
        super().__init__()
        self.dim = dim
        self.mlp_in = nn.Linear(dim, out)
        self.mlp_out = nn.Linear(out, out)

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
        angles = 1000.0 * t[:, None] * freqs[None]
        features = torch.cat([angles.cos(), angles.sin()], dim=1)
        return self.mlp_out(F.silu(self.mlp_in(features)))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, groups=GROUPS):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nn.Module):
    def __init__(self, c, groups=GROUPS):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.query, self.key, self.value, self.proj = (nn.Linear(c, c) for _ in range(4))

    def forward(self, x):
        n, c, h, w = x.shape
        z = self.norm(x).reshape(n, c, h * w).transpose(1, 2)
        scores = self.query(z) @ self.key(z).transpose(1, 2) / math.sqrt(c)
        out = self.proj(torch.softmax(scores, dim=2) @ self.value(z))
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class UNet(nn.Module):
    def __init__(self, cin, base, mults, blocks, upsample_conv, attn_levels, emb_dim, emb_out,
                 groups=GROUPS):
        super().__init__()
        self.embedding = TimeEmbedding(emb_dim, emb_out)
        self.conv_in = nn.Conv2d(cin, base, 3, padding=1)
        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        ch = base
        for i, m in enumerate(mults):
            co = base * m
            level, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(ch, co, emb_out, groups))
                ch = co
                if i in attn_levels:
                    attns.append(Attention(co, groups))
            self.down.append(level)
            self.down_attn.append(attns)
            if i + 1 < len(mults):
                self.downsample.append(nn.Conv2d(co, co, 3, stride=2, padding=1))
        self.mid1 = ResBlock(ch, ch, emb_out, groups)
        self.mid_attn = Attention(ch, groups)
        self.mid2 = ResBlock(ch, ch, emb_out, groups)
        self.up, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(mults))):
            if i + 1 < len(mults) and upsample_conv:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
            co = base * mults[i]
            level, attns = nn.ModuleList(), nn.ModuleList()
            for b in range(blocks):
                level.append(ResBlock(ch + co if b == 0 else co, co, emb_out, groups))
                if i in attn_levels:
                    attns.append(Attention(co, groups))
            ch = co
            self.up.append(level)
            self.up_attn.append(attns)
        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, cin, 3, padding=1)

    def forward(self, x, t):
        emb = F.silu(self.embedding(t))
        h = self.conv_in(x)
        skips = []
        for i, level in enumerate(self.down):
            for b, block in enumerate(level):
                h = block(h, emb)
                if b < len(self.down_attn[i]):
                    h = self.down_attn[i][b](h)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for j, level in enumerate(self.up):
            skip = skips.pop()
            if j > 0:
                h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
                if j - 1 < len(self.upsample):
                    h = self.upsample[j - 1](h)
            h = torch.cat([h, skip], dim=1)
            for b, block in enumerate(level):
                h = block(h, emb)
                if b < len(self.up_attn[j]):
                    h = self.up_attn[j][b](h)
        return self.conv_out(F.silu(self.norm_out(h)))


def median_seconds(f, reps=10):
    f()
    f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "mnist"
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    torch.manual_seed(0)
    cin, base, mults, blocks, upc, attn, ed, eo, batch, size = CONFIGS[name]
    net = UNet(cin, base, mults, blocks, upc, attn, ed, eo)
    print(f"{name} params {sum(p.numel() for p in net.parameters())}")
    opt = torch.optim.Adam(net.parameters(), 2e-4)
    x = torch.randn(batch, cin, size, size)
    t = torch.rand(batch)

    def forward():
        with torch.no_grad():
            net(x, t)

    def step():
        opt.zero_grad()
        loss = ((net(x, t) - x) ** 2).mean()
        loss.backward()
        opt.step()

    print(f"{name} forward_ms {median_seconds(forward) * 1e3:.1f}")
    print(f"{name} step_ms {median_seconds(step) * 1e3:.1f}")


if __name__ == "__main__":
    main()
