//! One command draws the 2-D pictures of the seeds (score fields, learned scores, Langevin
//! chains, samplers) as PNG files in `--out`:
//!
//! - `demo_energy_score.png`: seed 001's three-Gaussian mixture, its exact score `∇x log p`
//!   (arrows) over its energy `−log p` (filled contours);
//! - `demo_learned_scores.png`: seed 000's time-conditioned MLP trained on two moons with the
//!   continuous-time SDE loss (VE SDE): the learned score at t = 0.1, 0.5, 0.9 (top row) beside
//!   the exact score of the perturbed two moons (bottom row; the moons' curves as a mixture of
//!   1000 narrow Gaussians, exact to quadrature error), over the perturbed data; the first column
//!   shows the data and samples of the trained model; `demo_learned_loss.png` is its loss curve;
//! - `demo_langevin.png`: Langevin chains on the three-Gaussian mixture's exact score, drawn as
//!   paths over its density;
//! - `demo_samplers.png`: the 8-ring (VP SDE, exact score) sampled by predictor–corrector, the
//!   probability-flow ODE (RK45), EDM Heun, DPM-Solver++(2M) and DDIM, each picked by value as
//!   a `SamplerConfig`, beside exact samples.
//!
//! `cargo run --release --example demos_2d -- --out docs/img --steps 3000 --seed 0`

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;
use clap::Parser;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use score_sde::plot::{self, PointSet};
use score_sde::score_core::tensor::{from_f64, to_f64};
use score_sde::score_core::{
    AnySde, GaussianMixture, NoiseKey, NoiseSource, ScoreFn, Sde, VeSde, VpSde,
};
use score_sde::score_data::toy;
use score_sde::score_nets::{
    Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlp, TimeMlpConfig,
};
use score_sde::score_sample::*;
use score_sde::score_train::{EmaConfig, SdeLoss, Trainer, TrainerConfig};

type I = NdArray<f32>;
type B = Autodiff<I>;
/// The trainer of the two-moons score network.
type MoonsTrainer = Trainer<B, ScoreModel<B, TimeMlp<B>>>;
type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

