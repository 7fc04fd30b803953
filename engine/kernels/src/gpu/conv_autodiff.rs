//! The GPU convolution under autodiff (training), one operation whose forward pass and both
//! gradients run this module's kernels:
//!
//! - forward: [`super::conv2d`] (Winograd for 3×3, unfold + matmul for the others);
//! - `∂L/∂x = conv(∂L/∂y, W')`, `W'[i, o] = rot180(W[o, i])`, padded by `k − 1 − p` on each
//!   side: the same forward kernels (stride 1, no dilation);
//! - `∂L/∂W[o, (c, ky, kx)] = Σ_p ∂L/∂y[o, p] · cols[(c, ky, kx), p]`: the unfolded input times
//!   the output gradient, one matmul per chunk of input channels;
//! - `∂L/∂b[o] = Σ_p ∂L/∂y[o, p]`.
//!
//! Stride 1, no dilation, no groups, padding below the kernel's size: every convolution of FOMM,
//! its discriminators and VGG19. Other convolutions keep burn's, with burn's backward.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Cube, DispatchKindConversion, DispatchTensor};
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

use super::conv::{GemmConvOps, UNFOLD_BUDGET};

/// Whether the backward below serves a convolution of `weight` with `options`.
pub(super) fn differentiable(weight: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    let [_, _, kernel_height, kernel_width] = weight.dims();
    let [(top, bottom), (left, right)] = options.padding;
    options.stride == [1, 1]
        && options.dilation == [1, 1]
        && options.groups == 1
        && top.max(bottom) < kernel_height
        && left.max(right) < kernel_width
}

/// `conv2d(x, weight) + bias` recorded on the autodiff graph where `x` is a tracked tensor on
/// burn's CubeCL backend (either checkpointing strategy) and the convolution is
/// [`differentiable`] here; `None` otherwise.
pub(super) fn conv2d_autodiff(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if !differentiable(weight, options) {
        return None;
    }
    on_autodiff::<NoCheckpointing>(x, weight, bias, options)
        .or_else(|| on_autodiff::<BalancedCheckpointing>(x, weight, bias, options))
}

/// The tracked primitive of a tensor on `Autodiff<Cube, C>`.
type Tracked<C> = FloatTensor<Autodiff<Cube, C>>;

fn on_autodiff<C>(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>>
where
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Cube, C>>,
{
    let x = x.clone().try_into_primitive::<Autodiff<Cube, C>>().ok()?;
    let weight = weight.clone().try_into_primitive::<Autodiff<Cube, C>>().ok()?;
    let bias = match bias {
        Some(b) => Some(b.clone().try_into_primitive::<Autodiff<Cube, C>>().ok()?),
        None => None,
    };
    let y = record::<C>(options.clone(), x, weight, bias);
    Some(Tensor::from_primitive::<Autodiff<Cube, C>>(y))
}

fn cube<const D: usize>(primitive: FloatTensor<Cube>) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(primitive)
}

fn primitive<const D: usize>(tensor: Tensor<D>) -> FloatTensor<Cube> {
    tensor
        .try_into_primitive::<Cube>()
        .unwrap_or_else(|e| unreachable!("a Cube tensor computed from Cube tensors: {e:?}"))
}

/// `conv2d(x, weight) + bias` on plain Cube tensors: ours where it serves, else burn's.
fn forward(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    super::plain_conv2d(&x, &weight, bias.as_ref(), &options)
        .unwrap_or_else(|| burn::tensor::module::conv2d(x, weight, bias, options))
}

