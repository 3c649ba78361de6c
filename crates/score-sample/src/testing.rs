//! Shared fixtures for the sampler tests, benches and examples (feature `testing`): the
//! 8-Gaussian ring and its exact samples, and [`RingAcceptance`], the acceptance check of a
//! sample set against a ring mixture whose every threshold comes from a stated error budget.
//!
//! # The acceptance check
//!
//! A sampler's `n` points are compared with the target three ways:
//!
//! 1. **Sliced W2** (square root of sliced W2², 32 evenly spaced directions) to one exact
//!    reference set of the same size. Its threshold is a Monte Carlo test: `B` fresh exact sets
//!    are compared with the *same* reference, so under the null (the sampler's points are exact
//!    and independent of the reference) the sampler's distance is exchangeable with the `B`
//!    replicates and exceeds their order statistic of rank `B + 1 − ⌊α(B + 1)⌋` with
//!    probability at most `α` ([`score_eval::monte_carlo_threshold`]), whatever the
//!    distance's law. On the 8-ring this floor is dominated by the multinomial spread of the
//!    mode counts, so the check mostly guards against gross failures.
//! 2. **Mode occupancy**: each point goes to the nearest component mean, and each count must lie
//!    in the exact binomial acceptance interval of its weight. For a ring with equal weights and
//!    a sampler that treats every direction alike, each count is exactly `Binomial(n, 1/K)` by
//!    the ring's rotational symmetry, even when the sampler is biased in other ways.
//! 3. **Per-mode shape** (well separated rings only): in the frame of its mode (radial unit
//!    vector `u_k = μ_k/|μ_k|` and its normal), each point's offset `x − μ_k` has a radial and a
//!    tangential coordinate, i.i.d. `N(0, σ²)` under the null. Their means (normal, standard
//!    error `σ/√n`) and variances (`(n − 1)s²/σ² ~ χ²_{n−1}`) are checked. The tangential mean is
//!    zero for any sampler that respects the ring's mirror symmetry through each mode's axis, so
//!    a rotated target shows up there at once.
//!
//! # Error budget
//!
//! A test file states its family-wise error rate and the number of sampler runs it checks
//! ([`ErrorBudget`]); Bonferroni splits the rate: [`ErrorBudget::SW_SHARE`] of it over the runs'
//! SW checks, [`ErrorBudget::MODE_SHARE`] over the runs × modes count checks and
//! [`ErrorBudget::SHAPE_SHARE`] over the runs × 4 shape statistics. A correct sampler with no
//! bias then fails anything in the file with probability at most the stated rate.
//!
//! # Known biases
//!
//! A discretised sampler is not exact, so its law legitimately differs from the target's; the
//! tests pass its bias in as a [`Bias`]: its radial mean offset and relative radial and
//! tangential variance changes, measured once with [`BIAS_N`] points and seed [`BIAS_SEED`]
//! (never a test's own seed), with their measurement uncertainty (3 standard errors at that
//! size). The shape checks are then centred on the biased values and widened by the
//! uncertainty, and the SW threshold is raised by [`Bias::sw_allowance`]: by the triangle
//! inequality, `SW2(sampler, reference) ≤ SW2(sampler, coupled exact set) + SW2(exact set,
//! reference)`, and coupling each sampled point with the exact point that has the same mode and
//! unbiased offset bounds the first term by the root-mean-square displacement that the bias
//! causes.

use std::fmt;

use burn::tensor::{Tensor, backend::Backend};
use score_core::{GaussianMixture, NoiseKey, NoiseSource, tensor::to_f64};
use score_eval::{
    Assignment, Projections, SlicedWasserstein, assign, binomial_interval, chi_square_quantile,
    monte_carlo_p_value, monte_carlo_replicates, monte_carlo_threshold, normal_quantile, occupancy,
};

/// Number of components of the test ring.
pub const RING_MODES: usize = 8;
/// Radius of the test ring.
pub const RING_RADIUS: f64 = 4.0;
/// Standard deviation of each component of the test ring.
pub const RING_STD: f64 = 0.2;

/// The 8-Gaussian ring of the tests, benches and examples: radius 4, component std 0.2.
pub fn ring() -> GaussianMixture {
    GaussianMixture::ring(RING_MODES, RING_RADIUS, RING_STD).expect("valid ring")
}

