//! The first ChaCha8 block of eight sample streams at once.
//!
//! [`NoiseSource`](super::NoiseSource) gives every sample its own ChaCha8 stream. A 2-D sampler
//! step reads 2–4 words of each, but `rand_chacha` refills 4 blocks (64 words) whenever a stream
//! is opened, so a step computed ~16 times the keystream it used, one sample at a time. Here the
//! first block (16 words) of eight consecutive streams under one key is computed side by side,
//! lane `l` holding stream `l` (one AVX2 register per state word where the CPU has it), and a
//! [`SampleRng`] hands out exactly the words `rand_chacha`'s `ChaCha8Rng` would: the first block
//! from here, then, only if a sample needs more, `ChaCha8Rng` itself positioned at word 16. The
//! draws are therefore bit-identical to those of `ChaCha8Rng` keyed the same way, which the tests
//! check word by word and draw by draw.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Streams computed side by side.
pub(super) const LANES: usize = 8;
/// Words in a ChaCha block.
const BLOCK: usize = 16;

/// The first block of `LANES` streams: `out[l]` is block 0 of stream `streams[l]` under `key`.
pub(super) fn first_blocks(key: &[u8; 32], streams: &[u64; LANES]) -> [[u32; BLOCK]; LANES] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just checked to support AVX2.
            return unsafe { avx2::blocks(key, streams) };
        }
    }
    blocks(key, streams)
}

/// The state before the rounds, word-major: `init[w][l]` is word `w` of lane `l`.
#[inline(always)]
fn initial_state(key: &[u8; 32], streams: &[u64; LANES]) -> [[u32; LANES]; BLOCK] {
    let mut init = [[0u32; LANES]; BLOCK];
    for (w, c) in [0x6170_7865u32, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]
        .into_iter()
        .enumerate()
    {
        init[w] = [c; LANES];
    }
    for (w, bytes) in key.chunks_exact(4).enumerate() {
        init[4 + w] = [u32::from_le_bytes(bytes.try_into().expect("4 bytes")); LANES];
    }
    for (l, &s) in streams.iter().enumerate() {
        init[14][l] = s as u32;
        init[15][l] = (s >> 32) as u32;
    }
    init
}

/// The eight streams in the eight 32-bit lanes of AVX2 registers, one register per state word
/// (the portable loop below leaves LLVM mixing scalar and vector code, 3× slower).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK, LANES, initial_state};
    use std::arch::x86_64::*;

    /// Rotations by 16 and 8 are byte shuffles; by 12 and 7 two shifts and an or.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl<const N: i32, const M: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi32::<N>(x), _mm256_srli_epi32::<M>(x))
    }

    /// As [`super::blocks`], with AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn blocks(key: &[u8; 32], streams: &[u64; LANES]) -> [[u32; BLOCK]; LANES] {
        let init = initial_state(key, streams);
        // SAFETY (all intrinsics below): AVX2 is enabled on this function; loads and stores
        // are unaligned ones on arrays of exactly 8 u32.
        unsafe {
            let rot16 = _mm256_setr_epi8(
                2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10,
                11, 8, 9, 14, 15, 12, 13,
            );
            let rot8 = _mm256_setr_epi8(
                3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6, 11,
                8, 9, 10, 15, 12, 13, 14,
            );
            let start: [__m256i; BLOCK] =
                std::array::from_fn(|w| _mm256_loadu_si256(init[w].as_ptr().cast()));
            let mut x = start;
            macro_rules! quarter {
                ($a:expr, $b:expr, $c:expr, $d:expr) => {
                    x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                    x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot16);
                    x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                    x[$b] = rotl::<12, 20>(_mm256_xor_si256(x[$b], x[$c]));
                    x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                    x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot8);
                    x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                    x[$b] = rotl::<7, 25>(_mm256_xor_si256(x[$b], x[$c]));
                };
            }
            for _ in 0..4 {
                quarter!(0, 4, 8, 12);
                quarter!(1, 5, 9, 13);
                quarter!(2, 6, 10, 14);
                quarter!(3, 7, 11, 15);
                quarter!(0, 5, 10, 15);
                quarter!(1, 6, 11, 12);
                quarter!(2, 7, 8, 13);
                quarter!(3, 4, 9, 14);
            }
            let mut words = [[0u32; LANES]; BLOCK];
            for w in 0..BLOCK {
                let v = _mm256_add_epi32(x[w], start[w]);
                _mm256_storeu_si256(words[w].as_mut_ptr().cast(), v);
            }
            std::array::from_fn(|l| std::array::from_fn(|w| words[w][l]))
        }
    }
}

