//! The fast CPU convolution (`cpu_ops`) against burn's own `Conv2d` (values and the gradients of
//! input, weight and bias), against central differences, and inside the MNIST U-Net (with the
//! fused GroupNorm of `tests/cpu_norm.rs`); the channel concatenation against burn's `cat`.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use score_nets::cpu_ops::conv::{ConvGeom, conv2d_backward, conv2d_forward};
use score_nets::cpu_ops::{cat_channels, conv2d, with_reference_ops};
use score_nets::{UNet, UNetConfig, seeded_init};

mod common;
use common::{assert_close, max_abs_diff, values};

/// `(ci, co, kernel, stride, padding (top, left, bottom, right), h, w, batch)`.
type Case = (
    usize,
    usize,
    usize,
    usize,
    (usize, usize, usize, usize),
    usize,
    usize,
    usize,
);

const CASES: &[Case] = &[
    (3, 5, 3, 1, (1, 1, 1, 1), 7, 7, 2),
    (3, 4, 3, 2, (1, 1, 1, 1), 7, 7, 1),
    (4, 6, 1, 1, (0, 0, 0, 0), 5, 6, 3),
    (2, 3, 3, 2, (0, 0, 0, 0), 9, 8, 2),
    (3, 2, 3, 1, (0, 0, 0, 0), 7, 7, 1),
    (2, 3, 1, 2, (0, 0, 0, 0), 7, 7, 2),
    (2, 3, 3, 1, (1, 0, 0, 2), 6, 5, 5),
    (1, 8, 3, 1, (1, 1, 1, 1), 28, 28, 1),
    // Stride 1 with the output as wide as the input (im2col's shifted-copy path): a 5×5 kernel
    // wider than half the input, and a padding all on the left and at the bottom, so that whole
    // output rows and columns read only padding.
    (2, 3, 5, 1, (2, 2, 2, 2), 4, 4, 2),
    (1, 2, 3, 1, (0, 2, 3, 0), 3, 3, 1),
    // 33–64 output channels: the forward GEMM writes channels-last and transposes (17 × 3
    // pixels, not a multiple of its 16 × 16 tiles); 33–64 input channels send the stride-1
    // input gradient's convolution down the same path.
    (3, 40, 3, 1, (1, 1, 1, 1), 17, 3, 2),
    (33, 2, 3, 1, (1, 1, 1, 1), 5, 6, 2),
    // 3×3, stride 1, 16 or more channels each way: Winograd F(2×2, 3×3) forward, and for the
    // input gradient (the transposed convolution); odd sizes leave edge tiles half outside the
    // output, and the asymmetric padding moves the tiles' origin. The last has chunks of 98
    // tile columns, so its backward is Winograd's too (both gradients from one transform of dy).
    (16, 17, 3, 1, (1, 1, 1, 1), 7, 5, 3),
    (17, 16, 3, 1, (0, 2, 1, 0), 6, 5, 2),
    (16, 16, 3, 1, (1, 1, 1, 1), 14, 14, 16),
];

fn make_conv<B: Backend>(case: &Case, bias: bool, dev: &B::Device) -> Conv2d<B> {
    let &(ci, co, k, s, (t, l, b, r), ..) = case;
    let conv = Conv2dConfig::new([ci, co], [k, k])
        .with_stride([s, s])
        .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
        .with_bias(bias)
        .init(dev);
    seeded_init(conv, 7)
}