/// `n` exact samples of `target` (host, row-major), keyed by `seed`.
pub fn exact(target: &GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
    target.sample_f64(n, &NoiseSource::new(seed), NoiseKey::new(0, 0))
}

/// Host copy of a sample tensor (row-major, f64).
pub fn host<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f64> {
    to_f64(x)
}

/// Number of points with which biases are measured for [`Bias::measured`].
pub const BIAS_N: usize = 20_000;
/// Seed of the bias measurements (no test uses it for its own runs).
pub const BIAS_SEED: u64 = 77;
/// Seed of the exact reference set of the SW check.
pub const REFERENCE_SEED: u64 = 1001;
/// First seed of the exact replicate sets of the SW floor (replicate `b` uses this plus `b`).
pub const FLOOR_SEED: u64 = 1_000_000;
/// Directions of the SW check (2-D midpoint grid on the half circle).
pub const SW_DIRECTIONS: usize = 32;
/// Smallest number of floor replicates, whatever the level.
pub const MIN_REPLICATES: usize = 200;

/// A test file's family-wise error rate and the number of sampler runs it checks; see the
/// module docs for how it is split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorBudget {
    /// Probability that a correct, unbiased sampler fails any check of the file.
    pub fwer: f64,
    /// Number of sampler runs checked under this budget.
    pub runs: usize,
}

impl ErrorBudget {
    /// Share of the rate spent on the SW checks.
    pub const SW_SHARE: f64 = 0.4;
    /// Share spent on the per-mode count checks.
    pub const MODE_SHARE: f64 = 0.3;
    /// Share spent on the four per-mode shape statistics.
    pub const SHAPE_SHARE: f64 = 0.3;
    /// Shape statistics per run.
    pub const SHAPE_STATS: usize = 4;

    /// A budget of `fwer` over `runs` sampler runs.
    pub fn new(fwer: f64, runs: usize) -> Self {
        assert!(
            fwer > 0.0 && fwer < 1.0 && runs > 0,
            "bad budget {fwer}, {runs}"
        );
        Self { fwer, runs }
    }
    /// Level of one run's SW check.
    pub fn sw_level(&self) -> f64 {
        self.fwer * Self::SW_SHARE / self.runs as f64
    }
    /// Level of one mode's count check in a `k`-mode target.
    pub fn mode_level(&self, k: usize) -> f64 {
        self.fwer * Self::MODE_SHARE / (self.runs * k) as f64
    }
    /// Level of one shape statistic's (two-sided) check.
    pub fn shape_level(&self) -> f64 {
        self.fwer * Self::SHAPE_SHARE / (self.runs * Self::SHAPE_STATS) as f64
    }
}

/// A sampler's known bias on a ring's per-mode law, with its uncertainty (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bias {
    /// Mean radial offset of the points from their mode (absolute).
    pub radial_mean: f64,
    /// Relative change of the radial variance (`s_r²/σ² − 1`).
    pub radial_var: f64,
    /// Relative change of the tangential variance.
    pub tangential_var: f64,
    /// Uncertainty of `radial_mean` (absolute).
    pub mean_uncertainty: f64,
    /// Uncertainty of the relative variance changes.
    pub var_uncertainty: f64,
}

impl Bias {
    /// No bias (an exact sampler).
    pub const NONE: Self = Self {
        radial_mean: 0.0,
        radial_var: 0.0,
        tangential_var: 0.0,
        mean_uncertainty: 0.0,
        var_uncertainty: 0.0,
    };

    /// A bias measured with [`BIAS_N`] points of the test ring: uncertainties of 3 standard
    /// errors at that size, `3σ/√BIAS_N` on the mean and `3√(2/BIAS_N)` on relative variances.
    pub fn measured(radial_mean: f64, radial_var: f64, tangential_var: f64) -> Self {
        let n = BIAS_N as f64;
        Self {
            radial_mean,
            radial_var,
            tangential_var,
            mean_uncertainty: 3.0 * RING_STD / n.sqrt(),
            var_uncertainty: 3.0 * (2.0 / n).sqrt(),
        }
    }

