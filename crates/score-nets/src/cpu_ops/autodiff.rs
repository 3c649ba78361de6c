//! The host convolution as an op of `Autodiff<P>` with its own backward (burn's backend-extension
//! pattern: `Backward::prepare`, then the tracked or untracked output).

use burn::backend::autodiff::{
    Autodiff, NodeId,
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use super::conv::{ConvGeom, conv2d_backward};
use super::dense::{DenseGeom, DenseSaved, dense_backward};
use super::energy::{EnergySaved, MlpGeom, energy_score_backward};
use super::host::{EnergyParams, MlpParams, Values, from_host, to_host, values};
use super::jvp::{JvpSaved, jvp_backward};
use super::norm::{NormGeom, NormStats, group_norm_backward};
use super::softmax::softmax_backward;

/// Registers a host gradient for `node`, where the node is tracked and the gradient was computed.
fn register<P: Backend, const D: usize>(
    grads: &mut Gradients,
    node: Option<NodeId>,
    grad: Option<Vec<f32>>,
    shape: [usize; D],
    dev: &P::Device,
) {
    if let (Some(node), Some(grad)) = (node, grad) {
        let t = from_host::<P, D>(grad, shape, dev);
        grads.register::<P>(node, t.into_primitive().tensor());
    }
}

/// Backward of the host convolution. Its state keeps the inner input and weight (`Arc`-shared
/// on the CPU backends, so keeping them costs no copy).
#[derive(Debug)]
struct HostConv2dBackward;

impl<P: Backend> Backward<P, 3> for HostConv2dBackward {
    type State = (ConvGeom, P::FloatTensorPrimitive, P::FloatTensorPrimitive);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<P>(&ops.node);
        let (g, x, w) = ops.state;
        let x = Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(x));
        let w = Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(w));
        let dy = Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(dy));
        let dev = x.device();
        let (xs, ws) = (x.dims(), w.dims());
        let out = conv2d_backward(
            &g,
            &values(x),
            &values(w),
            &values(dy),
            node_x.is_some(),
            node_w.is_some(),
            node_b.is_some(),
        );
        register::<P, 4>(grads, node_x.map(|n| n.id), out.x, xs, &dev);
        register::<P, 4>(grads, node_w.map(|n| n.id), out.weight, ws, &dev);
        register::<P, 1>(grads, node_b.map(|n| n.id), out.bias, [g.co], &dev);
    }
}

/// `conv2d(x, w) + b` on `Autodiff<P>`, computed on the host, with the host backward.
pub(super) fn conv2d<P: Backend>(
    g: ConvGeom,
    x: Tensor<Autodiff<P>, 4>,
    w: Tensor<Autodiff<P>, 4>,
    b: Tensor<Autodiff<P>, 1>,
) -> Tensor<Autodiff<P>, 4> {
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let b = b.into_primitive().tensor();
    let forward = |x, w, b| {
        let wrap4 = |t| Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(t));
        let b = Tensor::<P, 1>::from_primitive(TensorPrimitive::Float(b));
        super::host::conv2d::<P>(g, wrap4(x), wrap4(w), Some(b))
            .into_primitive()
            .tensor()
    };
    let out = match HostConv2dBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(x.primitive.clone(), w.primitive.clone(), b.primitive);
            prep.finish((g, x.primitive, w.primitive), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive, w.primitive, b.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Backward of [`cat_channels`]: hands each input its channels of `dy` as a contiguous tensor of
/// its own. burn's `cat` backward hands out strided views of `dy` instead, and adding such a view
/// to a gradient already registered for the same tensor (the U-Net's skip tensors also feed a
/// convolution) runs element by element in Flex.
#[derive(Debug)]
struct CatChannelsBackward;

impl<P: Backend> Backward<P, 2> for CatChannelsBackward {
    /// `[n, channels of a, channels of b, h, w]`.
    type State = [usize; 5];

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let dy = grads.consume::<P>(&ops.node);
        let [n, ca, cb, h, w] = ops.state;
        let dy = Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(dy));
        let dev = dy.device();
        let dy = values(dy);
        let (a_len, b_len) = (ca * h * w, cb * h * w);
        let part = |offset: usize, len: usize| {
            let mut out = Vec::with_capacity(n * len);
            for sample in dy.chunks_exact(a_len + b_len) {
                out.extend_from_slice(&sample[offset..offset + len]);
            }
            out
        };
        let da = node_a.as_ref().map(|_| part(0, a_len));
        let db = node_b.as_ref().map(|_| part(a_len, b_len));
        register::<P, 4>(grads, node_a.map(|n| n.id), da, [n, ca, h, w], &dev);
        register::<P, 4>(grads, node_b.map(|n| n.id), db, [n, cb, h, w], &dev);
    }
}