/// Values and gradients of the fast op against burn's op, on `Autodiff<B>` and on `B`.
fn check_against_reference<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    for (i, case) in CASES.iter().enumerate() {
        for bias in [true, false] {
            let what = format!("case {i} {case:?} bias {bias}");
            let &(ci, co, _, _, _, h, w, n) = case;
            let conv: Conv2d<A<B>> = make_conv(case, bias, dev);
            let x = Tensor::<A<B>, 4>::random([n, ci, h, w], Distribution::Normal(0.0, 1.0), dev)
                .require_grad();
            let fast = conv2d(&conv, x.clone());
            let reference = with_reference_ops(|| conv2d(&conv, x.clone()));
            assert_eq!(fast.dims(), reference.dims(), "{what}");
            assert_eq!(fast.dims()[1], co);
            let r = Tensor::<A<B>, 4>::random(fast.dims(), Distribution::Normal(0.0, 1.0), dev);
            assert_close(&what, fast.clone().inner(), reference.clone().inner());
            let gf = (fast * r.clone()).sum().backward();
            let gr = (reference * r).sum().backward();
            assert_close(
                &format!("{what} dx"),
                x.grad(&gf).unwrap(),
                x.grad(&gr).unwrap(),
            );
            let wt = conv.weight.val();
            assert_close(
                &format!("{what} dw"),
                wt.grad(&gf).unwrap(),
                wt.grad(&gr).unwrap(),
            );
            if let Some(b) = &conv.bias {
                let b = b.val();
                assert_close(
                    &format!("{what} db"),
                    b.grad(&gf).unwrap(),
                    b.grad(&gr).unwrap(),
                );
            }
            // The plain backend's forward.
            let conv: Conv2d<B> = conv.valid();
            let x = x.inner();
            let fast = conv2d(&conv, x.clone());
            let reference = with_reference_ops(|| conv2d(&conv, x));
            assert_close(&format!("{what} (no autodiff)"), fast, reference);
        }
    }
}

/// `cat_channels` against burn's `cat`: values, and the gradients of both inputs when each also
/// feeds another term (so the concatenation's gradient is added to one already registered, the
/// U-Net's case), when only one input is tracked, and with batch 1; on the plain backend too.
fn check_cat_channels<B: Backend>(dev: &B::Device) {
    type A<B> = Autodiff<B>;
    for (n, ca, cb, h, w, track_b) in [
        (3, 2, 5, 4, 3, true),
        (1, 4, 1, 2, 7, true),
        (2, 3, 2, 5, 5, false),
    ] {
        let what = format!("cat n {n}, channels {ca} + {cb}, {h}×{w}, b tracked {track_b}");
        let input = |c: usize, seed: u32| {
            let data = TensorData::new(values(n * c * h * w, seed), [n, c, h, w]);
            Tensor::<A<B>, 4>::from_data(data, dev)
        };
        let a = input(ca, 1).require_grad();
        let b = if track_b {
            input(cb, 2).require_grad()
        } else {
            input(cb, 2)
        };
        // Weights that make every output position's gradient different.
        let weight = Tensor::<A<B>, 4>::from_data(
            TensorData::new(values(n * (ca + cb) * h * w, 3), [n, ca + cb, h, w]),
            dev,
        );
        let loss = |cat: Tensor<A<B>, 4>| {
            (cat * weight.clone()).sum() + a.clone().powf_scalar(2.0).sum() + b.clone().sin().sum()
        };
        let fast = cat_channels(a.clone(), b.clone());
        let reference = with_reference_ops(|| cat_channels(a.clone(), b.clone()));
        assert_close(&what, fast.clone(), reference.clone());
        let gf = loss(fast).backward();
        let gr = loss(reference).backward();
        let grad = |t: &Tensor<A<B>, 4>, g| t.grad(g).expect("tracked input has a gradient");
        assert_close(&format!("{what} da"), grad(&a, &gf), grad(&a, &gr));
        if track_b {
            assert_close(&format!("{what} db"), grad(&b, &gf), grad(&b, &gr));
        }
        let plain = cat_channels(a.clone().inner(), b.clone().inner());
        assert_close(
            &format!("{what} (no autodiff)"),
            plain,
            Tensor::cat(vec![a.inner(), b.inner()], 1),
        );
    }
}

#[test]
fn cat_channels_matches_burn() {
    check_cat_channels::<Flex>(&Default::default());
    check_cat_channels::<NdArray<f32>>(&Default::default());
}

