//! Per-mode occupancy of a mixture: each point goes to one component, and the counts per
//! component are compared with the weights (a sampler that drops or favours a mode shows up here
//! long before it moves a global distance).

use score_core::GaussianMixture;

use crate::error::{Result, points};

/// Which component a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// The component whose mean is closest in Euclidean distance.
    NearestMean,
    /// The component with the largest `ln w_k + ln N(x; μ_k, diag v_k)` (the most likely one a
    /// posteriori; ties go to the lower index).
    MostLikely,
}

fn component_log_prob(x: &[f64], w: f64, mean: &[f64], var: &[f64]) -> f64 {
    w.ln()
        + x.iter()
            .zip(mean)
            .zip(var)
            .map(|((x, m), v)| -0.5 * ((x - m) * (x - m) / v + v.ln()))
            .sum::<f64>()
}

/// The component of every point of a row-major set of the mixture's dimension.
pub fn assign(x: &[f64], mixture: &GaussianMixture, rule: Assignment) -> Result<Vec<usize>> {
    let dim = mixture.dim();
    points("point set", x, dim, 0)?;
    let score = |p: &[f64], k: usize| match rule {
        Assignment::NearestMean => -p
            .iter()
            .zip(&mixture.means()[k])
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>(),
        Assignment::MostLikely => component_log_prob(
            p,
            mixture.weights()[k],
            &mixture.means()[k],
            &mixture.variances()[k],
        ),
    };
    Ok(x.chunks(dim)
        .map(|p| {
            let mut best = (0, score(p, 0));
            for k in 1..mixture.n_components() {
                let s = score(p, k);
                if s > best.1 {
                    best = (k, s);
                }
            }
            best.0
        })
        .collect())
}

/// The number of points assigned to each component (length `n_components`, summing to the
/// number of points).
///
/// ```
/// use score_core::{GaussianMixture, NoiseKey, NoiseSource};
/// use score_eval::{Assignment, occupancy};
/// let ring = GaussianMixture::ring(4, 3.0, 0.1).unwrap();
/// let x = ring.sample_f64(400, &NoiseSource::new(0), NoiseKey::new(0, 0));
/// let counts = occupancy(&x, &ring, Assignment::NearestMean).unwrap();
/// assert_eq!(counts.iter().sum::<usize>(), 400);
/// ```
pub fn occupancy(x: &[f64], mixture: &GaussianMixture, rule: Assignment) -> Result<Vec<usize>> {
    let mut counts = vec![0; mixture.n_components()];
    for k in assign(x, mixture, rule)? {
        counts[k] += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EvalError;

    #[test]
    fn nearest_and_most_likely_differ_where_variances_do() {
        // N(0, 1) with weight ½ and N(3, 0.01) with weight ½. At x = 2 the nearest mean is 3,
        // but ln N(2; 0, 1) = −2 − ½ln 2π beats ln N(2; 3, 0.01) = −50 + ½ln 100 − ½ln 2π.
        let m = GaussianMixture::new(
            vec![1.0, 1.0],
            vec![vec![0.0], vec![3.0]],
            vec![vec![1.0], vec![0.01]],
        )
        .unwrap();
        let x = [2.0, 3.05, -0.5];
        assert_eq!(
            assign(&x, &m, Assignment::NearestMean).unwrap(),
            vec![1, 1, 0]
        );
        assert_eq!(
            assign(&x, &m, Assignment::MostLikely).unwrap(),
            vec![0, 1, 0]
        );
        assert_eq!(
            occupancy(&x, &m, Assignment::MostLikely).unwrap(),
            vec![2, 1]
        );
    }

    #[test]
    fn weights_move_the_most_likely_boundary() {
        // Equal unit variances at 0 and 2: the boundary sits at 1 + ln(w₀/w₁)/2, so with
        // w₀ = 0.9 a point at 1.5 (nearer to 2) is more likely from the first component.
        let m = GaussianMixture::new(
            vec![0.9, 0.1],
            vec![vec![0.0], vec![2.0]],
            vec![vec![1.0], vec![1.0]],
        )
        .unwrap();
        assert_eq!(assign(&[1.5], &m, Assignment::MostLikely).unwrap(), vec![0]);
        assert_eq!(
            assign(&[1.5], &m, Assignment::NearestMean).unwrap(),
            vec![1]
        );
        assert!(matches!(
            assign(&[1.0, 2.0], &GaussianMixture::ring(3, 1.0, 0.1).unwrap(), Assignment::NearestMean),
            Ok(v) if v.len() == 1
        ));
        assert!(matches!(
            assign(
                &[1.0, 2.0, 3.0],
                &GaussianMixture::ring(3, 1.0, 0.1).unwrap(),
                Assignment::NearestMean
            ),
            Err(EvalError::Ragged { .. })
        ));
    }
}
