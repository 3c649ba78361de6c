//! The host convolution as an op of `Autodiff<P>` with its own backward (burn's backend-extension
//! pattern: `Backward::prepare`, then the tracked or untracked output).

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

use super::conv::{ConvGeom, conv2d_backward};
use super::host::{from_host, to_host};

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
        if let (Some(node), Some(dx)) = (node_x, out.x) {
            grads.register::<P>(
                node.id,
                from_host::<P, 4>(dx, xs, &dev).into_primitive().tensor(),
            );
        }
        if let (Some(node), Some(dw)) = (node_w, out.weight) {
            grads.register::<P>(
                node.id,
                from_host::<P, 4>(dw, ws, &dev).into_primitive().tensor(),
            );
        }
        if let (Some(node), Some(db)) = (node_b, out.bias) {
            grads.register::<P>(
                node.id,
                from_host::<P, 1>(db, [g.co], &dev)
                    .into_primitive()
                    .tensor(),
            );
        }
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