/// `cat([a, b], 1)` of two NCHW tensors on `Autodiff<P>`: burn's `cat` on `P`, with
/// [`CatChannelsBackward`].
pub(super) fn cat_channels<P: Backend>(
    a: Tensor<Autodiff<P>, 4>,
    b: Tensor<Autodiff<P>, 4>,
) -> Tensor<Autodiff<P>, 4> {
    let [n, ca, h, w] = a.dims();
    let cb = b.dims()[1];
    let a = a.into_primitive().tensor();
    let b = b.into_primitive().tensor();
    let forward = |a, b| {
        let wrap = |t| Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(t));
        Tensor::cat(vec![wrap(a), wrap(b)], 1)
            .into_primitive()
            .tensor()
    };
    let out = match CatChannelsBackward
        .prepare::<NoCheckpointing>([a.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish([n, ca, cb, h, w], forward(a.primitive, b.primitive)),
        OpsKind::UnTracked(prep) => prep.finish(forward(a.primitive, b.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Backward of the fused GroupNorm. Its state keeps the inner input, shift, γ and β and the
/// forward's statistics.
#[derive(Debug)]
struct HostGroupNormBackward;

type NormState<P> = (
    NormGeom,
    [<P as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive; 4],
    NormStats,
);

impl<P: Backend> Backward<P, 4> for HostGroupNormBackward {
    type State = NormState<P>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_s, node_g, node_b] = ops.parents;
        let dy = grads.consume::<P>(&ops.node);
        let (g, [x, s, gamma, beta], stats) = ops.state;
        let x = Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(x));
        let s = Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(s));
        let gamma = Tensor::<P, 1>::from_primitive(TensorPrimitive::Float(gamma));
        let beta = Tensor::<P, 1>::from_primitive(TensorPrimitive::Float(beta));
        let dy = Tensor::<P, 4>::from_primitive(TensorPrimitive::Float(dy));
        let dev = x.device();
        let xs = x.dims();
        let out = group_norm_backward(
            &g,
            &values(x),
            &values(s),
            &values(gamma),
            &values(beta),
            &stats,
            &values(dy),
            [
                node_x.is_some(),
                node_s.is_some(),
                node_g.is_some(),
                node_b.is_some(),
            ],
        );
        register::<P, 4>(grads, node_x.map(|n| n.id), out.x, xs, &dev);
        register::<P, 2>(grads, node_s.map(|n| n.id), out.shift, [g.n, g.c], &dev);
        register::<P, 1>(grads, node_g.map(|n| n.id), out.gamma, [g.c], &dev);
        register::<P, 1>(grads, node_b.map(|n| n.id), out.beta, [g.c], &dev);
    }
}