    /// A bias known exactly (e.g. in closed form): no uncertainty.
    pub fn known(radial_mean: f64, radial_var: f64, tangential_var: f64) -> Self {
        Self {
            radial_mean,
            radial_var,
            tangential_var,
            mean_uncertainty: 0.0,
            var_uncertainty: 0.0,
        }
    }

    /// The largest `|√(1 + b ± u) − 1|`: the relative change of a standard deviation.
    fn std_change(b: f64, u: f64) -> f64 {
        let f = |v: f64| ((1.0 + v).max(0.0).sqrt() - 1.0).abs();
        f(b + u).max(f(b - u))
    }

    /// Upper bound of the root-mean-square displacement between a sampled point and its
    /// coupled exact point (same mode, offsets scaled by the true standard deviations), for
    /// components of standard deviation `std`: `√(b_r² + σ²(Δ_r² + Δ_t²))` with `Δ` the
    /// relative standard-deviation changes, all taken at the edge of their uncertainty.
    pub fn sw_allowance(&self, std: f64) -> f64 {
        let br = self.radial_mean.abs() + self.mean_uncertainty;
        let dr = Self::std_change(self.radial_var, self.var_uncertainty);
        let dt = Self::std_change(self.tangential_var, self.var_uncertainty);
        (br * br + std * std * (dr * dr + dt * dt)).sqrt()
    }
}

/// Per-mode shape statistics of a point set on a ring (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalStats {
    /// Mean radial offset from the assigned mode.
    pub radial_mean: f64,
    /// Mean tangential offset.
    pub tangential_mean: f64,
    /// Radial sample variance (divisor `n − 1`) over the component variance.
    pub radial_var: f64,
    /// Tangential sample variance over the component variance.
    pub tangential_var: f64,
}

impl LocalStats {
    /// The bias these statistics show against the target, as [`Bias::measured`] (for
    /// statistics computed from [`BIAS_N`] points).
    pub fn as_bias(&self) -> Bias {
        Bias::measured(
            self.radial_mean,
            self.radial_var - 1.0,
            self.tangential_var - 1.0,
        )
    }
}

/// The [`LocalStats`] of a 2-D point set against a ring-shaped mixture (isotropic components of
/// equal variance whose means are away from the origin).
pub fn local_stats(x: &[f64], target: &GaussianMixture) -> LocalStats {
    let labels = assign(x, target, Assignment::NearestMean).expect("2-D points");
    let var = target.variances()[0][0];
    let (mut r, mut t) = (Vec::new(), Vec::new());
    for (p, &k) in x.chunks(2).zip(&labels) {
        let mu = &target.means()[k];
        let norm = mu[0].hypot(mu[1]);
        let u = [mu[0] / norm, mu[1] / norm];
        let e = [p[0] - mu[0], p[1] - mu[1]];
        r.push(e[0] * u[0] + e[1] * u[1]);
        t.push(-e[0] * u[1] + e[1] * u[0]);
    }
    let mean_var = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (
            m,
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0),
        )
    };
    let ((rm, rv), (tm, tv)) = (mean_var(&r), mean_var(&t));
    LocalStats {
        radial_mean: rm,
        tangential_mean: tm,
        radial_var: rv / var,
        tangential_var: tv / var,
    }
}

/// The acceptance check of sample sets of one size against one ring-shaped mixture (module
/// docs). Building it draws the reference set and the SW floor replicates (on the host, in
/// parallel threads; a few seconds at most in debug builds).
#[derive(Debug, Clone)]
pub struct RingAcceptance {
    target: GaussianMixture,
    n: usize,
    budget: ErrorBudget,
    shape: bool,
    sw: SlicedWasserstein,
    reference: Projections,
    floor: Vec<f64>,
    floor_threshold: f64,
    intervals: Vec<(usize, usize)>,
}

