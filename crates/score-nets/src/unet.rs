//! A U-Net score network for images (Ronneberger et al. 2015, in the form of DDPM, Ho et al.
//! 2020): residual blocks with GroupNorm and the time embedding injected in every block,
//! stride-2 convolutions down, nearest-neighbour upsampling + convolution up, skip connections
//! between matching resolutions, single-head self-attention at the bottleneck and at chosen
//! levels, and per-level channel multipliers.
//!
//! Odd sizes are handled by upsampling to the size of the skip it meets, so 28×28 (MNIST:
//! 28 → 14 → 7) and 32×32 both work. The U-Net is meant for first-order losses (DSM, the SDE
//! loss, DDPM's ε-loss). On the CPU backends its convolutions and GroupNorm + SiLU run on
//! score-nets' own kernels ([`crate::cpu_ops`]); elsewhere on burn's ops.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, backend::Backend};

use crate::cpu_ops::{cat_channels, conv2d, group_norm};
use crate::embedding::{TimeEmbedding, TimeEmbeddingConfig};
use crate::error::{NetsError, Result as NetsResult, ensure_nonzero};
use crate::layers::{Activation, dense, seeded_init};
use crate::model::TimeNet;

fn conv3<B: Backend>(cin: usize, cout: usize, stride: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

fn check_groups(what: String, channels: usize, groups: usize) -> NetsResult<()> {
    if channels.is_multiple_of(groups) {
        Ok(())
    } else {
        Err(NetsError::GroupsDoNotDivide {
            what,
            channels,
            groups,
        })
    }
}

/// Configuration of a [`ResBlock`].
#[derive(Config, Debug)]
pub struct ResBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Width of the time embedding fed to the block.
    pub embed_dim: usize,
    /// GroupNorm groups (must divide both channel counts).
    #[config(default = 8)]
    pub groups: usize,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// `h = conv(act(GN(x))) + W·act(e)`, `out = skip(x) + conv(act(GN(h)))`: a residual block with
/// the time embedding added between its two convolutions (DDPM's `ResnetBlock`, no dropout).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    /// Norm before the first convolution.
    pub norm1: GroupNorm<B>,
    /// First 3×3 convolution.
    pub conv1: Conv2d<B>,
    /// Projection of the time embedding to the output channels.
    pub time: Linear<B>,
    /// Norm before the second convolution.
    pub norm2: GroupNorm<B>,
    /// Second 3×3 convolution.
    pub conv2: Conv2d<B>,
    /// 1×1 convolution on the residual path when the channel count changes.
    pub skip: Option<Conv2d<B>>,
}

impl ResBlockConfig {
    /// Validates the configuration and builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<ResBlock<B>> {
        let (ci, co) = (self.in_channels, self.out_channels);
        ensure_nonzero("groups", self.groups)?;
        check_groups(format!("res block input {ci}"), ci, self.groups)?;
        check_groups(format!("res block output {co}"), co, self.groups)?;
        let block = ResBlock {
            norm1: GroupNormConfig::new(self.groups, ci).init(device),
            conv1: conv3(ci, co, 1, device),
            time: LinearConfig::new(self.embed_dim, co).init(device),
            norm2: GroupNormConfig::new(self.groups, co).init(device),
            conv2: conv3(co, co, 1, device),
            skip: (ci != co).then(|| Conv2dConfig::new([ci, co], [1, 1]).init(device)),
        };
        Ok(seeded_init(block, self.seed))
    }
}

impl<B: Backend> ResBlock<B> {
    /// # Shapes
    /// - `x`: `[n, in_channels, h, w]`, `emb`: `[n, embed_dim]` (already activated)
    /// - output: `[n, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, emb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = conv2d(&self.conv1, group_norm(&self.norm1, x.clone(), None, true));
        // The time embedding, added per channel, goes into the second norm's fused op.
        let shift = dense(&self.time, emb);
        let h = conv2d(&self.conv2, group_norm(&self.norm2, h, Some(shift), true));
        let x = match &self.skip {
            Some(s) => conv2d(s, x),
            None => x,
        };
        x + h
    }
}