/// The fused GroupNorm on `Autodiff<P>`, computed on the host, with the host backward.
pub(super) fn group_norm<P: Backend>(
    g: NormGeom,
    x: Tensor<Autodiff<P>, 4>,
    shift: Tensor<Autodiff<P>, 2>,
    gamma: Tensor<Autodiff<P>, 1>,
    beta: Tensor<Autodiff<P>, 1>,
) -> Tensor<Autodiff<P>, 4> {
    let x = x.into_primitive().tensor();
    let s = shift.into_primitive().tensor();
    let gm = gamma.into_primitive().tensor();
    let bt = beta.into_primitive().tensor();
    let forward = |x, s, gm, bt| {
        let (y, stats) = super::host::group_norm::<P>(
            g,
            Tensor::from_primitive(TensorPrimitive::Float(x)),
            Tensor::from_primitive(TensorPrimitive::Float(s)),
            Tensor::from_primitive(TensorPrimitive::Float(gm)),
            Tensor::from_primitive(TensorPrimitive::Float(bt)),
        );
        (y.into_primitive().tensor(), stats)
    };
    let parents = [
        x.node.clone(),
        s.node.clone(),
        gm.node.clone(),
        bt.node.clone(),
    ];
    let out = match HostGroupNormBackward
        .prepare::<NoCheckpointing>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, stats) = forward(
                x.primitive.clone(),
                s.primitive.clone(),
                gm.primitive.clone(),
                bt.primitive.clone(),
            );
            let saved = [x.primitive, s.primitive, gm.primitive, bt.primitive];
            prep.finish((g, saved, stats), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.primitive, s.primitive, gm.primitive, bt.primitive).0)
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Backward of the host dense layer. Its state keeps the inner input and weight and the
/// pre-activation.
#[derive(Debug)]
struct HostDenseBackward;

impl<P: Backend> Backward<P, 3> for HostDenseBackward {
    type State = (
        DenseGeom,
        P::FloatTensorPrimitive,
        P::FloatTensorPrimitive,
        DenseSaved,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<P>(&ops.node);
        let (g, x, w, saved) = ops.state;
        let x = Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(x));
        let w = Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(w));
        let dy = Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(dy));
        let dev = x.device();
        let need = [node_x.is_some(), node_w.is_some(), node_b.is_some()];
        let dy = to_host(dy);
        let out = dense_backward(&g, &values(x), &values(w), &saved, dy, need);
        register::<P, 2>(grads, node_x.map(|n| n.id), out.x, [g.n, g.k], &dev);
        register::<P, 2>(grads, node_w.map(|n| n.id), out.weight, [g.k, g.m], &dev);
        register::<P, 1>(grads, node_b.map(|n| n.id), out.bias, [g.m], &dev);
    }
}

/// `act(x·W + b)` on `Autodiff<P>`, computed on the host, with the host backward.
pub(super) fn dense<P: Backend>(
    g: DenseGeom,
    x: Tensor<Autodiff<P>, 2>,
    w: Tensor<Autodiff<P>, 2>,
    b: Tensor<Autodiff<P>, 1>,
) -> Tensor<Autodiff<P>, 2> {
    let x = x.into_primitive().tensor();
    let w = w.into_primitive().tensor();
    let b = b.into_primitive().tensor();
    let forward = |x, w, b, save| {
        let wrap2 = |t| Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(t));
        let b = Tensor::<P, 1>::from_primitive(TensorPrimitive::Float(b));
        let (y, saved) = super::host::dense::<P>(g, wrap2(x), wrap2(w), Some(b), save);
        (y.into_primitive().tensor(), saved)
    };
    let out = match HostDenseBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, saved) = forward(x.primitive.clone(), w.primitive.clone(), b.primitive, true);
            prep.finish((g, x.primitive, w.primitive, saved), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.primitive, w.primitive, b.primitive, false).0)
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Backward of the host energy-MLP score, over `N = 2L + 2` parents: `x`, then `Wₖ, bₖ` per
/// hidden layer, then the output weight. Its state keeps the inner input and hidden weights
/// and the forward's saved sweeps.
#[derive(Debug)]
struct HostEnergyScoreBackward<const N: usize>;

