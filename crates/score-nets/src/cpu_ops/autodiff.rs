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
use super::host::{from_host, to_host, with_values};
use super::norm::{NormGeom, NormStats, group_norm_backward};

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
            &to_host(x),
            &to_host(w),
            &to_host(dy),
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
            &to_host(x),
            &to_host(s),
            &to_host(gamma),
            &to_host(beta),
            &stats,
            &to_host(dy),
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
        let out = with_values(x, |x| {
            with_values(w, |w| dense_backward(&g, x, w, &saved, dy, need))
        });
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