/// Configuration of an [`AttentionBlock`].
#[derive(Config, Debug)]
pub struct AttentionBlockConfig {
    /// Channels.
    pub channels: usize,
    /// GroupNorm groups (must divide `channels`).
    #[config(default = 8)]
    pub groups: usize,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// Single-head self-attention over the pixels, with a residual connection: `x + proj(attn)`
/// where `attn = softmax(q kᵀ/√c) v` on `GN(x)` (DDPM's `AttnBlock`).
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    /// Input norm.
    pub norm: GroupNorm<B>,
    /// Query map.
    pub query: Linear<B>,
    /// Key map.
    pub key: Linear<B>,
    /// Value map.
    pub value: Linear<B>,
    /// Output map.
    pub proj: Linear<B>,
}

impl AttentionBlockConfig {
    /// Validates the configuration and builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<AttentionBlock<B>> {
        ensure_nonzero("groups", self.groups)?;
        check_groups(
            format!("attention {}", self.channels),
            self.channels,
            self.groups,
        )?;
        let c = self.channels;
        let lin = || LinearConfig::new(c, c).init(device);
        let block = AttentionBlock {
            norm: GroupNormConfig::new(self.groups, c).init(device),
            query: lin(),
            key: lin(),
            value: lin(),
            proj: lin(),
        };
        Ok(seeded_init(block, self.seed))
    }
}

impl<B: Backend> AttentionBlock<B> {
    /// # Shapes
    /// - `x`: `[n, c, h, w]`; output: `[n, c, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let z = group_norm(&self.norm, x.clone(), None, false)
            .reshape([n, c, h * w])
            .swap_dims(1, 2);
        let q = self.query.forward(z.clone());
        let k = self.key.forward(z.clone());
        let v = self.value.forward(z);
        // softmax(q kᵀ / √c), one host op on the CPU backends (`cpu_ops::scaled_softmax`).
        let weights =
            crate::cpu_ops::scaled_softmax(q.matmul(k.swap_dims(1, 2)), 1.0 / (c as f64).sqrt());
        let attn = weights.matmul(v);
        let out = self
            .proj
            .forward(attn)
            .swap_dims(1, 2)
            .reshape([n, c, h, w]);
        x + out
    }
}

/// Configuration of a [`UNet`]. The defaults are the MNIST configuration, sized to train on a
/// CPU: 1 channel, base width 32, multipliers `[1, 2, 2]` (28 → 14 → 7), one residual block per
/// level, no convolution after upsampling (the block after the skip concatenation mixes
/// anyway; at 28×28 that convolution alone cost as much as a residual block), attention at the
/// 7×7 bottleneck only, GroupNorm with 8 groups, a 32-wide sinusoidal embedding with an MLP
/// to 128 — 719,841 parameters (checked by the `mnist_unet_shapes_and_parameter_count` test).
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Channels of the input image.
    #[config(default = 1)]
    pub in_channels: usize,
    /// Channels of the output; `None` gives `in_channels`.
    #[config(default = "None")]
    pub out_channels: Option<usize>,
    /// Width of the first level; level `i` has `base_channels · channel_mults[i]` channels.
    #[config(default = 32)]
    pub base_channels: usize,
    /// Channel multiplier per resolution level; each level after the first halves the size.
    #[config(default = "vec![1, 2, 2]")]
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level (the up path uses the same number).
    #[config(default = 1)]
    pub num_res_blocks: usize,
    /// Whether a 3×3 convolution follows each nearest-neighbour upsampling (DDPM's
    /// `resamp_with_conv`).
    #[config(default = false)]
    pub upsample_conv: bool,
    /// Levels (indices into `channel_mults`) whose blocks are followed by self-attention.
    #[config(default = "Vec::new()")]
    pub attention_levels: Vec<usize>,
    /// Whether the bottleneck has self-attention between its two residual blocks.
    #[config(default = true)]
    pub mid_attention: bool,
    /// GroupNorm groups; must divide every channel count of the network.
    #[config(default = 8)]
    pub groups: usize,
    /// The time embedding.
    #[config(default = "TimeEmbeddingConfig::new().with_dim(32).with_out_dim(Some(128))")]
    pub embedding: TimeEmbeddingConfig,
    /// Seed of the initial weights ([`seeded_init`]): the same config
    /// and seed give the same parameters on every run, whatever else the process does. Inside a
    /// larger network, the outer network's seed decides.
    #[config(default = 0)]
    pub seed: u64,
}
/// The U-Net; built by [`UNetConfig::init`].
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    /// Time embedding.
    pub embedding: TimeEmbedding<B>,
    /// Input 3×3 convolution to `base_channels`.
    pub conv_in: Conv2d<B>,
    /// Residual blocks of each level on the way down.
    pub down_blocks: Vec<Vec<ResBlock<B>>>,
    /// Attention after each down block of a level (empty where the level has none).
    pub down_attention: Vec<Vec<AttentionBlock<B>>>,
    /// Stride-2 convolutions between levels.
    pub downsample: Vec<Conv2d<B>>,
    /// First bottleneck block.
    pub mid_block1: ResBlock<B>,
    /// Bottleneck attention.
    pub mid_attention: Option<AttentionBlock<B>>,
    /// Second bottleneck block.
    pub mid_block2: ResBlock<B>,
    /// Convolutions after each nearest-neighbour upsampling, deepest first (empty without
    /// `upsample_conv`).
    pub upsample: Vec<Conv2d<B>>,
    /// Residual blocks of each level on the way up, deepest level first.
    pub up_blocks: Vec<Vec<ResBlock<B>>>,
    /// Attention after each up block of a level, deepest level first.
    pub up_attention: Vec<Vec<AttentionBlock<B>>>,
    /// Output norm.
    pub norm_out: GroupNorm<B>,
    /// Output 3×3 convolution.
    pub conv_out: Conv2d<B>,
}