#[derive(Parser, Debug)]
#[command(about = "Draw the 2-D demo figures (score fields, learned scores, Langevin, samplers)")]
struct Args {
    /// Output directory of the `demo_*.png` figures.
    #[arg(long, default_value = "docs/img")]
    out: PathBuf,
    /// Training steps of the two-moons score network (batch 256).
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Seed of the data, the network's initial weights and every sampler's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Standard deviation of the two-moons data noise.
const MOONS_STD: f64 = 0.05;
/// Times at which the learned two-moons score is drawn.
const TIMES: [f64; 3] = [0.1, 0.5, 0.9];

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let font: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, font);
    let start = std::time::Instant::now();
    let figures = [
        energy_and_score(&args.out)?,
        learned_scores(&args)?,
        langevin_paths(&args)?,
        samplers(&args)?,
    ];
    for path in figures.iter().flatten() {
        println!("wrote {}", path.display());
    }
    println!("all figures in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The figures.

/// Figure 1: the exact score of seed 001's mixture over its energy landscape.
fn energy_and_score(out: &Path) -> Result<Vec<PathBuf>> {
    let mix = toy::three_gaussians_mixture();
    let path = out.join("demo_energy_score.png");
    let range = -5.0..5.0;
    let root = BitMapBackend::new(&path, (640, 660)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = panel(
        &root,
        "three Gaussians: score ∇log p (arrows) over energy −log p",
        range.clone(),
        range.clone(),
    )?;
    // Filled contours of −log p, 20 levels from the minimum up to 30 nats above it.
    let e_min = -mix.log_prob_f64(&mix.means()[0]);
    heat_map(&mut chart, &range, &range, 200, |x, y| {
        let e = -mix.log_prob_f64(&[x, y]);
        let level = (((e - e_min) / 30.0).min(1.0) * 20.0).floor() / 20.0;
        viridis(level).mix(0.75)
    })?;
    let pts = grid_points(&range, &range, 21);
    let field: Vec<f64> = pts.chunks(2).flat_map(|p| mix.score_f64(p)).collect();
    arrows(
        &mut chart,
        &pts,
        &field,
        10.0 / 21.0,
        longest(&field),
        BLACK,
    )?;
    root.present()?;
    Ok(vec![path.clone()])
}

/// Figure 2: a time-conditioned MLP trained on two moons, its score at three times beside the
/// exact one, and its loss curve.
fn learned_scores(args: &Args) -> Result<Vec<PathBuf>> {
    let dev = Default::default();
    let sde = VeSde::new(0.01, 4.0)?;
    let noise = NoiseSource::new(args.seed);
    let moons = |n, key| toy::two_moons(n, MOONS_STD, &noise.derive(1), key);
    let (trainer, secs) = train_moons(args, sde, &moons)?;
    let model = trainer.ema();

    let data = moons(2000, NoiseKey::new(u64::MAX, 0))?;
    let sampler = PcSamplerConfig::new().init(sde)?;
    let grid = TimeGrid::reverse(&sde, 1e-3, 200)?;
    let samples = to_f64(
        sampler
            .sample::<I, 2, _>(model, &grid, [2000, 2], &noise.derive(2), &dev)?
            .x,
    );
    let exact = moons_mixture()?.diffused(sde);

    let path = args.out.join("demo_learned_scores.png");
    let (xr, yr) = (-1.5..2.5, -1.75..2.25);
    let root = BitMapBackend::new(&path, (1600, 840)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "two moons, VE SDE (sigma 0.01..4): learned score (top, {} steps, {secs:.0} s) \
             vs exact score (bottom)",
            args.steps
        ),
        ("sans-serif", 22),
    )?;
    let cells = root.split_evenly((2, 4));
    let mut chart = panel(&cells[0], "data", xr.clone(), yr.clone())?;
    dots(&mut chart, &data, &xr, &yr, BLACK.mix(0.4))?;
    let mut chart = panel(
        &cells[4],
        "samples of the trained MLP (PC)",
        xr.clone(),
        yr.clone(),
    )?;
    dots(&mut chart, &samples, &xr, &yr, RED.mix(0.4))?;

    let pts = grid_points(&xr, &yr, 19);
    let xs = from_f64::<I, 2>(&pts, [pts.len() / 2, 2], &dev);
    for (col, &t) in TIMES.iter().enumerate() {
        let sigma = sde.marginal(t).std;
        let z = noise
            .derive(3)
            .normal_f64(data.len() / 2, 2, NoiseKey::new(col as u64, 0));
        let perturbed: Vec<f64> = data.iter().zip(&z).map(|(x, z)| x + sigma * z).collect();
        let ts = Tensor::<I, 1>::full([pts.len() / 2], t, &dev);
        let learned = to_f64(model.score(xs.clone(), ts.clone()));
        let truth = to_f64(exact.score(xs.clone(), ts));
        // One arrow scale per column, so learned and exact are compared at the same scale.
        let scale = longest(&learned).max(longest(&truth));
        for (row, field) in [learned, truth].iter().enumerate() {
            let what = ["learned", "exact"][row];
            let caption = format!("{what}, t = {t} (sigma = {sigma:.2})");
            let mut chart = panel(&cells[4 * row + col + 1], &caption, xr.clone(), yr.clone())?;
            dots(&mut chart, &perturbed, &xr, &yr, BLACK.mix(0.15))?;
            arrows(&mut chart, &pts, field, 4.0 / 19.0, scale, BLUE)?;
        }
    }
    root.present()?;

    let loss_path = args.out.join("demo_learned_loss.png");
    let (steps, losses): (Vec<f64>, Vec<f64>) = trainer
        .history()
        .iter()
        .map(|r| (r.step as f64, r.loss))
        .unzip();
    plot::loss_curve(
        &loss_path,
        "two moons: continuous-time SDE loss (VE), batch 256",
        &steps,
        &losses,
    )?;
    Ok(vec![path.clone(), loss_path])
}

/// Figure 3: Langevin chains on the three-Gaussian mixture, over its density.
fn langevin_paths(args: &Args) -> Result<Vec<PathBuf>> {
    let dev = Default::default();
    let mix = toy::three_gaussians_mixture();
    let (chains, steps, step_size) = (8usize, 150usize, 0.01);
    // Starts on a circle of radius 4.5, so every chain has a way to go.
    let starts: Vec<f64> = (0..chains)
        .flat_map(|k| {
            let a = std::f64::consts::TAU * (k as f64 + 0.5) / chains as f64;
            [4.5 * a.cos(), 4.5 * a.sin()]
        })
        .collect();
    // One Langevin step per call, each with noise of its own (derive(k)), to keep every state.
    let step = LangevinConfig::new(step_size, 1).init()?;
    let noise = NoiseSource::new(args.seed).derive(4);
    let mut x = from_f64::<I, 2>(&starts, [chains, 2], &dev);
    let mut states = vec![starts];
    for k in 0..steps {
        x = step.sample(&mix, x, 0.0, &noise.derive(k as u64))?.x;
        states.push(to_f64(x.clone()));
    }

    let path = args.out.join("demo_langevin.png");
    let range = -5.0..5.0;
    let root = BitMapBackend::new(&path, (640, 660)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "Langevin on the exact score: {chains} chains, {steps} steps of {step_size} (● start, × end)"
    );
    let mut chart = panel(&root, &caption, range.clone(), range.clone())?;
    let p_max = mix.log_prob_f64(&mix.means()[0]).exp();
    heat_map(&mut chart, &range, &range, 160, |x, y| {
        let p = mix.log_prob_f64(&[x, y]).exp() / p_max;
        blend(WHITE, RGBColor(30, 90, 160), 0.8 * p)
    })?;
    for c in 0..chains {
        let color = Palette99::pick(c).to_rgba();
        let trace: Vec<(f64, f64)> = states.iter().map(|s| (s[2 * c], s[2 * c + 1])).collect();
        // Segment by segment: plotters joins a wide polyline with miters, which spike at the
        // sharp turns of a noisy path.
        chart.draw_series(
            trace
                .windows(2)
                .map(|w| PathElement::new(w.to_vec(), color.stroke_width(2))),
        )?;
        chart.draw_series([Circle::new(trace[0], 5, color.filled())])?;
        chart.draw_series([Cross::new(trace[steps], 6, BLACK.stroke_width(2))])?;
    }
    root.present()?;
    Ok(vec![path.clone()])
}

/// Figure 4: every family of sampler on the 8-ring's exact score under the VP SDE.
fn samplers(args: &Args) -> Result<Vec<PathBuf>> {
    let dev = Default::default();
    let sde = AnySde::Vp(VpSde::default());
    let ring = toy::eight_gaussians_mixture();
    let n = 2000;
    let exact = toy::eight_gaussians(
        n,
        &NoiseSource::new(args.seed).derive(5),
        NoiseKey::new(0, 0),
    );
    let rk45 = AdaptiveConfig::new().with_rtol(1e-4).with_atol(1e-4);
    let choices = [
        (
            "predictor-corrector",
            SamplerConfig::Pc(PcSamplerConfig::new()),
            500,
        ),
        (
            "probability-flow ODE (RK45)",
            SamplerConfig::ProbabilityFlow(
                ProbabilityFlowConfig::new().with_solver(OdeSolver::Dopri5(rk45)),
            ),
            1,
        ),
        ("EDM Heun", SamplerConfig::Edm(EdmConfig::new()), 18),
        (
            "DPM-Solver++(2M)",
            SamplerConfig::DpmSolver(DpmSolverConfig::new()),
            20,
        ),
        ("DDIM (eta = 0)", SamplerConfig::Ddim(DdimConfig::new()), 50),
    ];
    let target = ring.diffused(sde);
    let mut sets = vec![("exact samples".to_string(), exact)];
    for (name, config, steps) in choices {
        let sampler = config.init(sde)?;
        let grid = sampler.grid(1e-3, steps)?;
        let out: Samples<I, 2> = sampler
            .generate(
                &target,
                &grid,
                Start::prior([n, 2], &dev),
                &NoiseSource::new(args.seed).derive(6),
            )
            .map_err(|e| anyhow!("{name}: {e}"))?;
        sets.push((format!("{name}, NFE {}", out.nfe), to_f64(out.x)));
    }
    let colors = [
        BLACK,
        BLUE,
        RED,
        MAGENTA,
        RGBColor(0, 140, 70),
        RGBColor(200, 120, 0),
    ];
    let points: Vec<PointSet<'_>> = sets
        .iter()
        .zip(colors)
        .map(|((label, xy), color)| PointSet { label, xy, color })
        .collect();
    let path = args.out.join("demo_samplers.png");
    plot::scatter_panels(
        &path,
        "8-ring, VP SDE, exact score: one sampler per panel",
        &points,
        6.0,
    )?;
    Ok(vec![path])
}

// ---------------------------------------------------------------------------------------------
// Shared steps.

/// Trains seed 000's time-conditioned MLP on fresh two-moons batches; returns the trainer and
/// the training time in seconds.
fn train_moons(
    args: &Args,
    sde: VeSde,
    moons: &dyn Fn(usize, NoiseKey) -> score_sde::score_data::Result<Vec<f64>>,
) -> Result<(MoonsTrainer, f64)> {
    let dev = Default::default();
    let net = TimeMlpConfig::new(2)
        .with_seed(args.seed)
        .with_hidden_size(128)
        .with_num_layers(3)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(64))
        .init::<B>(&dev)?;
    let model = ScoreModel::new(net, AnySde::Ve(sde), Parameterization::Noise);
    let config = TrainerConfig::new()
        .with_steps(args.steps)
        .with_learning_rate(2e-3)
        .with_warmup_steps(100)
        .with_ema(EmaConfig::new().with_decay(0.995))
        .with_seed(args.seed)
        .with_progress(true);
    let mut trainer = Trainer::new(model, config)?;
    let data = |step: u64| {
        let xy = moons(256, NoiseKey::new(step, 0)).expect("valid two-moons parameters");
        from_f64::<B, 2>(&xy, [256, 2], &dev)
    };
    let report = trainer.fit(&SdeLoss::new(sde)?, data, &mut ())?;
    Ok((trainer, args.steps as f64 / report.steps_per_sec))
}

