//! Seeded epoch orders: a permutation that is a pure function of `(n, seed, epoch)`, so a
//! training run visits the data in the same order every time and can resume mid-epoch from the
//! epoch number and the position alone.

use score_core::{NoiseKey, NoiseSource};

/// The `NoiseSource::derive` purpose of shuffling, so an epoch order is independent of any other
/// draw made with the same seed.
const SHUFFLE_PURPOSE: u64 = 0x0073_6875_6666_6c65; // "shuffle"

/// A uniformly random permutation of `0..n` for `epoch`, from [`NoiseSource::new`]`(seed)`.
///
/// Equivalent to [`shuffled_indices_from`] with that source.
///
/// ```
/// use score_data::shuffled_indices;
/// let a = shuffled_indices(10, 42, 0);
/// assert_eq!(a, shuffled_indices(10, 42, 0)); // reproducible
/// assert_ne!(a, shuffled_indices(10, 42, 1)); // a new order each epoch
/// let mut s = a.clone();
/// s.sort();
/// assert_eq!(s, (0..10).collect::<Vec<_>>());
/// ```
pub fn shuffled_indices(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    shuffled_indices_from(n, &NoiseSource::new(seed), epoch)
}

/// A uniformly random permutation of `0..n` for `epoch`, drawn from `noise`: a Fisher–Yates
/// shuffle whose uniforms come from `noise.derive(SHUFFLE)` under [`NoiseKey`]`(epoch, 0)`.
/// Batch `k` of size `b` in epoch `e` is `shuffled_indices_from(n, noise, e)[k*b..(k+1)*b]`.
pub fn shuffled_indices_from(n: usize, noise: &NoiseSource, epoch: u64) -> Vec<usize> {
    let u = noise
        .with_sample_offset(0)
        .derive(SHUFFLE_PURPOSE)
        .uniform_f64(n, 1, NoiseKey::new(epoch, 0));
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // u ∈ (0, 1), so j ∈ 0..=i; the min guards the rounding of u·(i+1) at u → 1.
        let j = ((u[i] * (i + 1) as f64) as usize).min(i);
        idx.swap(i, j);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_permutation_and_seeded() {
        for n in [0, 1, 2, 17, 1000] {
            let p = shuffled_indices(n, 3, 5);
            let mut s = p.clone();
            s.sort_unstable();
            assert_eq!(s, (0..n).collect::<Vec<_>>());
        }
        assert_ne!(shuffled_indices(100, 3, 5), shuffled_indices(100, 4, 5));
        assert_ne!(shuffled_indices(100, 3, 5), shuffled_indices(100, 3, 6));
    }

    #[test]
    fn positions_are_roughly_uniform() {
        // Where element 0 lands over many epochs: each of 4 slots ~1/4 of the time.
        let mut counts = [0usize; 4];
        for e in 0..4000 {
            let p = shuffled_indices(4, 1, e);
            counts[p.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        for c in counts {
            assert!((850..1150).contains(&c), "{counts:?}");
        }
    }
}