impl UNetConfig {
    /// The MNIST configuration (the defaults).
    pub fn mnist() -> Self {
        Self::new()
    }

    /// A CIFAR-10-sized configuration in DDPM's layout, smaller: 3 channels, base 64,
    /// multipliers `[1, 2, 2, 2]` (32 → 16 → 8 → 4), two residual blocks per level, convolutions
    /// after upsampling, attention at 16×16 and at the bottleneck.
    pub fn cifar10() -> Self {
        Self::new()
            .with_in_channels(3)
            .with_base_channels(64)
            .with_channel_mults(vec![1, 2, 2, 2])
            .with_num_res_blocks(2)
            .with_upsample_conv(true)
            .with_attention_levels(vec![1])
            .with_embedding(
                TimeEmbeddingConfig::new()
                    .with_dim(64)
                    .with_out_dim(Some(256)),
            )
    }

    fn channels(&self, level: usize) -> usize {
        self.base_channels * self.channel_mults[level]
    }

    /// Checks sizes, attention levels and that the GroupNorm groups divide every channel count.
    pub fn validate(&self) -> NetsResult<()> {
        ensure_nonzero("in_channels", self.in_channels)?;
        if let Some(o) = self.out_channels {
            ensure_nonzero("out_channels", o)?;
        }
        ensure_nonzero("base_channels", self.base_channels)?;
        ensure_nonzero("number of channel multipliers", self.channel_mults.len())?;
        for &m in &self.channel_mults {
            ensure_nonzero("channel multiplier", m)?;
        }
        ensure_nonzero("num_res_blocks", self.num_res_blocks)?;
        ensure_nonzero("groups", self.groups)?;
        let levels = self.channel_mults.len();
        if let Some(&level) = self.attention_levels.iter().find(|&&l| l >= levels) {
            return Err(NetsError::InvalidLevel { level, levels });
        }
        check_groups("base".into(), self.base_channels, self.groups)?;
        for i in 0..levels {
            check_groups(format!("level {i}"), self.channels(i), self.groups)?;
            let below = if i + 1 < levels {
                self.channels(i + 1)
            } else {
                self.channels(i)
            };
            check_groups(
                format!("level {i} skip concatenation"),
                below + self.channels(i),
                self.groups,
            )?;
        }
        self.embedding.validate()
    }