impl<P: Backend, const N: usize> Backward<P, N> for HostEnergyScoreBackward<N> {
    type State = (
        MlpGeom,
        P::FloatTensorPrimitive,
        Vec<P::FloatTensorPrimitive>,
        EnergySaved,
    );

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let v = grads.consume::<P>(&ops.node);
        let (g, x, ws, saved) = ops.state;
        let parents = ops.parents;
        let x = Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(x));
        let v = Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(v));
        let dev = x.device();
        let ws: Vec<Values> = ws
            .into_iter()
            .map(|w| values(Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(w))))
            .collect();
        let wr: Vec<&[f32]> = ws.iter().map(|v| &**v).collect();
        let v = to_host(v);
        let out = energy_score_backward(&g, &values(x), &wr, &saved, &v, parents[0].is_some());
        let id = |i: usize| parents[i].as_ref().map(|n| n.id);
        register::<P, 2>(grads, id(0), out.x, [g.n, g.d], &dev);
        let layers = g.widths.len();
        for (k, (dw, db)) in out.weights.into_iter().zip(out.biases).enumerate() {
            let shape = [g.fan_in(k), g.widths[k]];
            register::<P, 2>(grads, id(1 + 2 * k), Some(dw), shape, &dev);
            register::<P, 1>(grads, id(2 + 2 * k), Some(db), [g.widths[k]], &dev);
        }
        let shape = [g.widths[layers - 1], 1];
        register::<P, 2>(grads, id(1 + 2 * layers), Some(out.w_out), shape, &dev);
    }
}

/// The parameters of an energy MLP on `Autodiff<P>`.
pub(super) struct TrackedEnergyParams<P: Backend> {
    pub(super) weights: Vec<Tensor<Autodiff<P>, 2>>,
    pub(super) biases: Vec<Tensor<Autodiff<P>, 1>>,
    pub(super) w_out: Tensor<Autodiff<P>, 2>,
}