#[test]
fn fast_conv_matches_burn_on_flex() {
    check_against_reference::<Flex>(&Default::default());
}

#[test]
fn fast_conv_matches_burn_on_ndarray() {
    check_against_reference::<NdArray<f32>>(&Default::default());
}

/// The host kernels' gradients against central differences of `L = Σ r ⊙ conv(x, w, b)`.
/// `L` is linear in each argument, so the differences are exact up to rounding.
#[test]
fn host_conv_gradients_match_central_differences() {
    let winograd = CASES[13];
    for (case, seed) in [
        (CASES[1], 1),
        (CASES[6], 2),
        (CASES[2], 3),
        (CASES[10], 4),
        (winograd, 5),
    ] {
        let (ci, co, k, s, (pt, pl, pb, pr), h, w, n) = case;
        let g = ConvGeom {
            n,
            ci,
            h,
            w,
            co,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pt,
            pl,
            pb,
            pr,
        };
        let x = values(n * ci * h * w, seed);
        let wt = values(co * ci * k * k, seed + 10);
        let b = values(co, seed + 20);
        let r = values(n * co * g.oh() * g.ow(), seed + 30);
        let loss = |x: &[f32], wt: &[f32], b: &[f32]| -> f64 {
            let y = conv2d_forward(&g, x, wt, Some(b));
            y.iter()
                .zip(&r)
                .map(|(y, r)| f64::from(*y) * f64::from(*r))
                .sum()
        };
        let grads = conv2d_backward(&g, &x, &wt, &r, true, true, true);
        let eps = 1e-2f32;
        let check = |name: &str, base: &[f32], analytic: &[f32], which: usize| {
            for i in 0..base.len() {
                let (mut plus, mut minus) = (base.to_vec(), base.to_vec());
                plus[i] += eps;
                minus[i] -= eps;
                let eval = |v: &[f32]| match which {
                    0 => loss(v, &wt, &b),
                    1 => loss(&x, v, &b),
                    _ => loss(&x, &wt, v),
                };
                let numeric = (eval(&plus) - eval(&minus)) / (2.0 * f64::from(eps));
                let a = f64::from(analytic[i]);
                assert!(
                    (numeric - a).abs() <= 1e-3 * (1.0 + a.abs()),
                    "{name}[{i}] of {case:?}: analytic {a}, central difference {numeric}"
                );
            }
        };
        check("dx", &x, grads.x.as_ref().unwrap(), 0);
        check("dw", &wt, grads.weight.as_ref().unwrap(), 1);
        check("db", &b, grads.bias.as_ref().unwrap(), 2);
    }
}

fn unet_case<B: Backend>(dev: &B::Device) -> (UNet<B>, Tensor<B, 4>, Tensor<B, 1>) {
    let unet = UNetConfig::mnist().init(dev).unwrap();
    let x = Tensor::from_data(TensorData::new(values(2 * 28 * 28, 5), [2, 1, 28, 28]), dev);
    let t = Tensor::from_data(TensorData::from([0.3f32, 0.8]), dev);
    (unet, x, t)
}

