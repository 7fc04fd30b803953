//! The GPU convolution under autodiff (training), one operation ([`crate::autodiff`], written
//! once for every device) whose forward pass and both gradients run this module's kernels:
//!
//! - forward: [`super::conv2d`] (Winograd for 3×3, the direct kernel for few outputs, unfold +
//!   matmul for the others);
//! - `∂L/∂x = conv(∂L/∂y, W')`, `W'[i, o] = rot180(W[o, i])`, padded by `k − 1 − p` on each
//!   side: the same forward kernels (stride 1, no dilation);
//! - `∂L/∂W[o, (c, ky, kx)] = Σ_p ∂L/∂y[o, p] · cols[(c, ky, kx), p]`: the unfolded input times
//!   the output gradient, one matmul per chunk of input channels;
//! - `∂L/∂b[o] = Σ_p ∂L/∂y[o, p]`.
//!
//! Stride 1, no dilation, no groups, padding below the kernel's size: every convolution of FOMM,
//! its discriminators and VGG19. Other convolutions keep burn's, with burn's backward.

use burn::backend::Cube;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

use super::conv::{GemmConvOps, UNFOLD_BUDGET};
use crate::autodiff::{ConvKernels, conv_autodiff};

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
    conv_autodiff::<Cube>(options.clone(), x, weight, bias)
}

/// The GPU's kernels for the convolution's autodiff operation ([`crate::autodiff`]).
impl ConvKernels for Cube {
    type Plan = ConvOptions<2>;

    fn forward(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: &ConvOptions<2>) -> Tensor<4> {
        forward(x, weight, bias, options.clone())
    }

    fn gradients(
        x: Tensor<4>,
        weight: Tensor<4>,
        dy: &Tensor<4>,
        options: &ConvOptions<2>,
        [want_dx, want_dw]: [bool; 2],
    ) -> [Option<Tensor<4>>; 2] {
        let weight_dims = weight.dims();
        let dx = want_dx.then(|| input_gradient(dy, weight, options));
        let dw = want_dw.then(|| weight_gradient(x, dy, weight_dims, options));
        [dx, dw]
    }
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

/// `∂L/∂W = ∂L/∂y · colsᵀ`, the columns unfolded in parts that fit [`UNFOLD_BUDGET`] and the
/// device's largest buffer (llvmpipe's: 128 MiB).
fn weight_gradient(x: Tensor<4>, dy: &Tensor<4>, weight_dims: [usize; 4], options: &ConvOptions<2>) -> Tensor<4> {
    let budget = super::largest_buffer(&x.device()).map_or(UNFOLD_BUDGET, |largest| largest.min(UNFOLD_BUDGET));
    weight_gradient_unfolding_at_most(budget, x, dy, weight_dims, options)
}

/// [`weight_gradient`] unfolding at most `budget` bytes at a time: chunks of input channels
/// (one matmul each), and where one channel of the whole batch would not fit (FOMM's 7×7
/// layers at the fixture's batch of 40 needed 245 MiB), groups of images whose products are
/// summed.
pub fn weight_gradient_unfolding_at_most(
    budget: usize,
    x: Tensor<4>,
    dy: &Tensor<4>,
    weight_dims: [usize; 4],
    options: &ConvOptions<2>,
) -> Tensor<4> {
    let [out_channels, channels, kernel_height, kernel_width] = weight_dims;
    let [batch, _, height, width] = dy.dims();
    let taps = kernel_height * kernel_width;
    let bytes_per_image_channel = taps * height * width * x.dtype().size();
    let images = (budget / bytes_per_image_channel).clamp(1, batch);
    let chunk = (budget / (bytes_per_image_channel * images)).clamp(1, channels);
    let mut sum: Option<Tensor<2>> = None;
    for first_image in (0..batch).step_by(images) {
        let last_image = (first_image + images).min(batch);
        let (x, dy) = match (first_image, last_image) {
            (0, last) if last == batch => (x.clone(), dy.clone()),
            _ => (
                x.clone().narrow(0, first_image, last_image - first_image),
                dy.clone().narrow(0, first_image, last_image - first_image),
            ),
        };
        let pixels = (last_image - first_image) * height * width;
        let dy = match last_image - first_image {
            1 => dy.reshape([out_channels, pixels]),
            _ => dy.swap_dims(0, 1).reshape([out_channels, pixels]),
        };
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
        let part = Tensor::cat(parts, 1);
        sum = Some(match sum {
            Some(sum) => sum + part,
            None => part,
        });
    }
    sum.unwrap_or_else(|| unreachable!("at least one image")).reshape([
        out_channels,
        channels,
        kernel_height,
        kernel_width,
    ])
}
