//! Gradients survive concurrent `backward()` calls on other threads.
//!
//! burn-autodiff 0.21 keeps every autodiff graph of the process in one global locator, and each
//! `backward()` ends with a sweep over all of them that frees steps no live tensor refers to. Its
//! `cat` let go of its inputs before the copy and registered its own step only after it, so a
//! sweep from another thread during that copy could free an input's step: a parameter that had
//! already been through one `backward()` (as every trained parameter has) then came back with no
//! gradient at all (tracel-ai/burn#5573). `host_second_order` failed in CI with that symptom
//! ("a gradient on one side only"), and data-parallel training on threads
//! (`DataParallel::threads`) runs exactly such concurrent passes.
//!
//! Two defences, one test each: the workspace builds a patched burn-autodiff
//! (`vendor/burn-autodiff`, see `vendor/README.md`), checked here through burn's own `cat`; and
//! every concatenation in the library goes through `score_core::tensor::cat`, which holds its
//! inputs until the cat returns, so that crates using the published burn-autodiff are safe too,
//! checked here through a `TimeMlp`'s whole forward pass.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use score_sde::score_nets::{TimeMlp, TimeMlpConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type A = Autodiff<Flex>;

/// Threads that run the rounds under test.
const WORKERS: usize = 2;
/// Threads that do nothing but tiny `backward()` calls, each ending in a sweep of every graph.
const SWEEPERS: usize = 2;
/// Rounds per worker. On the published burn-autodiff 0.21.0, 66 to 220 of the 300 cat rounds
/// lost the gradient in each of 10 runs, and with plain `Tensor::cat` inside `TimeMlp`, 20 to 67
/// of the 300 model rounds in each of 5 (idle two-core machine). Patched and guarded: none lost
/// in 15 runs, 5 of them with both cores busy beside the test. Under a second a run.
const ROUNDS: usize = 150;
/// Side of the parameter: the cat copies 2·N² floats, and the wider that copy, the wider the
/// window the bug needs.
const N: usize = 256;

fn parameter(seed: usize) -> Tensor<A, 2> {
    let values: Vec<f32> = (0..N * N)
        .map(|i| ((i * 31 + seed * 17) % 97) as f32 / 97.0 - 0.5)
        .collect();
    Tensor::<A, 2>::from_data(TensorData::new(values, [N, N]), &Default::default()).require_grad()
}

/// One round on burn's own `cat`: the parameter goes through a throwaway `backward()` first
/// (which removes it from the graph locator, as a training step's backward does), then through
/// sin/cos and a cat; it must come back with its gradient, and the right one.
fn cat_round(seed: usize) -> Result<(), String> {
    let w = parameter(seed);
    let _ = w.clone().sum().backward();
    let loss = Tensor::cat(vec![w.clone().sin(), w.clone().cos()], 1).sum();
    let grads = loss.backward();
    let Some(g) = w.grad(&grads) else {
        return Err(format!(
            "round with seed {seed}: the parameter has no gradient"
        ));
    };
    // d/dw Σ(sin w + cos w) = cos w − sin w.
    let w = w.inner();
    let want = w.clone().cos() - w.sin();
    let diff = (g - want).abs().max().into_scalar();
    if diff > 1e-5 {
        return Err(format!("round with seed {seed}: gradient off by {diff}"));
    }
    Ok(())
}

/// Runs `round(k, r)` for `r < ROUNDS` on each of `WORKERS` threads while `SWEEPERS` threads
/// call `backward()` on tiny graphs of their own, and fails with every round that went wrong.
fn under_concurrent_backward(round: fn(usize, usize) -> Result<(), String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sweepers: Vec<_> = (0..SWEEPERS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let dev = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    let x = Tensor::<A, 1>::ones([4], &dev).require_grad();
                    let _ = (x.clone() * x).sum().backward();
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|k| {
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|r| round(k, r))
                    .filter_map(Result::err)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker panicked"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for s in sweepers {
        s.join().expect("sweeper panicked");
    }
    assert!(
        failures.is_empty(),
        "{} of {} rounds went wrong; first: {}",
        failures.len(),
        WORKERS * ROUNDS,
        failures[0]
    );
}

#[test]
fn burns_cat_keeps_gradients_beside_concurrent_backward_passes() {
    under_concurrent_backward(|k, r| cat_round(k * ROUNDS + r));
}

/// Every parameter's gradient, in visiting order (`None` where it has none).
type Grads = Vec<Option<Vec<f32>>>;

/// A worker's network, its inputs and the gradients it gave before any thread started.
struct Case {
    model: TimeMlp<A>,
    x: Tensor<A, 2>,
    t: Tensor<A, 1>,
    want: Grads,
}

/// The parameter gradients of `mean(model(x, t)²)`.
fn param_grads(model: &TimeMlp<A>, x: &Tensor<A, 2>, t: &Tensor<A, 1>) -> Grads {
    struct Collect<'a>(&'a <A as AutodiffBackend>::Gradients, Grads);
    impl ModuleVisitor<A> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<A, D>>) {
            let g = p
                .grad(self.0)
                .map(|g| g.into_data().to_vec::<f32>().unwrap());
            self.1.push(g);
        }
    }
    let grads = model
        .forward(x.clone(), t.clone())
        .powi_scalar(2)
        .mean()
        .backward();
    let mut c = Collect(&grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// A `TimeMlp` (time embedding, `[x | emb(t)]` concatenation, dense layers) per worker: each
/// round's parameter gradients against the same model's gradients computed before any thread
/// started. Same inputs, same parameters, same kernels, so they agree to f32 rounding.
fn model_round(k: usize, _r: usize) -> Result<(), String> {
    thread_local! {
        static MODEL: Case = {
            let dev = Default::default();
            let model = TimeMlpConfig::new(2)
                .with_hidden_size(64)
                .with_seed(7)
                .init::<A>(&dev)
                .unwrap();
            let x = Tensor::<A, 2>::from_data(
                TensorData::new((0..128).map(|i| (i as f32 * 0.37).sin()).collect(), [64, 2]),
                &dev,
            );
            let t = Tensor::<A, 1>::from_data(
                TensorData::new((0..64).map(|i| 0.01 + i as f32 / 64.0).collect(), [64]),
                &dev,
            );
            let want = param_grads(&model, &x, &t);
            Case { model, x, t, want }
        };
    }
    MODEL.with(|Case { model, x, t, want }| {
        let got = param_grads(model, x, t);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            match (g, w) {
                (Some(g), Some(w)) => {
                    let diff = g
                        .iter()
                        .zip(w)
                        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                    let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    if diff > 1e-5 * (1.0 + scale) {
                        return Err(format!("worker {k}: parameter {i} off by {diff}"));
                    }
                }
                (None, None) => {}
                _ => return Err(format!("worker {k}: parameter {i} lost its gradient")),
            }
        }
        Ok(())
    })
}

#[test]
fn time_mlp_gradients_survive_concurrent_backward_passes() {
    under_concurrent_backward(model_round);
}