impl RingAcceptance {
    /// The check for `n`-point sets from `target` under `budget`. `shape` turns on the
    /// per-mode shape statistics, which need well separated modes.
    ///
    /// # Panics
    /// If `target` is not 2-D, or `shape` is asked for with components that are not isotropic
    /// of equal variance, or closer than 10 standard deviations to each other or the origin.
    pub fn new(target: GaussianMixture, n: usize, budget: ErrorBudget, shape: bool) -> Self {
        assert_eq!(target.dim(), 2, "ring acceptance is for 2-D targets");
        if shape {
            let var = target.variances()[0][0];
            let std = var.sqrt();
            let means = target.means();
            for (k, (mu, v)) in means.iter().zip(target.variances()).enumerate() {
                assert!(
                    v.iter().all(|&x| x == var),
                    "component {k} is not isotropic"
                );
                assert!(
                    mu[0].hypot(mu[1]) > 10.0 * std,
                    "mode {k} too near the origin"
                );
                for other in &means[k + 1..] {
                    let d = (mu[0] - other[0]).hypot(mu[1] - other[1]);
                    assert!(d > 10.0 * std, "modes closer than 10 std");
                }
            }
        }
        let sw = SlicedWasserstein::new(2, SW_DIRECTIONS).expect("2-D directions");
        let reference = sw
            .project(&exact(&target, n, REFERENCE_SEED))
            .expect("finite exact samples");
        let alpha = budget.sw_level();
        let b = monte_carlo_replicates(alpha).max(MIN_REPLICATES);
        let distance = |seed: u64| {
            let x = sw.project(&exact(&target, n, seed)).expect("finite");
            sw.w2_squared_projected(&x, &reference).sqrt()
        };
        let threads = std::thread::available_parallelism().map_or(1, |p| p.get().min(4));
        let floor: Vec<f64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|w| {
                    let distance = &distance;
                    scope.spawn(move || {
                        (w..b)
                            .step_by(threads)
                            .map(|i| (i, distance(FLOOR_SEED + i as u64)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<(usize, f64)> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("floor thread"))
                .collect();
            all.sort_by_key(|(i, _)| *i);
            all.into_iter().map(|(_, d)| d).collect()
        });
        let floor_threshold = monte_carlo_threshold(&floor, alpha).expect("enough replicates");
        let mode_alpha = budget.mode_level(target.n_components());
        let intervals = target
            .weights()
            .iter()
            .map(|&w| binomial_interval(n, w, mode_alpha).expect("valid level"))
            .collect();
        Self {
            target,
            n,
            budget,
            shape,
            sw,
            reference,
            floor,
            floor_threshold,
            intervals,
        }
    }

    /// The target.
    pub fn target(&self) -> &GaussianMixture {
        &self.target
    }
    /// The sample size the check is built for.
    pub fn n(&self) -> usize {
        self.n
    }
    /// The error budget.
    pub fn budget(&self) -> ErrorBudget {
        self.budget
    }
    /// The SW replicates between fresh exact sets and the reference (the null distribution).
    pub fn floor(&self) -> &[f64] {
        &self.floor
    }
    /// The SW threshold for an unbiased sampler.
    pub fn sw_threshold(&self) -> f64 {
        self.floor_threshold
    }
    /// The exact binomial acceptance interval of each mode's count.
    pub fn count_intervals(&self) -> &[(usize, usize)] {
        &self.intervals
    }

    /// SW2 of a point set to the reference.
    pub fn sw2(&self, x: &[f64]) -> f64 {
        let p = self.sw.project(x).expect("finite samples");
        self.sw.w2_squared_projected(&p, &self.reference).sqrt()
    }

    /// Runs every check on `x` (`n` 2-D points, row-major) for a sampler with the given bias.
    ///
    /// # Panics
    /// If `x` does not hold `n` points.
    pub fn check(&self, x: &[f64], bias: &Bias) -> Report {
        assert_eq!(
            x.len(),
            2 * self.n,
            "the check is built for {} points",
            self.n
        );
        let std = self.target.variances()[0][0].sqrt();
        let mut failures = Vec::new();
        let sw = self.sw2(x);
        let sw_threshold = self.floor_threshold + bias.sw_allowance(std);
        if sw > sw_threshold {
            failures.push(format!("SW2 {sw:.4} > {sw_threshold:.4}"));
        }
        let counts = occupancy(x, &self.target, Assignment::NearestMean).expect("2-D points");
        for (k, (&c, &(lo, hi))) in counts.iter().zip(&self.intervals).enumerate() {
            if c < lo || c > hi {
                failures.push(format!("mode {k}: count {c} outside [{lo}, {hi}]"));
            }
        }
        let shape = self.shape.then(|| {
            let local = local_stats(x, &self.target);
            let limits = self.shape_limits(bias);
            for (name, value, (lo, hi)) in [
                ("radial mean", local.radial_mean, limits.radial_mean),
                (
                    "tangential mean",
                    local.tangential_mean,
                    limits.tangential_mean,
                ),
                ("radial variance ratio", local.radial_var, limits.radial_var),
                (
                    "tangential variance ratio",
                    local.tangential_var,
                    limits.tangential_var,
                ),
            ] {
                if !(lo..=hi).contains(&value) {
                    failures.push(format!("{name} {value:+.4} outside [{lo:+.4}, {hi:+.4}]"));
                }
            }
            (local, limits)
        });
        Report {
            sw,
            sw_threshold,
            sw_p_value: monte_carlo_p_value(&self.floor, sw),
            counts,
            intervals: self.intervals.clone(),
            shape,
            failures,
        }
    }

    /// The accepted ranges of the shape statistics for a sampler with the given bias.
    pub fn shape_limits(&self, bias: &Bias) -> ShapeLimits {
        let alpha = self.budget.shape_level();
        let z = -normal_quantile(alpha / 2.0);
        let n = self.n as f64;
        let std = self.target.variances()[0][0].sqrt();
        let mean = |centre: f64, var_change: f64, u: f64| {
            let half =
                z * std * (1.0 + var_change + bias.var_uncertainty).max(0.0).sqrt() / n.sqrt() + u;
            (centre - half, centre + half)
        };
        let df = n - 1.0;
        let lo = chi_square_quantile(alpha / 2.0, df).expect("valid level") / df;
        let hi = chi_square_quantile(1.0 - alpha / 2.0, df).expect("valid level") / df;
        let var = |change: f64| {
            (
                (1.0 + change - bias.var_uncertainty) * lo,
                (1.0 + change + bias.var_uncertainty) * hi,
            )
        };
        ShapeLimits {
            radial_mean: mean(bias.radial_mean, bias.radial_var, bias.mean_uncertainty),
            tangential_mean: mean(0.0, bias.tangential_var, 0.0),
            radial_var: var(bias.radial_var),
            tangential_var: var(bias.tangential_var),
        }
    }
}

/// Accepted ranges of the [`LocalStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeLimits {
    /// Range of the mean radial offset.
    pub radial_mean: (f64, f64),
    /// Range of the mean tangential offset.
    pub tangential_mean: (f64, f64),
    /// Range of the radial variance ratio.
    pub radial_var: (f64, f64),
    /// Range of the tangential variance ratio.
    pub tangential_var: (f64, f64),
}

/// What [`RingAcceptance::check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// SW2 to the reference set.
    pub sw: f64,
    /// The threshold it was held to (floor quantile plus the bias allowance).
    pub sw_threshold: f64,
    /// Monte Carlo p-value of `sw` against the floor replicates (no allowance).
    pub sw_p_value: f64,
    /// Points per mode.
    pub counts: Vec<usize>,
    /// Accepted range of each count.
    pub intervals: Vec<(usize, usize)>,
    /// Shape statistics and their accepted ranges, when checked.
    pub shape: Option<(LocalStats, ShapeLimits)>,
    /// One line per failed check; empty when everything passed.
    pub failures: Vec<String>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SW2 {:.4} (threshold {:.4}, floor p = {:.3}); counts {:?}",
            self.sw, self.sw_threshold, self.sw_p_value, self.counts
        )?;
        if let Some((s, l)) = &self.shape {
            write!(
                f,
                "; radial mean {:+.4} [{:+.4}, {:+.4}], tangential mean {:+.4} [{:+.4}, {:+.4}], \
                 radial var ×{:.3} [{:.3}, {:.3}], tangential var ×{:.3} [{:.3}, {:.3}]",
                s.radial_mean,
                l.radial_mean.0,
                l.radial_mean.1,
                s.tangential_mean,
                l.tangential_mean.0,
                l.tangential_mean.1,
                s.radial_var,
                l.radial_var.0,
                l.radial_var.1,
                s.tangential_var,
                l.tangential_var.0,
                l.tangential_var.1
            )?;
        }
        if !self.passed() {
            write!(f, "; FAILED: {}", self.failures.join("; "))?;
        }
        Ok(())
    }
}