/// Two moons as a mixture: 500 equally weighted Gaussians of variance `MOONS_STD²` per moon,
/// at the midpoints of 500 equal slices of θ ∈ (0, π). Node spacing π/500 ≈ 0.006 is far below
/// the 0.05 noise, so its perturbed score is the exact one up to a negligible quadrature error.
fn moons_mixture() -> Result<GaussianMixture> {
    let nodes = 500;
    let means: Vec<Vec<f64>> = (0..2 * nodes)
        .map(|k| {
            let theta = std::f64::consts::PI * ((k % nodes) as f64 + 0.5) / nodes as f64;
            let (s, c) = theta.sin_cos();
            if k < nodes {
                vec![c, s]
            } else {
                vec![1.0 - c, 0.5 - s]
            }
        })
        .collect();
    let vars = vec![vec![MOONS_STD * MOONS_STD; 2]; 2 * nodes];
    Ok(GaussianMixture::new(
        vec![1.0 / (2 * nodes) as f64; 2 * nodes],
        means,
        vars,
    )?)
}

/// `side × side` grid points over `x × y`, interleaved `[x0, y0, x1, y1, …]`, cell centres.
fn grid_points(x: &Range<f64>, y: &Range<f64>, side: usize) -> Vec<f64> {
    let at =
        |r: &Range<f64>, i: usize| r.start + (r.end - r.start) * (i as f64 + 0.5) / side as f64;
    (0..side * side)
        .flat_map(|k| [at(x, k % side), at(y, k / side)])
        .collect()
}

