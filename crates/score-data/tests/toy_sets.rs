//! Each toy set checked against a property its construction guarantees.

use score_core::{NoiseKey, NoiseSource};
use score_data::DataError;
use score_data::toy::{self, ToyDataset, ToySet};

const KEY: NoiseKey = NoiseKey::new(0, 0);

fn points(x: &[f64]) -> impl Iterator<Item = (f64, f64)> + '_ {
    x.chunks_exact(2).map(|p| (p[0], p[1]))
}

#[test]
fn moons_lie_on_sklearns_two_half_circles() {
    let x = toy::two_moons(4000, 0.0, &NoiseSource::new(1), KEY).unwrap();
    let (mut upper, mut lower) = (0, 0);
    for (a, b) in points(&x) {
        let on_upper = ((a * a + b * b).sqrt() - 1.0).abs() < 1e-12 && b >= 0.0;
        let on_lower =
            (((a - 1.0).powi(2) + (b - 0.5).powi(2)).sqrt() - 1.0).abs() < 1e-12 && b <= 0.5;
        assert!(on_upper || on_lower, "({a}, {b})");
        if on_upper {
            upper += 1;
        } else {
            lower += 1;
        }
    }
    assert!(
        (1800..2200).contains(&upper) && upper + lower == 4000,
        "{upper} / {lower}"
    );
    // With noise the spread around the curves matches the noise level.
    let x = toy::two_moons(4000, 0.1, &NoiseSource::new(1), KEY).unwrap();
    let mean: f64 = points(&x).map(|(a, b)| a + b).sum::<f64>() / 4000.0;
    // E[x + y] = (0 + 1) / 2 + (2/π + (1/2 − 2/π)) / 2 = 3/4.
    assert!((mean - 0.75).abs() < 0.05, "{mean}");
}

#[test]
fn rings_have_their_radii() {
    let radii = [0.75, 1.5, 2.25, 3.0];
    let x = toy::rings(4000, &radii, 0.0, &NoiseSource::new(2), KEY).unwrap();
    let mut counts = [0usize; 4];
    for (a, b) in points(&x) {
        let r = (a * a + b * b).sqrt();
        let k = radii
            .iter()
            .position(|&q| (q - r).abs() < 1e-12)
            .expect("on a ring");
        counts[k] += 1;
    }
    assert!(
        counts.iter().all(|&c| (850..1150).contains(&c)),
        "{counts:?}"
    );
    let x = ToySet::rings()
        .sample(4000, &NoiseSource::new(2), KEY)
        .unwrap();
    for (a, b) in points(&x) {
        let r = (a * a + b * b).sqrt();
        let d = radii
            .iter()
            .map(|q| (q - r).abs())
            .fold(f64::INFINITY, f64::min);
        assert!(d < 0.5, "r = {r}");
    }
}

#[test]
fn swiss_roll_radius_grows_with_the_angle() {
    let scale = 0.2;
    let x = toy::swiss_roll(2000, 0.0, scale, &NoiseSource::new(3), KEY).unwrap();
    let pi = std::f64::consts::PI;
    for (a, b) in points(&x) {
        let t = (a * a + b * b).sqrt() / scale;
        assert!((1.5 * pi - 1e-9..=4.5 * pi + 1e-9).contains(&t), "{t}");
        // The point's angle is its radius t (mod 2π): the spiral r = θ.
        assert!((a - scale * t * t.cos()).abs() < 1e-9 && (b - scale * t * t.sin()).abs() < 1e-9);
    }
}