/// ChaCha with 8 rounds, block counter 0, `rand_chacha`'s word layout: constants, key, a 64-bit
/// block counter (words 12–13), the 64-bit stream number (words 14–15). Portable: for CPUs
/// without AVX2, and the tests' check of the AVX2 copy.
fn blocks(key: &[u8; 32], streams: &[u64; LANES]) -> [[u32; BLOCK]; LANES] {
    let init = initial_state(key, streams);
    let mut x = init;
    for _ in 0..4 {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    let mut out = [[0u32; BLOCK]; LANES];
    for w in 0..BLOCK {
        for l in 0..LANES {
            out[l][w] = x[w][l].wrapping_add(init[w][l]);
        }
    }
    out
}

/// The ChaCha quarter round on words `a, b, c, d` of every lane.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // each lane reads four different words
fn quarter(x: &mut [[u32; LANES]; BLOCK], a: usize, b: usize, c: usize, d: usize) {
    for l in 0..LANES {
        x[a][l] = x[a][l].wrapping_add(x[b][l]);
        x[d][l] = (x[d][l] ^ x[a][l]).rotate_left(16);
        x[c][l] = x[c][l].wrapping_add(x[d][l]);
        x[b][l] = (x[b][l] ^ x[c][l]).rotate_left(12);
        x[a][l] = x[a][l].wrapping_add(x[b][l]);
        x[d][l] = (x[d][l] ^ x[a][l]).rotate_left(8);
        x[c][l] = x[c][l].wrapping_add(x[d][l]);
        x[b][l] = (x[b][l] ^ x[c][l]).rotate_left(7);
    }
}

/// One sample's stream: its first block computed by [`first_blocks`], the rest (rarely needed in
/// low dimension) by `ChaCha8Rng`. Reads words in order exactly as `rand_core`'s `BlockRng`
/// does, a `u64` being two consecutive words, low first.
pub(super) struct SampleRng<'a> {
    first: &'a [u32; BLOCK],
    /// Next word of `first` to read; `BLOCK` once it is used up.
    index: usize,
    key: &'a [u8; 32],
    stream: u64,
    rest: Option<ChaCha8Rng>,
}

impl<'a> SampleRng<'a> {
    /// The stream `stream` under `key`, whose first block is `first`.
    pub(super) fn new(key: &'a [u8; 32], stream: u64, first: &'a [u32; BLOCK]) -> Self {
        Self {
            first,
            index: 0,
            key,
            stream,
            rest: None,
        }
    }

    /// `ChaCha8Rng` from word 16 on, opened on first use.
    #[cold]
    fn rest(&mut self) -> &mut ChaCha8Rng {
        let (key, stream) = (self.key, self.stream);
        self.rest.get_or_insert_with(|| {
            let mut rng = ChaCha8Rng::from_seed(*key);
            rng.set_stream(stream);
            rng.set_word_pos(BLOCK as u128);
            rng
        })
    }
}

impl RngCore for SampleRng<'_> {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        if self.index < BLOCK {
            self.index += 1;
            self.first[self.index - 1]
        } else {
            self.rest().next_u32()
        }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        if self.index + 1 < BLOCK {
            self.index += 2;
            u64::from(self.first[self.index - 2]) | (u64::from(self.first[self.index - 1]) << 32)
        } else {
            let lo = self.next_u32();
            let hi = self.next_u32();
            u64::from(lo) | (u64::from(hi) << 32)
        }
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // Whole words, little-endian; a partial last word is consumed whole, as in `BlockRng`.
        for chunk in dest.chunks_mut(4) {
            let word = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> [u8; 32] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7))
    }

    #[test]
    fn first_blocks_are_chacha8_block_zero() {
        for (k, base) in [(key(1), 0u64), (key(2), u64::MAX - 3), (key(3), 1 << 40)] {
            let streams: [u64; LANES] = std::array::from_fn(|l| base.wrapping_add(l as u64 * 3));
            let ours = first_blocks(&k, &streams);
            let portable = blocks(&k, &streams);
            assert_eq!(ours, portable, "the AVX2 copy and the portable one agree");
            for (l, &s) in streams.iter().enumerate() {
                let mut rng = ChaCha8Rng::from_seed(k);
                rng.set_stream(s);
                let want: [u32; BLOCK] = std::array::from_fn(|_| rng.next_u32());
                assert_eq!(ours[l], want, "stream {s}");
            }
        }
    }

    #[test]
    fn sample_rng_reads_the_same_words_as_chacha8rng() {
        // Mixed u32 / u64 / byte reads, crossing word 16 at an odd and at an even position and
        // the 64-word refills of `ChaCha8Rng` after that.
        let k = key(9);
        let streams: [u64; LANES] = std::array::from_fn(|l| 100 + l as u64);
        let firsts = first_blocks(&k, &streams);
        for pattern in 0..6u32 {
            let mut ours = SampleRng::new(&k, streams[pattern as usize], &firsts[pattern as usize]);
            let mut want = ChaCha8Rng::from_seed(k);
            want.set_stream(streams[pattern as usize]);
            for i in 0..200u32 {
                match (i + pattern) % 5 {
                    0 | 3 => assert_eq!(ours.next_u64(), want.next_u64(), "read {i}"),
                    1 => assert_eq!(ours.next_u32(), want.next_u32(), "read {i}"),
                    2 => {
                        let (mut a, mut b) = ([0u8; 7], [0u8; 7]);
                        ours.fill_bytes(&mut a);
                        want.fill_bytes(&mut b);
                        assert_eq!(a, b, "read {i}");
                    }
                    _ => assert_eq!(ours.next_u64(), want.next_u64(), "read {i}"),
                }
            }
        }
    }
}