    /// Validates the configuration and builds the network with initialised parameters.
    pub fn init<B: Backend>(&self, device: &B::Device) -> NetsResult<UNet<B>> {
        self.validate()?;
        let levels = self.channel_mults.len();
        let e = self.embedding.output_dim();
        let g = self.groups;
        let res = |ci, co| ResBlockConfig::new(ci, co, e).with_groups(g).init(device);
        let attn = |c| AttentionBlockConfig::new(c).with_groups(g).init(device);
        let mut down_blocks = Vec::new();
        let mut down_attention = Vec::new();
        let mut downsample = Vec::new();
        let mut ch = self.base_channels;
        for i in 0..levels {
            let co = self.channels(i);
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for _ in 0..self.num_res_blocks {
                blocks.push(res(ch, co)?);
                ch = co;
                if self.attention_levels.contains(&i) {
                    attns.push(attn(co)?);
                }
            }
            down_blocks.push(blocks);
            down_attention.push(attns);
            if i + 1 < levels {
                downsample.push(conv3(co, co, 2, device));
            }
        }
        let mid_block1 = res(ch, ch)?;
        let mid_attention = if self.mid_attention {
            Some(attn(ch)?)
        } else {
            None
        };
        let mid_block2 = res(ch, ch)?;
        let mut upsample = Vec::new();
        let mut up_blocks = Vec::new();
        let mut up_attention = Vec::new();
        for i in (0..levels).rev() {
            if i + 1 < levels && self.upsample_conv {
                upsample.push(conv3(ch, ch, 1, device));
            }
            let co = self.channels(i);
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for b in 0..self.num_res_blocks {
                let ci = if b == 0 { ch + co } else { co };
                blocks.push(res(ci, co)?);
                if self.attention_levels.contains(&i) {
                    attns.push(attn(co)?);
                }
            }
            ch = co;
            up_blocks.push(blocks);
            up_attention.push(attns);
        }
        let net = UNet {
            embedding: self.embedding.init(device)?,
            conv_in: conv3(self.in_channels, self.base_channels, 1, device),
            down_blocks,
            down_attention,
            downsample,
            mid_block1,
            mid_attention,
            mid_block2,
            upsample,
            up_blocks,
            up_attention,
            norm_out: GroupNormConfig::new(g, ch).init(device),
            conv_out: conv3(ch, self.out_channels.unwrap_or(self.in_channels), 1, device),
        };
        Ok(seeded_init(net, self.seed))
    }
}

impl<B: Backend> UNet<B> {
    /// `f(x, t)`.
    ///
    /// # Shapes
    /// - `x`: `[n, in_channels, h, w]` (any `h, w` ≥ 1), `t`: `[n]`
    /// - output: `[n, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let emb = Activation::Silu.forward(self.embedding.forward(t));
        let mut h = conv2d(&self.conv_in, x);
        let mut skips = Vec::with_capacity(self.down_blocks.len());
        for (i, blocks) in self.down_blocks.iter().enumerate() {
            for (b, block) in blocks.iter().enumerate() {
                h = block.forward(h, emb.clone());
                if let Some(a) = self.down_attention[i].get(b) {
                    h = a.forward(h);
                }
            }
            skips.push(h.clone());
            if let Some(down) = self.downsample.get(i) {
                h = conv2d(down, h);
            }
        }
        h = self.mid_block1.forward(h, emb.clone());
        if let Some(a) = &self.mid_attention {
            h = a.forward(h);
        }
        h = self.mid_block2.forward(h, emb.clone());
        for (j, blocks) in self.up_blocks.iter().enumerate() {
            let skip = skips.pop().expect("one skip per level");
            if j > 0 {
                let [_, _, sh, sw] = skip.dims();
                h = interpolate(
                    h,
                    [sh, sw],
                    InterpolateOptions::new(InterpolateMode::Nearest),
                );
                if let Some(conv) = self.upsample.get(j - 1) {
                    h = conv2d(conv, h);
                }
            }
            h = cat_channels(h, skip);
            for (b, block) in blocks.iter().enumerate() {
                h = block.forward(h, emb.clone());
                if let Some(a) = self.up_attention[j].get(b) {
                    h = a.forward(h);
                }
            }
        }
        conv2d(&self.conv_out, group_norm(&self.norm_out, h, None, true))
    }
}

impl<B: Backend> TimeNet<B, 4> for UNet<B> {
    fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        UNet::forward(self, x, t)
    }
}
