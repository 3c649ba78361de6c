//! Images that are not digits: pixel noise and heavily blurred digits. The judge is trained to
//! give them the uniform distribution over the classes (outlier exposure, Hendrycks et al. 2019)
//! and tested to refuse them, so that "confidently classified" means "looks like a digit".

use score_core::{NoiseKey, NoiseSource};

use super::net::{PIXELS, SIDE};

/// `n` images of independent uniform pixels on `(0, 1)`, row-major `n × 784`.
///
/// ```
/// use score_core::{NoiseKey, NoiseSource};
/// let x = score_eval::judge::uniform_noise(2, &NoiseSource::new(0), NoiseKey::new(0, 0));
/// assert_eq!(x.len(), 2 * 784);
/// assert!(x.iter().all(|&v| v > 0.0 && v < 1.0));
/// ```
pub fn uniform_noise(n: usize, noise: &NoiseSource, key: NoiseKey) -> Vec<f32> {
    noise
        .uniform_f64(n, PIXELS, key)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// `n` images of independent `N(mean, std²)` pixels clipped to `[0, 1]`, row-major `n × 784`.
///
/// ```
/// use score_core::{NoiseKey, NoiseSource};
/// let x = score_eval::judge::gaussian_noise(1, 0.13, 0.31, &NoiseSource::new(0), NoiseKey::new(0, 0));
/// assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
/// ```
pub fn gaussian_noise(
    n: usize,
    mean: f64,
    std: f64,
    noise: &NoiseSource,
    key: NoiseKey,
) -> Vec<f32> {
    noise
        .normal_f64(n, PIXELS, key)
        .into_iter()
        .map(|z| (mean + std * z).clamp(0.0, 1.0) as f32)
        .collect()
}

/// Box blur of radius `radius` (a `(2r + 1)²` window, truncated at the borders and averaged over
/// the pixels inside) of `n` images, row-major `n × 784`; applied as two 1-D passes.
///
/// ```
/// // A single lit pixel spreads evenly over its 3×3 neighbourhood at radius 1.
/// let mut x = vec![0.0f32; 784];
/// x[14 * 28 + 14] = 9.0;
/// let y = score_eval::judge::box_blur(&x, 1);
/// assert!((y[13 * 28 + 13] - 1.0).abs() < 1e-6 && y[12 * 28 + 14] == 0.0);
/// ```
pub fn box_blur(images: &[f32], radius: usize) -> Vec<f32> {
    let mut out = images.to_vec();
    let mut tmp = vec![0.0f32; PIXELS];
    for img in out.chunks_mut(PIXELS) {
        // Rows, then columns; `at(i, j)` reads the source of the pass.
        for pass in 0..2 {
            let src: &[f32] = if pass == 0 { img } else { &tmp };
            let mut dst = [0.0f32; PIXELS];
            for i in 0..SIDE {
                for j in 0..SIDE {
                    let (lo, hi) = (j.saturating_sub(radius), (j + radius).min(SIDE - 1));
                    let sum: f32 = (lo..=hi)
                        .map(|k| {
                            if pass == 0 {
                                src[i * SIDE + k]
                            } else {
                                src[k * SIDE + i]
                            }
                        })
                        .sum();
                    let v = sum / (hi - lo + 1) as f32;
                    if pass == 0 {
                        dst[i * SIDE + j] = v;
                    } else {
                        dst[j * SIDE + i] = v;
                    }
                }
            }
            if pass == 0 {
                tmp.copy_from_slice(&dst);
            } else {
                img.copy_from_slice(&dst);
            }
        }
    }
    out
}