/// Length of the longest 2-D vector of an interleaved field.
fn longest(field: &[f64]) -> f64 {
    field
        .chunks(2)
        .map(|v| v[0].hypot(v[1]))
        .fold(1e-12, f64::max)
}

/// Axes over `x × y` with a caption: the frame of every panel.
fn panel<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(32)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(("sans-serif", 11))
        .draw()?;
    Ok(chart)
}

/// Fills `x × y` with `cells × cells` rectangles coloured by `color(centre)`.
fn heat_map(
    chart: &mut Chart<'_, '_>,
    x: &Range<f64>,
    y: &Range<f64>,
    cells: usize,
    color: impl Fn(f64, f64) -> RGBAColor,
) -> Result<()> {
    let (dx, dy) = (
        (x.end - x.start) / cells as f64,
        (y.end - y.start) / cells as f64,
    );
    chart.draw_series((0..cells * cells).map(|k| {
        let (x0, y0) = (
            x.start + dx * (k % cells) as f64,
            y.start + dy * (k / cells) as f64,
        );
        let fill = color(x0 + dx / 2.0, y0 + dy / 2.0);
        Rectangle::new([(x0, y0), (x0 + dx, y0 + dy)], fill.filled())
    }))?;
    Ok(())
}

/// Arrows of a vector field at `points`. Lengths are compressed by a square root (scores grow
/// linearly away from the data) and scaled so that a vector of length `longest` spans 0.9 of
/// `cell`.
fn arrows(
    chart: &mut Chart<'_, '_>,
    points: &[f64],
    vectors: &[f64],
    cell: f64,
    longest: f64,
    color: RGBColor,
) -> Result<()> {
    for (p, v) in points.chunks(2).zip(vectors.chunks(2)) {
        let norm = v[0].hypot(v[1]);
        if norm == 0.0 || !norm.is_finite() {
            continue;
        }
        let len = 0.9 * cell * (norm / longest).sqrt();
        let (ux, uy) = (v[0] / norm, v[1] / norm);
        let tip = (p[0] + len * ux, p[1] + len * uy);
        let head = 0.3 * len;
        // The two barbs: the direction turned back by ±150°.
        let (c, s) = (0.866, 0.5);
        let barb = |s: f64| {
            (
                tip.0 + head * (-c * ux - s * uy),
                tip.1 + head * (s * ux - c * uy),
            )
        };
        let style = color.stroke_width(1);
        chart.draw_series([
            PathElement::new(vec![(p[0], p[1]), tip], style),
            PathElement::new(vec![barb(s), tip, barb(-s)], style),
        ])?;
    }
    Ok(())
}

