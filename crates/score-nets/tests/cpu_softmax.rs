//! The host softmax of `cpu_ops::scaled_softmax` against burn's composed softmax (values and the
//! input's gradient, on Flex and NdArray, with and without autodiff), and run to run. The
//! kernel itself is checked against f64 and central differences in its unit tests.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use score_nets::cpu_ops::{scaled_softmax, with_reference_ops};

mod common;
use common::{assert_close, values};

/// `(n, rows, cols, scale)`: one value a row, odd sizes, the attention shape of a 4×4 level.
const CASES: &[(usize, usize, usize, f64)] = &[
    (2, 3, 1, 1.0),
    (1, 5, 7, 0.5),
    (3, 4, 33, 0.125),
    (2, 16, 16, 0.088_388_35),
];

fn scores<B: Backend>(case: usize, dev: &B::Device) -> Tensor<B, 3> {
    let (n, rows, cols, _) = CASES[case];
    // Scores up to ±8 before the scale, so the rows' maxima matter.
    let v: Vec<f32> = values(n * rows * cols, 7 + case as u32)
        .iter()
        .map(|x| 8.0 * x)
        .collect();
    Tensor::from_data(TensorData::new(v, [n, rows, cols]), dev)
}

fn check<B: Backend>(name: &str) {
    let dev = B::Device::default();
    for (case, &(n, rows, cols, scale)) in CASES.iter().enumerate() {
        let what = format!("{name} case {case} ({n}x{rows}x{cols}, scale {scale})");
        // Values without autodiff.
        let x = scores::<B>(case, &dev);
        let fast = scaled_softmax(x.clone(), scale);
        let reference = with_reference_ops(|| scaled_softmax(x, scale));
        assert_close(&what, fast.clone(), reference);
        // Rows sum to one.
        let sums: Vec<f32> = fast.sum_dim(2).into_data().to_vec().unwrap();
        assert!(
            sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
            "{what}: {sums:?}"
        );

        // Values and the input's gradient of L = Σ w ⊙ y with autodiff.
        let w: Tensor<Autodiff<B>, 3> = Tensor::from_data(
            TensorData::new(values(n * rows * cols, 99 + case as u32), [n, rows, cols]),
            &dev,
        );
        let grad = |reference: bool| {
            let x = scores::<Autodiff<B>>(case, &dev).require_grad();
            let run = || scaled_softmax(x.clone(), scale);
            let y = if reference {
                with_reference_ops(run)
            } else {
                run()
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            (y.inner(), x.grad(&grads).expect("x has a gradient"))
        };
        let (yf, gf) = grad(false);
        let (yr, gr) = grad(true);
        assert_close(&format!("{what} (autodiff)"), yf, yr);
        assert_close(&format!("{what} dx"), gf.clone(), gr);
        // Bit-identical run to run.
        let (_, again) = grad(false);
        assert_eq!(
            gf.into_data().to_vec::<f32>().unwrap(),
            again.into_data().to_vec::<f32>().unwrap(),
            "{what}: dx differs between runs"
        );
    }
}

#[test]
fn flex_matches_burns_softmax() {
    check::<Flex>("flex");
}

#[test]
fn ndarray_matches_burns_softmax() {
    check::<NdArray<f32>>("ndarray");
}

#[test]
#[should_panic(expected = "must be positive and finite")]
fn a_zero_scale_is_refused() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 2], &Default::default());
    let _ = scaled_softmax(x, 0.0);
}
