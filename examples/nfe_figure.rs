//! Sample quality against cost for every sampler and ODE solver of score-sample, on the 8-ring
//! with its exact score: sliced W2 to an exact reference set, divided by the two-exact-sets floor
//! (the median SW2 between fresh exact sets and the same reference), against the number of score
//! evaluations, under VP (left) and VE (right). A ratio near 1 is as good as exact sampling.
//!
//! Every sampler is picked by value through `SamplerConfig` and run through the one `Sampler`
//! call, so the list below is data.
//!
//! `cargo run --release --example nfe_figure -- --out docs/img`

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use burn::backend::NdArray;
use clap::Parser;
use plotters::prelude::*;
use plotters::style::FontStyle;
use score_sample::testing::{ErrorBudget, RingAcceptance, ring};
use score_sde::score_core::tensor::to_f64;
use score_sde::score_core::{AnySde, NoiseSource, VeSde, VpSde};
use score_sde::score_sample::*;

type B = NdArray<f32>;

#[derive(Parser, Debug)]
#[command(about = "Sliced W2 / floor against NFE for every sampler on the 8-ring")]
struct Args {
    /// Samples per run (and size of the exact reference and floor sets).
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Seed of the sampler runs.
    #[arg(long, default_value_t = 5)]
    seed: u64,
    /// Output directory of `nfe_sw.png`.
    #[arg(long, default_value = "docs/img")]
    out: PathBuf,
}

const EPS: f64 = 1e-3;

/// One curve: a label and, per point, the sampler and its number of steps.
struct Curve {
    label: String,
    points: Vec<(SamplerConfig, usize)>,
}

fn curve(label: &str, steps: &[usize], config: impl Fn(usize) -> SamplerConfig) -> Curve {
    Curve {
        label: label.to_string(),
        points: steps.iter().map(|&s| (config(s), s)).collect(),
    }
}

fn curves(sde: &AnySde) -> Vec<Curve> {
    let pc = |p: PredictorKind, c: CorrectorKind| {
        move |_| SamplerConfig::Pc(PcSamplerConfig::new().with_predictor(p).with_corrector(c))
    };
    let ode = |s: OdeSolver| {
        move |_| SamplerConfig::ProbabilityFlow(ProbabilityFlowConfig::new().with_solver(s))
    };
    let dpm =
        |k: DpmSolverKind| move |_| SamplerConfig::DpmSolver(DpmSolverConfig::new().with_kind(k));
    let ladder = [16, 32, 64, 128, 256, 512];
    let few = [4, 6, 8, 12, 16, 24, 32, 48, 64];
    let langevin = CorrectorKind::Langevin {
        snr: 0.16,
        n_steps: 1,
    };
    let mut out = vec![
        curve(
            "PC: Euler-Maruyama",
            &ladder,
            pc(PredictorKind::EulerMaruyama, CorrectorKind::None),
        ),
        curve(
            "PC: reverse diffusion + Langevin",
            &[8, 16, 32, 64, 128, 256],
            pc(PredictorKind::ReverseDiffusion, langevin),
        ),
        curve(
            "PC: ancestral (posterior)",
            &ladder,
            pc(
                PredictorKind::Ancestral(AncestralVariance::Posterior),
                CorrectorKind::None,
            ),
        ),
        curve(
            "ODE: Euler",
            &[8, 16, 32, 64, 128, 256],
            ode(OdeSolver::Euler),
        ),
        curve("ODE: Heun", &[4, 8, 16, 32, 64], ode(OdeSolver::Heun)),
        curve("ODE: RK4", &[2, 4, 8, 16, 32], ode(OdeSolver::Rk4)),
        Curve {
            label: "ODE: RK45 (rtol = atol = 1e-2 .. 1e-5)".into(),
            points: [1e-2, 1e-3, 1e-4, 1e-5]
                .iter()
                .map(|&tol| {
                    let c = AdaptiveConfig::new().with_rtol(tol).with_atol(tol);
                    (ode(OdeSolver::Dopri5(c))(0), 1)
                })
                .collect(),
        },
        curve("DDIM (eta = 0)", &few, |_| {
            SamplerConfig::Ddim(DdimConfig::new())
        }),
        curve("DDIM (eta = 1)", &ladder, |_| {
            SamplerConfig::Ddim(DdimConfig::new().with_eta(1.0))
        }),
        curve("EDM Heun", &[3, 4, 5, 7, 9, 13, 18, 25, 33], |_| {
            SamplerConfig::Edm(EdmConfig::new())
        }),
        curve("DPM-Solver++(2M)", &few, dpm(DpmSolverKind::Multistep2)),
        curve(
            "DPM-Solver++(2S)",
            &[2, 3, 4, 6, 8, 12, 16, 24],
            dpm(DpmSolverKind::Singlestep2),
        ),
        curve(
            "DPM-Solver++(3S)",
            &[2, 3, 4, 5, 8, 11, 16],
            dpm(DpmSolverKind::Singlestep3),
        ),
        curve(
            "DPM-Solver++(2M) SDE",
            &[8, 16, 32, 64, 128],
            dpm(DpmSolverKind::Multistep2Sde { eta: 1.0 }),
        ),
        Curve {
            label: "adaptive SDE (rtol 0.4 .. 0.02)".into(),
            points: [0.4, 0.2, 0.1, 0.05, 0.02]
                .iter()
                .map(|&rtol| {
                    let c = AdaptiveSdeConfig::new().with_rtol(rtol);
                    (SamplerConfig::AdaptiveSde(c), 1)
                })
                .collect(),
        },
    ];
    match sde {
        AnySde::Vp(_) => {
            // DDPM's discrete sampler over the VP SDE's own betas for N steps (N ≥ 32 keeps
            // β_N = 20/N below 1).
            out.push(curve(
                "DDPM (posterior variance)",
                &[32, 64, 128, 256, 512],
                |n| {
                    SamplerConfig::Ddpm(
                        DdpmSamplerConfig::new()
                            .with_n_steps(n)
                            .with_beta_start(0.1 / n as f64)
                            .with_beta_end(20.0 / n as f64)
                            .with_variance(AncestralVariance::Posterior),
                    )
                },
            ));
        }
        _ => {
            // Annealed Langevin is for VE only (it refuses VP and sub-VP).
            out.push(curve(
                "annealed Langevin (2 steps/level)",
                &[8, 16, 32, 64, 128],
                |_| {
                    SamplerConfig::AnnealedLangevin(
                        AnnealedLangevinConfig::for_final_sigma(
                            VeSde::new(0.01, 10.0).unwrap().sigma_min(),
                        )
                        .with_steps_per_level(2),
                    )
                },
            ));
        }
    }
    out
}