/// The MNIST U-Net with the fast path equals the U-Net on burn's ops: output and parameter
/// gradients (first convolution, a bottleneck convolution, the output convolution's bias).
#[test]
fn mnist_unet_fast_path_matches_reference() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let (unet, x, t) = unet_case::<A>(&dev);
    let fast = unet.forward(x.clone(), t.clone());
    let reference = with_reference_ops(|| unet.forward(x.clone(), t.clone()));
    assert_close(
        "U-Net output",
        fast.clone().inner(),
        reference.clone().inner(),
    );
    let gf = fast.square().mean().backward();
    let gr = with_reference_ops(|| reference.square().mean().backward());
    let params = [
        unet.conv_in.weight.val(),
        unet.mid_block1.conv2.weight.val(),
        unet.up_blocks[2][0].conv1.weight.val(),
    ];
    let norms = [
        unet.mid_block1.norm2.gamma.as_ref().unwrap().val(),
        unet.down_blocks[0][0].norm1.beta.as_ref().unwrap().val(),
        unet.norm_out.gamma.as_ref().unwrap().val(),
    ];
    for (i, p) in params.iter().enumerate() {
        let (diff, scale) = max_abs_diff(p.grad(&gf).unwrap(), p.grad(&gr).unwrap());
        assert!(
            diff <= 1e-4 * scale + 1e-7,
            "parameter {i}: |Δgrad| {diff}, scale {scale}"
        );
    }
    for (i, p) in norms.iter().enumerate() {
        let (diff, scale) = max_abs_diff(p.grad(&gf).unwrap(), p.grad(&gr).unwrap());
        assert!(
            diff <= 1e-4 * scale + 1e-7,
            "norm parameter {i}: |Δgrad| {diff}, scale {scale}"
        );
    }
    let b = unet.conv_out.bias.as_ref().unwrap().val();
    let (diff, scale) = max_abs_diff(b.grad(&gf).unwrap(), b.grad(&gr).unwrap());
    assert!(
        diff <= 1e-4 * scale + 1e-7,
        "output bias: |Δgrad| {diff}, scale {scale}"
    );
    assert_eq!(unet.num_params(), 719_841);
}

/// Bit-identical outputs and gradients run to run.
#[test]
fn fast_path_is_deterministic() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let (unet, x, t) = unet_case::<A>(&dev);
    let run = || {
        let y = unet.forward(x.clone(), t.clone());
        let g = y.clone().square().mean().backward();
        let w = unet.down_blocks[0][0].conv1.weight.val();
        (y.into_data(), w.grad(&g).unwrap().into_data())
    };
    let (y1, g1) = run();
    let (y2, g2) = run();
    assert_eq!(y1, y2);
    assert_eq!(g1, g2);
}

/// Training on the fast kernels follows burn's ops: 20 Adam steps of a small U-Net (base width
/// 16, batch 4) give the same loss curve within float tolerance. The two runs differ only in
/// the rounding of reordered sums (~1e-6 relative per op); Adam's normalised updates keep that
/// from growing past ~1e-4 in 20 steps, while a wrong gradient anywhere moves the curve by
/// percents within a few steps.
#[test]
fn training_on_the_fast_path_follows_burns_loss_curve() {
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let cfg = UNetConfig::mnist().with_base_channels(16);
    let x = Tensor::<A, 4>::from_data(
        TensorData::new(values(4 * 28 * 28, 11), [4, 1, 28, 28]),
        &dev,
    );
    let target = Tensor::<A, 4>::from_data(
        TensorData::new(values(4 * 28 * 28, 12), [4, 1, 28, 28]),
        &dev,
    );
    let t = Tensor::<A, 1>::from_data(TensorData::from([0.1f32, 0.4, 0.6, 0.9]), &dev);
    let curve = |reference: bool| {
        let mut net: UNet<A> = cfg.init(&dev).unwrap();
        let mut opt = AdamConfig::new().init::<A, UNet<A>>();
        let mut losses = Vec::new();
        for _ in 0..20 {
            let mut step = |net: UNet<A>| {
                let loss = (net.forward(x.clone(), t.clone()) - target.clone())
                    .square()
                    .mean();
                let grads = GradientsParams::from_grads(loss.backward(), &net);
                (loss.into_scalar(), opt.step(1e-3, net, grads))
            };
            let (loss, next) = if reference {
                with_reference_ops(|| step(net))
            } else {
                step(net)
            };
            losses.push(loss);
            net = next;
        }
        losses
    };
    let (fast, reference) = (curve(false), curve(true));
    assert!(
        fast.last().unwrap() < &(0.9 * fast[0]),
        "the loss falls: {fast:?}"
    );
    for (i, (f, r)) in fast.iter().zip(&reference).enumerate() {
        assert!(
            (f - r).abs() <= 1e-4 * r.abs(),
            "step {i}: fast {f}, burn's ops {r}"
        );
    }
}