fn record<C: CheckpointStrategy>(
    options: ConvOptions<2>,
    x: Tracked<C>,
    weight: Tracked<C>,
    bias: Option<Tracked<C>>,
) -> Tracked<C> {
    let compute = |x: &Tracked<C>, weight: &Tracked<C>, bias: Option<&Tracked<C>>| {
        let bias = bias.map(|b| cube(b.primitive().clone()));
        primitive(forward(
            cube(x.primitive().clone()),
            cube(weight.primitive().clone()),
            bias,
            options.clone(),
        ))
    };
    // Without a bias the operation still has three parents (the weight's node stands in), so
    // one backward serves both; the stand-in's gradient is not registered.
    let bias_node = bias.as_ref().map_or_else(|| weight.node(), |b| b.node());
    match ConvBackward
        .prepare::<C>([x.node(), weight.node(), bias_node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let weight_state = prep.checkpoint(&weight);
            let output = compute(&x, &weight, bias.as_ref());
            prep.finish((options, x_state, weight_state, bias.is_some()), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(compute(&x, &weight, bias.as_ref())),
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Cube, 3> for ConvBackward {
    /// The options, the checkpointed input and weight, and whether there is a bias.
    type State = (ConvOptions<2>, NodeId, NodeId, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let dy = cube::<4>(grads.consume::<Cube>(&ops.node));
        let (options, x_state, weight_state, has_bias) = ops.state;
        let x = cube::<4>(checkpointer.retrieve_node_output::<FloatTensor<Cube>>(x_state));
        let weight = cube::<4>(checkpointer.retrieve_node_output::<FloatTensor<Cube>>(weight_state));

        if let Some(node) = node_x {
            grads.register::<Cube>(node.id, primitive(input_gradient(&dy, weight.clone(), &options)));
        }
        if let Some(node) = node_weight {
            grads.register::<Cube>(node.id, primitive(weight_gradient(x, &dy, weight.dims(), &options)));
        }
        if let Some(node) = node_bias.filter(|_| has_bias) {
            grads.register::<Cube>(node.id, primitive(dy.sum_dims_squeeze::<1, usize>(&[0, 2, 3])));
        }
    }
}

/// `∂L/∂x`: the output gradient convolved with the flipped, transposed filters.
fn input_gradient(dy: &Tensor<4>, weight: Tensor<4>, options: &ConvOptions<2>) -> Tensor<4> {
    let [_, _, kernel_height, kernel_width] = weight.dims();
    let [(top, bottom), (left, right)] = options.padding;
    let flipped = weight.swap_dims(0, 1).flip([2, 3]);
    let padding = [
        (kernel_height - 1 - top, kernel_height - 1 - bottom),
        (kernel_width - 1 - left, kernel_width - 1 - right),
    ];
    forward(
        dy.clone(),
        flipped,
        None,
        ConvOptions::new_with_padding([1, 1], padding, [1, 1], 1),
    )
}

/// `∂L/∂W = ∂L/∂y · colsᵀ`, in chunks of input channels whose columns fit [`UNFOLD_BUDGET`].
fn weight_gradient(x: Tensor<4>, dy: &Tensor<4>, weight_dims: [usize; 4], options: &ConvOptions<2>) -> Tensor<4> {
    let [out_channels, channels, kernel_height, kernel_width] = weight_dims;
    let [batch, _, height, width] = dy.dims();
    let pixels = batch * height * width;
    let dy = match batch {
        1 => dy.clone().reshape([out_channels, pixels]),
        _ => dy.clone().swap_dims(0, 1).reshape([out_channels, pixels]),
    };
    let taps = kernel_height * kernel_width;
    let bytes_per_channel = taps * pixels * x.dtype().size();
    let chunk = (UNFOLD_BUDGET / bytes_per_channel).clamp(1, channels);
    let x = primitive(x);
    let parts: Vec<Tensor<2>> = (0..channels)
        .step_by(chunk)
        .map(|first| {
            let last = (first + chunk).min(channels);
            let columns = cube::<2>(<Cube as GemmConvOps>::unfold_columns(
                x.clone(),
                options.clone(),
                [kernel_height, kernel_width],
                [first, last],
            ));
            dy.clone().matmul(columns.transpose())
        })
        .collect();
    Tensor::cat(parts, 1).reshape([out_channels, channels, kernel_height, kernel_width])
}