/// Interleaved 2-D points as small dots (those outside `x × y` are left out).
fn dots(
    chart: &mut Chart<'_, '_>,
    xy: &[f64],
    x: &Range<f64>,
    y: &Range<f64>,
    color: RGBAColor,
) -> Result<()> {
    chart.draw_series(
        xy.chunks(2)
            .filter(|p| x.contains(&p[0]) && y.contains(&p[1]))
            .map(|p| Circle::new((p[0], p[1]), 1, color.filled())),
    )?;
    Ok(())
}

/// `a` blended towards `b` by `w ∈ [0, 1]`.
fn blend(a: RGBColor, b: RGBColor, w: f64) -> RGBAColor {
    let w = w.clamp(0.0, 1.0);
    let m = |a: u8, b: u8| (a as f64 + w * (b as f64 - a as f64)).round() as u8;
    RGBColor(m(a.0, b.0), m(a.1, b.1), m(a.2, b.2)).to_rgba()
}

/// The viridis colour map at `v ∈ [0, 1]`, linear between five of its colours.
fn viridis(v: f64) -> RGBColor {
    const STOPS: [RGBColor; 5] = [
        RGBColor(68, 1, 84),
        RGBColor(59, 82, 139),
        RGBColor(33, 145, 140),
        RGBColor(94, 201, 98),
        RGBColor(253, 231, 37),
    ];
    let s = v.clamp(0.0, 1.0) * 4.0;
    let i = (s.floor() as usize).min(3);
    let c = blend(STOPS[i], STOPS[i + 1], s - i as f64);
    RGBColor(c.0, c.1, c.2)
}
