//! Time grids: the times at which a sampler or fixed-step ODE solver evaluates the score, passed
//! to it as a value (k-diffusion's list of sigmas, here a list of SDE times).

use score_core::Sde;

use crate::error::{Result, SampleError};

/// A strictly monotone, finite sequence of at least two times `t_0, t_1, …, t_N`.
///
/// Step `i` of a sampler goes from `t_i` to `t_{i+1}`; sampling grids decrease (from `T` to
/// `eps`), encoding grids increase.
///
/// ```
/// use score_sample::TimeGrid;
/// let grid = TimeGrid::uniform(1.0, 1e-3, 4).unwrap();
/// assert_eq!(grid.steps(), 4);
/// assert_eq!(grid.times()[0], 1.0);
/// assert!(grid.is_decreasing());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid {
    times: Vec<f64>,
}

impl TimeGrid {
    /// A grid from explicit times; they must be finite and strictly monotone.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        if times.len() < 2 {
            return Err(SampleError::InvalidGrid {
                index: times.len(),
                t: times.first().copied().unwrap_or(f64::NAN),
                reason: "a grid needs at least two times",
            });
        }
        if let Some((index, &t)) = times.iter().enumerate().find(|(_, t)| !t.is_finite()) {
            return Err(SampleError::InvalidGrid {
                index,
                t,
                reason: "times must be finite",
            });
        }
        let up = times[1] > times[0];
        for (index, w) in times.windows(2).enumerate() {
            if (w[1] > w[0]) != up || w[1] == w[0] {
                return Err(SampleError::InvalidGrid {
                    index: index + 1,
                    t: w[1],
                    reason: "times must be strictly monotone",
                });
            }
        }
        Ok(Self { times })
    }

    /// `steps + 1` evenly spaced times from `start` to `end` (either direction).
    pub fn uniform(start: f64, end: f64, steps: usize) -> Result<Self> {
        crate::error::at_least_one("steps", steps)?;
        let h = (end - start) / steps as f64;
        let mut times: Vec<f64> = (0..steps).map(|i| start + i as f64 * h).collect();
        times.push(end);
        Self::new(times)
    }

    /// The sampling grid of score_sde: `steps` uniform steps from the SDE's `T` down to `eps`.
    pub fn reverse<S: Sde>(sde: &S, eps: f64, steps: usize) -> Result<Self> {
        score_core::check_eps(eps, sde.t_max())?;
        Self::uniform(sde.t_max(), eps, steps)
    }

    /// The encoding grid: `steps` uniform steps from `eps` up to the SDE's `T`.
    pub fn forward<S: Sde>(sde: &S, eps: f64, steps: usize) -> Result<Self> {
        score_core::check_eps(eps, sde.t_max())?;
        Self::uniform(eps, sde.t_max(), steps)
    }

    /// The times.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// Number of steps (one less than the number of times).
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// First time.
    pub fn start(&self) -> f64 {
        self.times[0]
    }

    /// Last time.
    pub fn end(&self) -> f64 {
        self.times[self.times.len() - 1]
    }

    /// Whether time runs backwards (a sampling grid).
    pub fn is_decreasing(&self) -> bool {
        self.times[1] < self.times[0]
    }

    /// The same times in the opposite order.
    pub fn reversed(&self) -> Self {
        let mut times = self.times.clone();
        times.reverse();
        Self { times }
    }

    /// `(i, t_i, t_{i+1})` for every step.
    pub fn intervals(&self) -> impl Iterator<Item = (usize, f64, f64)> + '_ {
        self.times
            .windows(2)
            .enumerate()
            .map(|(i, w)| (i, w[0], w[1]))
    }

    /// Checks that every time lies in the SDE's `[0, T]`.
    pub fn check_within<S: Sde>(&self, sde: &S) -> Result<()> {
        for &t in &self.times {
            sde.check_time(t)?;
        }
        Ok(())
    }

    pub(crate) fn require_decreasing(&self, what: &'static str) -> Result<()> {
        if self.is_decreasing() {
            Ok(())
        } else {
            Err(self.direction_error(what, "decreasing"))
        }
    }

    pub(crate) fn require_increasing(&self, what: &'static str) -> Result<()> {
        if self.is_decreasing() {
            Err(self.direction_error(what, "increasing"))
        } else {
            Ok(())
        }
    }

    fn direction_error(&self, what: &'static str, direction: &'static str) -> SampleError {
        SampleError::WrongDirection {
            what,
            start: self.start(),
            end: self.end(),
            direction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use score_core::VpSde;

    #[test]
    fn grids_are_validated() {
        assert!(matches!(
            TimeGrid::new(vec![1.0]),
            Err(SampleError::InvalidGrid { index: 1, .. })
        ));
        assert!(matches!(
            TimeGrid::new(vec![1.0, 0.5, 0.5]),
            Err(SampleError::InvalidGrid { index: 2, t, .. }) if t == 0.5
        ));
        assert!(matches!(
            TimeGrid::new(vec![1.0, f64::NAN]),
            Err(SampleError::InvalidGrid { index: 1, .. })
        ));
        assert!(matches!(
            TimeGrid::uniform(1.0, 0.0, 0),
            Err(SampleError::InvalidConfig { name: "steps", .. })
        ));
        assert!(TimeGrid::reverse(&VpSde::default(), 0.0, 10).is_err());
        let g = TimeGrid::reverse(&VpSde::default(), 1e-3, 10).unwrap();
        assert_eq!(g.steps(), 10);
        assert_eq!(g.end(), 1e-3);
        assert!(g.reversed().require_increasing("encode").is_ok());
        assert!(matches!(
            g.require_increasing("encode"),
            Err(SampleError::WrongDirection { .. })
        ));
        assert!(
            TimeGrid::uniform(0.0, 2.0, 4)
                .unwrap()
                .check_within(&VpSde::default())
                .is_err()
        );
    }
}