/// `−∇x E(x)` of an energy MLP on `Autodiff<P>`, computed on the host, with the host backward
/// (first order in the parameters and `x`: what a loss on the score needs). `N` must be
/// `2·layers + 2`.
pub(super) fn energy_score<P: Backend, const N: usize>(
    g: MlpGeom,
    x: Tensor<Autodiff<P>, 2>,
    params: TrackedEnergyParams<P>,
) -> Tensor<Autodiff<P>, 2> {
    assert_eq!(N, 2 * g.widths.len() + 2, "energy score parents");
    let x = x.into_primitive().tensor();
    let ws: Vec<_> = params
        .weights
        .into_iter()
        .map(|w| w.into_primitive().tensor())
        .collect();
    let bs: Vec<_> = params
        .biases
        .into_iter()
        .map(|b| b.into_primitive().tensor())
        .collect();
    let wo = params.w_out.into_primitive().tensor();
    let mut nodes = vec![x.node.clone()];
    for (w, b) in ws.iter().zip(&bs) {
        nodes.push(w.node.clone());
        nodes.push(b.node.clone());
    }
    nodes.push(wo.node.clone());
    let parents: [_; N] = nodes.try_into().expect("2·layers + 2 parents");
    let inner =
        |t: P::FloatTensorPrimitive| Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(t));
    let inner_params = |save_ws: bool| {
        let weights: Vec<Tensor<P, 2>> = ws.iter().map(|w| inner(w.primitive.clone())).collect();
        let biases = bs
            .iter()
            .map(|b| Tensor::<P, 1>::from_primitive(TensorPrimitive::Float(b.primitive.clone())))
            .collect();
        let kept = save_ws.then(|| ws.iter().map(|w| w.primitive.clone()).collect::<Vec<_>>());
        (
            EnergyParams {
                weights,
                biases,
                w_out: inner(wo.primitive.clone()),
            },
            kept,
        )
    };
    let out = match HostEnergyScoreBackward::<N>
        .prepare::<NoCheckpointing>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (p, kept) = inner_params(true);
            let (s, saved) =
                super::host::energy_score::<P>(&g, inner(x.primitive.clone()), p, true);
            let kept = kept.expect("weights kept");
            prep.finish((g, x.primitive, kept, saved), s.into_primitive().tensor())
        }
        OpsKind::UnTracked(prep) => {
            let (p, _) = inner_params(false);
            let (s, _) = super::host::energy_score::<P>(&g, inner(x.primitive), p, false);
            prep.finish(s.into_primitive().tensor())
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Backward of the host MLP output and Jacobian quadratic form, over `N = 2L + 3` parents: the
/// input, `Wₖ, bₖ` per hidden layer, then the output layer's weight and bias. Its state keeps
/// the inner input, the tangent, the weights and the forward's saved sweeps.
#[derive(Debug)]
struct HostJvpBackward<const N: usize>;

type JvpState<P> = (
    MlpGeom,
    <P as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive,
    Vec<f32>,
    Vec<<P as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive>,
    JvpSaved,
);

impl<P: Backend, const N: usize> Backward<P, N> for HostJvpBackward<N> {
    type State = JvpState<P>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out_grad = grads.consume::<P>(&ops.node);
        let (g, h0, v, ws, saved) = ops.state;
        let parents = ops.parents;
        let wrap = |t| Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(t));
        let h0 = wrap(h0);
        let dev = h0.device();
        // Hidden weights, then the output weight.
        let ws: Vec<Values> = ws.into_iter().map(|w| values(wrap(w))).collect();
        let (hidden, w_out) = ws.split_at(ws.len() - 1);
        let wr: Vec<&[f32]> = hidden.iter().map(|v| &**v).collect();
        // [ȳ | q̄] row by row.
        let xc = g.x_cols;
        let both = to_host(wrap(out_grad));
        let mut y_bar = Vec::with_capacity(g.n * xc);
        let mut q_bar = Vec::with_capacity(g.n);
        for row in both.chunks_exact(xc + 1) {
            y_bar.extend_from_slice(&row[..xc]);
            q_bar.push(row[xc]);
        }
        let out = jvp_backward(
            &g,
            &values(h0),
            &v,
            &wr,
            &w_out[0],
            &saved,
            &y_bar,
            &q_bar,
            parents[0].is_some(),
        );
        let id = |i: usize| parents[i].as_ref().map(|n| n.id);
        register::<P, 2>(grads, id(0), out.input, [g.n, g.d], &dev);
        let layers = g.widths.len();
        for (k, (dw, db)) in out.weights.into_iter().zip(out.biases).enumerate() {
            let shape = [g.fan_in(k), g.widths[k]];
            register::<P, 2>(grads, id(1 + 2 * k), Some(dw), shape, &dev);
            register::<P, 1>(grads, id(2 + 2 * k), Some(db), [g.widths[k]], &dev);
        }
        let shape = [g.widths[layers - 1], xc];
        register::<P, 2>(grads, id(1 + 2 * layers), Some(out.w_out), shape, &dev);
        register::<P, 1>(grads, id(2 + 2 * layers), Some(out.b_out), [xc], &dev);
    }
}

/// The parameters of an MLP with an output layer on `Autodiff<P>`.
pub(super) struct TrackedMlpParams<P: Backend> {
    pub(super) weights: Vec<Tensor<Autodiff<P>, 2>>,
    pub(super) biases: Vec<Tensor<Autodiff<P>, 1>>,
    pub(super) w_out: Tensor<Autodiff<P>, 2>,
    pub(super) b_out: Tensor<Autodiff<P>, 1>,
}

