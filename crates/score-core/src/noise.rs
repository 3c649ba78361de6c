//! Counter-based noise: every random number is a pure function of `(seed, key, sample index,
//! element index)`, so a seeded run repeats exactly and a sample receives the same noise whatever
//! the batch it is drawn in.
//!
//! A [`NoiseKey`] names one draw (the step of a sampler or training loop, and a stream within the
//! step, e.g. predictor vs. corrector). The generator is ChaCha8 (`rand_chacha`): its 256-bit key
//! holds the seed, the step, the stream and the kind of draw (normal, uniform, signs) side by
//! side, and its 64-bit stream number is the global sample index, so distinct
//! `(seed, step, stream, kind, sample)` are distinct ChaCha streams and never alias. Within a
//! sample, `rand_distr`'s samplers consume that stream (standard normals by its ziggurat), on the
//! host; the result is uploaded. The streams' first blocks are computed eight samples at a time
//! (AVX2 where the CPU has it), word for word those of `rand_chacha`'s `ChaCha8Rng`, which
//! produces the rest of a stream where a sample needs more than 16 words. No state is kept, so a `NoiseSource` is `Copy`, thread-safe and
//! trivially checkpointed.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Open01, StandardNormal};

mod lanes;
use serde::{Deserialize, Serialize};

/// Names one draw from a [`NoiseSource`]: the step and a stream within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NoiseKey {
    /// Step of the algorithm (sampler step, training step).
    pub step: u64,
    /// Stream within the step (e.g. 0 for the predictor, 1 + j for the j-th corrector step).
    pub stream: u32,
}

impl NoiseKey {
    /// Key for `stream` at `step`.
    pub const fn new(step: u64, stream: u32) -> Self {
        Self { step, stream }
    }
}

/// The source of every random draw in the workspace. See the module docs.
///
/// ```
/// use score_core::noise::{NoiseKey, NoiseSource};
/// let a = NoiseSource::new(7).normal_f64(4, 3, NoiseKey::new(0, 0));
/// // Samples 2 and 3 drawn on their own, as a batch starting at index 2, get the same noise.
/// let b = NoiseSource::new(7).with_sample_offset(2).normal_f64(2, 3, NoiseKey::new(0, 0));
/// assert_eq!(&a[6..], &b[..]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseSource {
    seed: u64,
    sample_offset: u64,
}

/// What a draw is for; part of the ChaCha key, so that a uniform and a normal draw under one
/// [`NoiseKey`] are independent.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Kind {
    Normal = 1,
    Uniform = 2,
    Sign = 3,
    Derive = 4,
}

