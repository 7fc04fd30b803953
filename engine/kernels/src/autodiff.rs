//! The convolution as one autodiff operation, written once for every device in the form of
//! burn's custom-kernel example (`examples/custom-cubecl-kernel/src/backward.rs`): a device
//! supplies its kernels ([`ConvKernels`]: the output, the input and the weight gradients, and
//! where it has one a faster bias gradient than burn's sum), and [`conv_autodiff`] records the
//! operation and runs its backward step with them.
//!
//! The CPU's kernels (`cpu::conv`, on flex) and the GPU's (`gpu::conv_autodiff`, on CubeCL)
//! plug in here; a further device is one more `impl ConvKernels`, no network changes.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DispatchKindConversion, DispatchTensor};
use burn::tensor::Tensor;

/// A device's kernels for the convolution's three products. Tensors are plain (no autodiff)
/// on the device.
pub(crate) trait ConvKernels: Backend {
    /// Which of the device's kernels a convolution takes (and their geometry): chosen when the
    /// operation is recorded, kept for its backward step.
    type Plan: Clone + Send + Sync + Debug + 'static;

    /// `conv(x, weight) + bias`.
    fn forward(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, plan: &Self::Plan) -> Tensor<4>;

    /// `[∂L/∂x, ∂L/∂W]` from `dy = ∂L/∂y`, each only where `wanted` (the same order).
    fn gradients(
        x: Tensor<4>,
        weight: Tensor<4>,
        dy: &Tensor<4>,
        plan: &Self::Plan,
        wanted: [bool; 2],
    ) -> [Option<Tensor<4>>; 2];

    /// `∂L/∂b = Σ ∂L/∂y` per output channel: burn's sum unless the device has its own.
    fn bias_gradient(dy: &Tensor<4>) -> Tensor<1> {
        summed_per_channel(dy)
    }
}

/// `Σ ∂L/∂y` per channel by burn's sum, on any device.
pub(crate) fn summed_per_channel(dy: &Tensor<4>) -> Tensor<1> {
    dy.clone().sum_dims_squeeze::<1, usize>(&[0, 2, 3])
}

/// `conv(x, weight) + bias` by `B`'s kernels, recorded with its backward step, where the
/// tensors are tracked on `Autodiff<B>` (either checkpointing strategy); `None` otherwise.
pub(crate) fn conv_autodiff<B: ConvKernels>(
    plan: B::Plan,
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<B>
        + DispatchKindConversion<Autodiff<B, NoCheckpointing>>
        + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>,
{
    on_autodiff::<B, NoCheckpointing>(&plan, x, weight, bias)
        .or_else(|| on_autodiff::<B, BalancedCheckpointing>(&plan, x, weight, bias))
}

/// A tensor's tracked primitive on `Autodiff<B, C>`.
type Tracked<B, C> = FloatTensor<Autodiff<B, C>>;

fn on_autodiff<B: ConvKernels, C: CheckpointStrategy>(
    plan: &B::Plan,
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
) -> Option<Tensor<4>>
where
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<B, C>>().ok()?;
    let weight = weight.clone().try_into_primitive::<Autodiff<B, C>>().ok()?;
    let bias = match bias {
        Some(b) => Some(b.clone().try_into_primitive::<Autodiff<B, C>>().ok()?),
        None => None,
    };
    let y = record::<B, C>(plan.clone(), x, weight, bias);
    Some(Tensor::from_primitive::<Autodiff<B, C>>(y))
}

/// A plain primitive of `B` as a tensor.
fn plain<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<D>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    Tensor::from_primitive::<B>(primitive)
}

/// The plain primitive of a tensor computed on `B` from `B`'s tensors.
fn primitive<B: Backend, const D: usize>(tensor: Tensor<D>) -> FloatTensor<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    tensor
        .try_into_primitive::<B>()
        .unwrap_or_else(|e| unreachable!("computed on the device from its own tensors: {e:?}"))
}

/// Records the operation on the autodiff graph and computes its output.
fn record<B: ConvKernels, C: CheckpointStrategy>(
    plan: B::Plan,
    x: Tracked<B, C>,
    weight: Tracked<B, C>,
    bias: Option<Tracked<B, C>>,
) -> Tracked<B, C>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let compute = |x: &Tracked<B, C>, weight: &Tracked<B, C>, bias: Option<&Tracked<B, C>>| {
        let bias = bias.map(|b| plain::<B, 1>(b.primitive().clone()));
        let (x, weight) = (
            plain::<B, 4>(x.primitive().clone()),
            plain::<B, 4>(weight.primitive().clone()),
        );
        primitive::<B, 4>(B::forward(x, weight, bias, &plan))
    };
    // Without a bias the operation still has three parents (the weight's node stands in), so
    // one backward step serves both; the stand-in's gradient is not registered.
    let bias_node = bias.as_ref().map_or_else(|| weight.node(), |b| b.node());
    match ConvBackward::<B>(PhantomData)
        .prepare::<C>([x.node(), weight.node(), bias_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let weight_state = prep.checkpoint(&weight);
            let output = compute(&x, &weight, bias.as_ref());
            prep.finish((plan, x_state, weight_state, bias.is_some()), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(compute(&x, &weight, bias.as_ref())),
    }
}

/// The backward step: the device's input and weight gradients, a sum for the bias.
struct ConvBackward<B>(PhantomData<fn() -> B>);

impl<B> Debug for ConvBackward<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConvBackward")
    }
}

impl<B: ConvKernels> Backward<B, 3> for ConvBackward<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// The plan, the checkpointed input and weight, and whether there is a bias.
    type State = (B::Plan, NodeId, NodeId, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let dy = plain::<B, 4>(grads.consume::<B>(&ops.node));
        let (plan, x_state, weight_state, has_bias) = ops.state;
        let x = plain::<B, 4>(checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state));
        let weight = plain::<B, 4>(checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state));
        let wanted = [node_x.is_some(), node_weight.is_some()];
        let [dx, dw] = B::gradients(x, weight, &dy, &plan, wanted);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, primitive(dx));
        }
        if let (Some(node), Some(dw)) = (node_weight, dw) {
            grads.register::<B>(node.id, primitive(dw));
        }
        if let Some(node) = node_bias.filter(|_| has_bias) {
            grads.register::<B>(node.id, primitive(B::bias_gradient(&dy)));
        }
    }
}