/// `[y | q]` of [`super::jvp`] on `Autodiff<P>`, computed on the host, with the host backward
/// (first order in the parameters and the input; `v` is a constant). `N` must be
/// `2·layers + 3`.
pub(super) fn output_and_quadratic_form<P: Backend, const N: usize>(
    g: MlpGeom,
    h0: Tensor<Autodiff<P>, 2>,
    v: Vec<f32>,
    params: TrackedMlpParams<P>,
) -> Tensor<Autodiff<P>, 2> {
    assert_eq!(N, 2 * g.widths.len() + 3, "MLP quadratic form parents");
    let h0 = h0.into_primitive().tensor();
    let prim2 = |t: Tensor<Autodiff<P>, 2>| t.into_primitive().tensor();
    let prim1 = |t: Tensor<Autodiff<P>, 1>| t.into_primitive().tensor();
    let ws: Vec<_> = params.weights.into_iter().map(prim2).collect();
    let bs: Vec<_> = params.biases.into_iter().map(prim1).collect();
    let (wo, bo) = (prim2(params.w_out), prim1(params.b_out));
    let mut nodes = vec![h0.node.clone()];
    for (w, b) in ws.iter().zip(&bs) {
        nodes.push(w.node.clone());
        nodes.push(b.node.clone());
    }
    nodes.push(wo.node.clone());
    nodes.push(bo.node.clone());
    let parents: [_; N] = nodes.try_into().expect("2·layers + 3 parents");
    let wrap2 =
        |t: P::FloatTensorPrimitive| Tensor::<P, 2>::from_primitive(TensorPrimitive::Float(t));
    let wrap1 =
        |t: P::FloatTensorPrimitive| Tensor::<P, 1>::from_primitive(TensorPrimitive::Float(t));
    let inner = MlpParams {
        weights: ws.iter().map(|w| wrap2(w.primitive.clone())).collect(),
        biases: bs.iter().map(|b| wrap1(b.primitive.clone())).collect(),
        w_out: wrap2(wo.primitive.clone()),
        b_out: wrap1(bo.primitive.clone()),
    };
    let out = match HostJvpBackward::<N>
        .prepare::<NoCheckpointing>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, saved) = super::host::output_and_quadratic_form::<P>(
                &g,
                wrap2(h0.primitive.clone()),
                &v,
                inner,
                true,
            );
            let mut kept: Vec<_> = ws.iter().map(|w| w.primitive.clone()).collect();
            kept.push(wo.primitive.clone());
            prep.finish(
                (g, h0.primitive, v, kept, saved),
                y.into_primitive().tensor(),
            )
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = super::host::output_and_quadratic_form::<P>(
                &g,
                wrap2(h0.primitive),
                &v,
                inner,
                false,
            );
            prep.finish(y.into_primitive().tensor())
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Backward of the host softmax. Its state keeps the output (the backward needs only `y`) and
/// the scale.
#[derive(Debug)]
struct HostSoftmaxBackward;

impl<P: Backend> Backward<P, 1> for HostSoftmaxBackward {
    type State = (P::FloatTensorPrimitive, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<P>(&ops.node);
        let Some(node_x) = node_x else { return };
        let (y, scale) = ops.state;
        let y = Tensor::<P, 3>::from_primitive(TensorPrimitive::Float(y));
        let dy = Tensor::<P, 3>::from_primitive(TensorPrimitive::Float(dy));
        let (dev, shape) = (y.device(), y.dims());
        let dx = softmax_backward(&values(y), &values(dy), shape[2], scale);
        register::<P, 3>(grads, Some(node_x.id), Some(dx), shape, &dev);
    }
}

/// `softmax(scale · x)` over the last axis on `Autodiff<P>`, computed on the host, with the host
/// backward.
pub(super) fn softmax<P: Backend>(x: Tensor<Autodiff<P>, 3>, scale: f32) -> Tensor<Autodiff<P>, 3> {
    let x = x.into_primitive().tensor();
    let forward = |x| {
        super::host::softmax::<P>(Tensor::from_primitive(TensorPrimitive::Float(x)), scale)
            .into_primitive()
            .tensor()
    };
    let out = match HostSoftmaxBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let y = forward(x.primitive);
            prep.finish((y.clone(), scale), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