/// (label, [(nfe, sw / floor)]) for every curve under one SDE.
type Results = Vec<(String, Vec<(f64, f64)>)>;

fn measure(sde: AnySde, args: &Args, check: &RingAcceptance, floor: f64) -> Result<Results> {
    let score = ring().diffused(sde);
    let dev = Default::default();
    let mut results = Vec::new();
    for c in curves(&sde) {
        let mut pts = Vec::new();
        for (config, steps) in &c.points {
            let sampler = config.init(sde).map_err(|e| anyhow!("{}: {e}", c.label))?;
            let grid = sampler.grid(EPS, *steps)?;
            let out: Samples<B, 2> = sampler
                .generate(
                    &score,
                    &grid,
                    Start::prior([args.samples, 2], &dev),
                    &NoiseSource::new(args.seed),
                )
                .map_err(|e| anyhow!("{} at {steps} steps: {e}", c.label))?;
            let ratio = check.sw2(&to_f64(out.x)) / floor;
            println!(
                "{sde:?} | {:<40} | NFE {:>5} | SW2/floor {ratio:.3}",
                c.label, out.nfe
            );
            pts.push((out.nfe as f64, ratio));
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        results.push((c.label, pts));
    }
    Ok(results)
}

fn draw(path: &Path, panels: &[(&str, Results)]) -> Result<()> {
    let font: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, font);
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, (title, results)) in areas.iter().zip(panels) {
        let all: Vec<(f64, f64)> = results
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) * 1.3;
        let y_max = all.iter().map(|p| p.1).fold(1.0, f64::max).min(100.0) * 1.2;
        let y_min = all
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .min(1.0)
            * 0.9;
        let mut chart = ChartBuilder::on(area)
            .caption(*title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d((1.5f64..x_max).log_scale(), (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("score evaluations (NFE)")
            .y_desc("sliced W2 / exact floor")
            .label_style(("sans-serif", 12))
            .draw()?;
        chart.draw_series(LineSeries::new(
            [(1.5, 1.0), (x_max, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        for (i, (label, pts)) in results.iter().enumerate() {
            let color = Palette99::pick(i).mix(0.9);
            let style = color.stroke_width(2);
            let clipped: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x, y.min(y_max))).collect();
            chart
                .draw_series(LineSeries::new(clipped.clone(), style))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            chart.draw_series(clipped.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    // The two-exact-sets floor: SW2 of fresh exact sets to the same exact reference.
    let check = RingAcceptance::new(ring(), args.samples, ErrorBudget::new(0.05, 1), false);
    let mut floor: Vec<f64> = check.floor().to_vec();
    floor.sort_by(f64::total_cmp);
    let median = floor[floor.len() / 2];
    println!(
        "floor: median SW2 between exact sets {median:.4} ({} replicates)",
        floor.len()
    );
    let vp = measure(AnySde::Vp(VpSde::default()), &args, &check, median)?;
    let ve = measure(AnySde::Ve(VeSde::new(0.01, 10.0)?), &args, &check, median)?;
    let path = args.out.join("nfe_sw.png");
    draw(
        &path,
        &[
            ("VP SDE: 8-ring, exact score", vp),
            ("VE SDE (sigma 0.01..10): 8-ring, exact score", ve),
        ],
    )?;
    println!("wrote {}", path.display());
    Ok(())
}
