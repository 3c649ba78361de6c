//! Adam's update of one parameter as one pass over host `f32` slices, in place: the same
//! arithmetic, in the same order and precision, as burn-optim 0.21's `Adam` (moments, bias
//! correction folded into one factor, `ε` scaled by `√(1 − β₂ᵗ)`), so the results are
//! bit-identical to it. burn runs the same update as ~12 tensor ops per parameter, each a pass
//! over memory and an allocation.

use super::vmath;

/// Adam's constants: `β₁`, `β₂` and `ε` (burn's `AdamConfig` defaults are 0.9, 0.999, 1e-5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConsts {
    /// Decay of the first moment.
    pub beta_1: f32,
    /// Decay of the second moment.
    pub beta_2: f32,
    /// Added to `√v̂`.
    pub epsilon: f32,
}

/// One Adam step of `param` with gradient `grad` at step `time` (1 for the first step, whose
/// moments start from the gradient alone), updating `param`, `m` and `v` in place.
///
/// For `time == 1` the incoming moments are ignored (burn's state is absent then).
pub fn adam_step(
    c: &AdamConsts,
    lr: f32,
    time: usize,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    assert!(
        param.len() == grad.len() && m.len() == grad.len() && v.len() == grad.len(),
        "Adam: parameter, gradient and moments of one length"
    );
    assert!(time >= 1, "Adam: steps count from 1");
    let time_i = i32::try_from(time).unwrap_or(i32::MAX);
    let bias_correction2_sqrt = (1.0 - c.beta_2.powi(time_i)).sqrt();
    let combined = bias_correction2_sqrt / (1.0 - c.beta_1.powi(time_i));
    let eps = c.epsilon * bias_correction2_sqrt;
    let (f1, f2) = (1.0 - c.beta_1, 1.0 - c.beta_2);
    let (b1, b2) = (c.beta_1, c.beta_2);
    let first = time == 1;
    // A `move` closure over plain values: captured by reference, the constants were re-read
    // from memory every element (they might alias the slices written), which kept the loop
    // scalar.
    vmath::with_simd(move || {
        for (((p, &g), m), v) in param
            .iter_mut()
            .zip(grad)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            // burn: m·β₁ + g·(1 − β₁) and v·β₂ + g²·(1 − β₂); the first step g·(1 − β₁), g²·(1 − β₂).
            let (nm, nv) = if first {
                (g * f1, (g * g) * f2)
            } else {
                (*m * b1 + g * f1, *v * b2 + (g * g) * f2)
            };
            *m = nm;
            *v = nv;
            // burn: (m·c) / (√v + ε·√(1 − β₂ᵗ)), then param − update·lr.
            let update = (nm * combined) / (nv.sqrt() + eps);
            *p -= update * lr;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update written out in f64: the oracle for the formula (the bit-for-bit check against
    /// burn's own `Adam` is in `score-train`, which builds the optimiser).
    #[test]
    fn three_steps_follow_the_adam_formula() {
        let c = AdamConsts {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
        };
        let grads = [[0.5f32, -2.0, 1e-3], [0.4, -1.0, 0.0], [-0.3, 3.0, 1e-4]];
        let mut p = vec![1.0f32, -1.0, 0.25];
        let (mut m, mut v) = (vec![7.0f32; 3], vec![7.0f32; 3]);
        let mut pd = [1.0f64, -1.0, 0.25];
        let (mut md, mut vd) = ([0.0f64; 3], [0.0f64; 3]);
        for (t, g) in grads.iter().enumerate() {
            let t = t + 1;
            adam_step(&c, 1e-2, t, &mut p, g, &mut m, &mut v);
            for i in 0..3 {
                let gi = g[i] as f64;
                md[i] = 0.9 * md[i] + 0.1 * gi;
                vd[i] = 0.999 * vd[i] + 0.001 * gi * gi;
                let mhat = md[i] / (1.0 - 0.9f64.powi(t as i32));
                let vhat = vd[i] / (1.0 - 0.999f64.powi(t as i32));
                pd[i] -= 1e-2 * mhat / (vhat.sqrt() + 1e-5);
                // f32 against f64: a few ulp of the moments and of a step of size ~1e-2.
                assert!((p[i] as f64 - pd[i]).abs() < 1e-6, "step {t} param {i}");
                assert!((m[i] as f64 - md[i]).abs() < 1e-6 * (1.0 + md[i].abs()));
                assert!((v[i] as f64 - vd[i]).abs() < 1e-6 * (1.0 + vd[i].abs()));
            }
        }
    }
}