impl NoiseSource {
    /// A source keyed by `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            seed,
            sample_offset: 0,
        }
    }

    /// The same source, seen from a batch whose first row is global sample `offset`. Splitting a
    /// batch into chunks with matching offsets reproduces the noise of the whole batch.
    pub const fn with_sample_offset(self, offset: u64) -> Self {
        Self {
            seed: self.seed,
            sample_offset: offset,
        }
    }

    /// The seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// The global index of this batch's first sample.
    pub const fn sample_offset(&self) -> u64 {
        self.sample_offset
    }

    /// An independent source derived from this one (e.g. one per worker or per purpose).
    /// The derived seed depends on `(seed, purpose)` only, and the sample offset is kept, so
    /// per-sample noise stays batch-independent: `s.with_sample_offset(k).derive(p)` equals
    /// `s.derive(p).with_sample_offset(k)`.
    ///
    /// ```
    /// use score_core::noise::{NoiseKey, NoiseSource};
    /// let (s, key) = (NoiseSource::new(7), NoiseKey::new(0, 0));
    /// let whole = s.derive(3).normal_f64(4, 2, key);
    /// let tail = s.with_sample_offset(2).derive(3).normal_f64(2, 2, key);
    /// assert_eq!(&whole[4..], &tail[..]);
    /// ```
    pub fn derive(&self, purpose: u64) -> Self {
        // The first word of a ChaCha stream of its own, keyed by (seed, purpose) and read at
        // sample 0 whatever the offset: seeding from the offset's stream made the derived source,
        // and so sample i's noise, differ from batch to batch.
        let mut rng = Self::new(self.seed).rng(NoiseKey::new(purpose, 0), Kind::Derive, 0);
        Self {
            seed: rng.random(),
            sample_offset: self.sample_offset,
        }
    }

    /// The ChaCha8 key of one draw: (seed, step, stream, kind) side by side.
    #[inline]
    fn key_bytes(&self, key: NoiseKey, kind: Kind) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&self.seed.to_le_bytes());
        k[8..16].copy_from_slice(&key.step.to_le_bytes());
        k[16..20].copy_from_slice(&key.stream.to_le_bytes());
        k[20] = kind as u8;
        k
    }

    /// The ChaCha8 stream of one sample of one draw: key = (seed, step, stream, kind), stream
    /// number = global sample index.
    fn rng(&self, key: NoiseKey, kind: Kind, sample: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.key_bytes(key, kind));
        rng.set_stream((sample as u64).wrapping_add(self.sample_offset));
        rng
    }

    /// Fills `rows` (`per` values a sample, for samples `first, first + 1, …`) with `draw` of
    /// each sample's stream. The streams are those of [`rng`](Self::rng), word for word; their
    /// first blocks are computed eight at a time (see `lanes`).
    fn fill_samples<T>(
        &self,
        key: NoiseKey,
        kind: Kind,
        first: usize,
        per: usize,
        rows: &mut [T],
        draw: impl Fn(&mut lanes::SampleRng<'_>) -> T,
    ) {
        if per == 0 {
            return;
        }
        let k = self.key_bytes(key, kind);
        let base = (first as u64).wrapping_add(self.sample_offset);
        for (g, group) in rows.chunks_mut(lanes::LANES * per).enumerate() {
            let start = base.wrapping_add((g * lanes::LANES) as u64);
            let streams = std::array::from_fn(|l| start.wrapping_add(l as u64));
            let firsts = lanes::first_blocks(&k, &streams);
            for (l, row) in group.chunks_mut(per).enumerate() {
                let mut rng = lanes::SampleRng::new(&k, streams[l], &firsts[l]);
                for v in row {
                    *v = draw(&mut rng);
                }
            }
        }
    }

    /// `n` samples of `per_sample` standard normals each, row-major, on the host.
    pub fn normal_f64(&self, n: usize, per_sample: usize, key: NoiseKey) -> Vec<f64> {
        let mut out = vec![0.0; n * per_sample];
        self.fill_samples(key, Kind::Normal, 0, per_sample, &mut out, |rng| {
            StandardNormal.sample(rng)
        });
        out
    }

    /// `n` samples of `per_sample` uniforms on (0, 1) each, row-major, on the host.
    pub fn uniform_f64(&self, n: usize, per_sample: usize, key: NoiseKey) -> Vec<f64> {
        let mut out = vec![0.0; n * per_sample];
        self.fill_samples(key, Kind::Uniform, 0, per_sample, &mut out, |rng| {
            Open01.sample(rng)
        });
        out
    }

    /// A tensor of standard normals of the given shape (first dimension = samples).
    pub fn normal<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        key: NoiseKey,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let per = shape[1..].iter().product::<usize>();
        let mut data = vec![0f32; shape[0] * per];
        // Sample i's stream depends on i alone, so blocks of rows fill in parallel with the
        // values of `normal_f64` (drawn in f64, then rounded).
        crate::host::fill_row_blocks(&mut data, per, |first, rows| {
            self.fill_samples(key, Kind::Normal, first, per, rows, |rng| {
                let z: f64 = StandardNormal.sample(rng);
                z as f32
            });
        });
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    /// A tensor of independent ±1 signs (Rademacher) of the given shape.
    pub fn rademacher<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        key: NoiseKey,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let per = shape[1..].iter().product::<usize>();
        let mut data = vec![0f32; shape[0] * per];
        crate::host::fill_row_blocks(&mut data, per, |first, rows| {
            self.fill_samples(key, Kind::Sign, first, per, rows, |rng| {
                let u: f64 = Open01.sample(rng);
                if u < 0.5 { -1.0 } else { 1.0 }
            });
        });
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    /// A tensor of uniforms on (0, 1) of the given shape.
    pub fn uniform<B: Backend, const D: usize>(
        &self,
        shape: [usize; D],
        key: NoiseKey,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let per = shape[1..].iter().product::<usize>();
        let mut data = vec![0f32; shape[0] * per];
        crate::host::fill_row_blocks(&mut data, per, |first, rows| {
            self.fill_samples(key, Kind::Uniform, first, per, rows, |rng| {
                let u: f64 = Open01.sample(rng);
                u as f32
            });
        });
        Tensor::from_data(TensorData::new(data, shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::to_f64;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn same_seed_same_noise_and_keys_differ() {
        let s = NoiseSource::new(1);
        let k = NoiseKey::new(3, 0);
        assert_eq!(s.normal_f64(10, 5, k), s.normal_f64(10, 5, k));
        assert_ne!(
            s.normal_f64(10, 5, k),
            s.normal_f64(10, 5, NoiseKey::new(3, 1))
        );
        assert_ne!(
            s.normal_f64(10, 5, k),
            s.normal_f64(10, 5, NoiseKey::new(4, 0))
        );
        assert_ne!(
            s.normal_f64(10, 5, k),
            NoiseSource::new(2).normal_f64(10, 5, k)
        );
        assert_ne!(s.derive(1).seed(), s.derive(2).seed());
    }

    #[test]
    fn draws_are_those_of_each_samples_chacha8rng() {
        // The definition: sample i of a draw reads ChaCha8Rng keyed (seed, step, stream, kind)
        // at stream i + offset, through rand_distr. The batched path (first blocks eight at a
        // time) must give exactly that, for batches that are not multiples of eight, rows that
        // need more than the first block (40 normals), offsets near u64::MAX and every kind.
        let dev = Default::default();
        for (seed, offset) in [(3u64, 0u64), (4, 5), (5, u64::MAX - 6)] {
            let s = NoiseSource::new(seed).with_sample_offset(offset);
            let key = NoiseKey::new(seed * 11, 2);
            for (n, per) in [(1usize, 1usize), (13, 2), (9, 3), (3, 40), (2050, 2)] {
                let want = |kind: Kind| -> Vec<f64> {
                    (0..n)
                        .flat_map(|i| {
                            let mut rng = s.rng(key, kind, i);
                            (0..per)
                                .map(|_| match kind {
                                    Kind::Normal => StandardNormal.sample(&mut rng),
                                    _ => Open01.sample(&mut rng),
                                })
                                .collect::<Vec<f64>>()
                        })
                        .collect()
                };
                let normal = want(Kind::Normal);
                assert_eq!(s.normal_f64(n, per, key), normal, "{n}x{per}");
                let as_f32: Vec<f64> = normal.iter().map(|&z| z as f32 as f64).collect();
                assert_eq!(to_f64(s.normal::<B, 2>([n, per], key, &dev)), as_f32);
                let uniform = want(Kind::Uniform);
                assert_eq!(s.uniform_f64(n, per, key), uniform, "{n}x{per}");
                let as_f32: Vec<f64> = uniform.iter().map(|&u| u as f32 as f64).collect();
                assert_eq!(to_f64(s.uniform::<B, 2>([n, per], key, &dev)), as_f32);
                let signs: Vec<f64> = want(Kind::Sign)
                    .iter()
                    .map(|&u| if u < 0.5 { -1.0 } else { 1.0 })
                    .collect();
                assert_eq!(to_f64(s.rademacher::<B, 2>([n, per], key, &dev)), signs);
            }
        }
    }

    #[test]
    fn per_sample_noise_does_not_depend_on_batch_size() {
        let s = NoiseSource::new(42);
        let k = NoiseKey::new(0, 0);
        let dev = Default::default();
        let big = to_f64(s.normal::<B, 3>([8, 2, 3], k, &dev));
        let small = to_f64(s.normal::<B, 3>([3, 2, 3], k, &dev));
        assert_eq!(&big[..18], &small[..]);
        let tail = to_f64(s.with_sample_offset(5).normal::<B, 3>([3, 2, 3], k, &dev));
        assert_eq!(&big[30..], &tail[..]);
    }

    #[test]
    fn derived_noise_does_not_depend_on_the_batch() {
        // Samples 0..10 of a derived source drawn as one batch and as the chunks 0..3, 3..7,
        // 7..10, each derived from the chunk's offset view of the parent.
        let s = NoiseSource::new(11);
        let k = NoiseKey::new(2, 1);
        let whole = s.derive(5).normal_f64(10, 3, k);
        let whole_u = s.derive(5).uniform_f64(10, 1, k);
        for (start, len) in [(0, 3), (3, 4), (7, 3)] {
            let d = s.with_sample_offset(start as u64).derive(5);
            assert_eq!(d, s.derive(5).with_sample_offset(start as u64));
            assert_eq!(d.sample_offset(), start as u64);
            let part = d.normal_f64(len, 3, k);
            assert_eq!(
                &whole[3 * start..3 * (start + len)],
                &part[..],
                "chunk at {start}"
            );
            let part_u = d.uniform_f64(len, 1, k);
            assert_eq!(
                &whole_u[start..start + len],
                &part_u[..],
                "chunk at {start}"
            );
        }
        // Still independent of the parent and across purposes.
        assert_ne!(s.derive(5).seed(), s.seed());
        assert_ne!(s.derive(5).seed(), s.derive(6).seed());
    }

    #[test]
    fn normal_moments_match() {
        // 200k draws: the standard error of the mean is 1/sqrt(2e5) ≈ 2.2e-3 and of the variance
        // sqrt(2/2e5) ≈ 3.2e-3; 5 standard errors gives the bounds below.
        let v = NoiseSource::new(9).normal_f64(20_000, 10, NoiseKey::new(0, 0));
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let kurt = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n / (var * var);
        assert!(mean.abs() < 0.011, "mean {mean}");
        assert!((var - 1.0).abs() < 0.016, "var {var}");
        // Kurtosis of a normal is 3; its standard error here is sqrt(24/n) ≈ 0.011.
        assert!((kurt - 3.0).abs() < 0.06, "kurtosis {kurt}");
        // Neighbouring coordinates of a sample are uncorrelated.
        let corr = v.chunks(2).map(|p| p[0] * p[1]).sum::<f64>() / (n / 2.0);
        assert!(corr.abs() < 0.016, "pair correlation {corr}");
    }

    #[test]
    fn uniform_and_rademacher_are_balanced() {
        // 1e5 uniforms: the mean's standard error is sqrt(1/12/1e5) ≈ 9e-4; bound at 5 of them.
        let u = NoiseSource::new(3).uniform_f64(50_000, 2, NoiseKey::new(1, 2));
        assert!(u.iter().all(|&x| x > 0.0 && x < 1.0));
        let m = u.iter().sum::<f64>() / u.len() as f64;
        assert!((m - 0.5).abs() < 0.0046, "uniform mean {m}");
        let dev = Default::default();
        let r =
            to_f64(NoiseSource::new(3).rademacher::<B, 2>([10_000, 4], NoiseKey::new(0, 0), &dev));
        assert!(r.iter().all(|&x| x == 1.0 || x == -1.0));
        // Mean of 4e4 signs has standard error 5e-3.
        let m = r.iter().sum::<f64>() / r.len() as f64;
        assert!(m.abs() < 0.025, "rademacher mean {m}");
    }

    /// Pearson correlation of two equally long draws.
    fn correlation(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - ma) * (y - mb))
            .sum::<f64>();
        let va = a.iter().map(|x| (x - ma).powi(2)).sum::<f64>();
        let vb = b.iter().map(|y| (y - mb).powi(2)).sum::<f64>();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn keys_differing_in_any_bit_give_independent_noise() {
        // 40,000 pairs: under independence the sample correlation has standard deviation
        // 1/√40000 = 0.005; |r| < 0.03 is six of them (a false alarm has odds < 1e-8 per pair,
        // and the test checks 200 pairs).
        let s = NoiseSource::new(5);
        let base = NoiseKey::new(7, 0);
        let x = s.normal_f64(10_000, 4, base);
        let mut others = Vec::new();
        for bit in 0..32 {
            others.push((
                "stream bit",
                s.normal_f64(10_000, 4, NoiseKey::new(7, 1 << bit)),
            ));
        }
        for bit in 0..64 {
            others.push((
                "step bit",
                s.normal_f64(10_000, 4, NoiseKey::new(7 ^ (1 << bit), 0)),
            ));
            others.push((
                "seed bit",
                NoiseSource::new(5 ^ (1 << bit)).normal_f64(10_000, 4, base),
            ));
            // The sample index: the same key seen from a batch shifted by 2^bit.
            let shifted = s.with_sample_offset(1 << bit).normal_f64(10_000, 4, base);
            others.push(("sample bit", shifted));
        }
        // A uniform draw under the same key is other randomness too: were it the same stream
        // pushed through a monotone map, its correlation with the normals would be near 1.
        others.push(("uniform vs normal", s.uniform_f64(10_000, 4, base)));
        for (what, y) in &others {
            assert_ne!(&x, y, "{what}");
            let r = correlation(&x, y);
            assert!(r.abs() < 0.03, "{what}: correlation {r}");
        }
        // The old generator's alias: streams 0 and 2^31 gave identical noise.
        assert_ne!(x, s.normal_f64(10_000, 4, NoiseKey::new(7, 1 << 31)));
    }
}