#[test]
fn eight_gaussians_are_centred_and_fill_every_mode() {
    let n = 8000;
    let x = toy::eight_gaussians(n, &NoiseSource::new(4), KEY);
    let (mx, my) = points(&x).fold((0.0, 0.0), |(sx, sy), (a, b)| (sx + a, sy + b));
    assert!((mx / n as f64).abs() < 0.15 && (my / n as f64).abs() < 0.15);
    let mix = toy::eight_gaussians_mixture();
    let mut counts = [0usize; 8];
    for (a, b) in points(&x) {
        let (k, d) = mix
            .means()
            .iter()
            .map(|m| ((m[0] - a).powi(2) + (m[1] - b).powi(2)).sqrt())
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |best, (k, d)| if d < best.1 { (k, d) } else { best },
            );
        assert!(d < 1.2, "({a}, {b}) is {d} from the nearest mode");
        counts[k] += 1;
    }
    assert!(
        counts.iter().all(|&c| (850..1150).contains(&c)),
        "{counts:?}"
    );
    assert!(
        mix.means()
            .iter()
            .all(|m| ((m[0].hypot(m[1])) - 4.0).abs() < 1e-12)
    );
}

#[test]
fn three_gaussians_match_seed_001() {
    let n = 6000;
    let x = toy::three_gaussians(n, &NoiseSource::new(5), KEY);
    let (mx, my) = points(&x).fold((0.0, 0.0), |(sx, sy), (a, b)| (sx + a, sy + b));
    // Mean of the means (−2, −2), (2, 2), (−2, 2) is (−2/3, 2/3).
    assert!((mx / n as f64 + 2.0 / 3.0).abs() < 0.1 && (my / n as f64 - 2.0 / 3.0).abs() < 0.1);
    let mix = ToySet::ThreeGaussians.mixture().unwrap();
    assert_eq!(mix.n_components(), 3);
    assert!(
        mix.variances()
            .iter()
            .flatten()
            .all(|&v| (v - 0.25).abs() < 1e-12)
    );
}

#[test]
fn draws_are_seeded_and_batch_independent() {
    for set in [
        ToySet::two_moons(),
        ToySet::swiss_roll(),
        ToySet::rings(),
        ToySet::EightGaussians,
        ToySet::ThreeGaussians,
    ] {
        let a = set.sample(100, &NoiseSource::new(9), KEY).unwrap();
        assert_eq!(
            a,
            set.sample(100, &NoiseSource::new(9), KEY).unwrap(),
            "{set:?}"
        );
        assert_ne!(
            a,
            set.sample(100, &NoiseSource::new(10), KEY).unwrap(),
            "{set:?}"
        );
        let tail = set
            .sample(40, &NoiseSource::new(9).with_sample_offset(60), KEY)
            .unwrap();
        assert_eq!(&a[120..], &tail[..], "{set:?}");
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let s = NoiseSource::new(0);
    assert!(matches!(
        toy::two_moons(3, -0.1, &s, KEY),
        Err(DataError::InvalidParameter {
            name: "noise_std",
            ..
        })
    ));
    assert!(matches!(
        toy::swiss_roll(3, 0.1, 0.0, &s, KEY),
        Err(DataError::InvalidParameter { name: "scale", .. })
    ));
    assert!(toy::rings(3, &[], 0.1, &s, KEY).is_err());
    assert!(toy::rings(3, &[f64::NAN], 0.1, &s, KEY).is_err());
}

#[test]
fn toy_dataset_batches_to_a_tensor() {
    use burn::data::dataloader::batcher::Batcher;
    use burn::data::dataset::Dataset;
    type B = burn::backend::NdArray<f32>;
    let dev = Default::default();
    let d = ToyDataset::new(&ToySet::EightGaussians, 10, &NoiseSource::new(0), KEY).unwrap();
    assert_eq!(d.len(), 10);
    let t = d.batch_tensor::<B>(&[9, 0], &dev).unwrap();
    assert_eq!(t.dims(), [2, 2]);
    let v = t.to_data().to_vec::<f32>().unwrap();
    assert_eq!(v[0], d.points[18] as f32);
    let items = vec![d.get(9).unwrap(), d.get(0).unwrap()];
    let u: burn::tensor::Tensor<B, 2> = toy::PointBatcher.batch(items, &dev);
    assert_eq!(u.to_data().to_vec::<f32>().unwrap(), v);
    assert!(d.get(10).is_none());
    assert!(d.batch_tensor::<B>(&[10], &dev).is_err());
}
