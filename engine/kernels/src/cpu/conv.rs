//! The training step's convolutions on the CPU, each one autodiff operation whose forward pass,
//! input gradient and weight gradient run the inference form's kernels: this module is flex's
//! [`ConvKernels`], and the operation and its backward step are recorded by the crate's
//! device-independent `autodiff` module through burn's extension API. The model code calls
//! [`convolve`] on any device: on a GPU it takes the kernels crate's convolution
//! (`prioritycut_kernels::conv2d`, the same recording under autodiff), on flex these kernels,
//! elsewhere burn's convolution.
//!
//! - 3×3, stride 1, padding 1 (the blocks and VGG19): Winograd F(4×4, 3×3) ([`FusedConv3x3`]).
//!   The input gradient is itself such a convolution: `∂L/∂x = conv(∂L/∂y, W')` with
//!   `W'[i, o] = rot180(W[o, i])`. The weight gradient `∂L/∂W[o, i] = Σ ∂L/∂y[o] ⋆ x[i]` is
//!   computed by the same F(4×4, 3×3) ([`weight_gradient`]).
//! - 5×5 and 7×7, stride 1 (the generator's `first` and `final`, the 7×7 heads): the direct
//!   kernel ([`DirectConv`]) for the output and for `∂L/∂x` (the same flipped filters, padded by
//!   `k − 1 − p`), [`direct_weight_gradient`] for `∂L/∂W`.
//!
//! The bias gradient is the sum of `∂L/∂y` per channel.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use std::sync::Arc;

use super::batch_norm::sum as block_sum;
use super::buffer::zeroed;
use super::direct_conv::{DirectConv, WEIGHT_GRADIENT_KERNELS, weight_gradient as direct_weight_gradient};
use super::flex::{FlexPrimitive, FlexUnaryOp, dims4, on_flex, primitive, values};
use super::layout::{channels_last, stored_channels_last, to_nchw};
use super::winograd::{Fused, FusedConv3x3, Nhwc, patch_input_gradient, patch_weight_gradient, weight_gradient};
use crate::autodiff::{ConvKernels, conv_autodiff, summed_per_channel};
use crate::gpu::{self, Activation};

/// Maps smaller than this (pixels per image) do not take Winograd: there the weights' transform
/// and its weight gradient's 36·C_in·C_out values, made at every call as the weights change every
/// step, cost what they save. From 32² on Winograd wins however many the channels (forward +
/// backward, 512 → 512, batch 1, under mimalloc, 2-core Intel Xeon family 6 model 207: 74–82 ms
/// against burn's 122–137 ms at 32², 162–175 against 462 at 64²). Under it (the hourglasses'
/// lower half) [`Kernel::Patches`] serves.
const MIN_PIXELS: usize = 32 * 32;

/// The kernels an operation runs: which fast path, and its padding.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kernel {
    Winograd,
    /// A 3×3 convolution on a map under 32²: forward and input gradient each one GEMM of the
    /// map's 3×3 patches by the weights as they are ([`FusedConv3x3::forward_patches`]), the
    /// weight gradient one GEMM of the output gradient by the patches. burn's convolution, which
    /// served here before, re-lays out the weights (9.4M values for a 1024 → 1024 layer) in a
    /// loop on the calling thread at every call while the pool waits. Forward + backward of the
    /// twelve such layers of vox-256's hourglasses (16², 8², 4²): 298 ms against burn's 442
    /// (1.05–2.29× per layer; `cargo bench --bench small_map_convolutions`, 2-core Zen 4). Both
    /// are as far from an f64 convolution (~5e-7 of the largest value, forward and both
    /// gradients).
    Patches,
    Direct {
        padding: usize,
    },
}

/// `conv.forward(x)`, by a fast path where one applies: the kernels crate's GPU convolution for
/// plain tensors on a hardware GPU, the CPU kernels below for tensors on flex with autodiff.
pub fn convolve(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if let Some(y) = on_gpu(conv, &x) {
        return y;
    }
    if let Some(y) = direct_on_plain_flex(conv, &x) {
        return y;
    }
    let kernel = if is_3x3_same(conv) {
        Some(if h * w >= MIN_PIXELS {
            Kernel::Winograd
        } else {
            Kernel::Patches
        })
    } else {
        direct_padding(conv).map(|padding| Kernel::Direct { padding })
    };
    let Some(kernel) = kernel else {
        return conv.forward(x);
    };
    let (weight, bias) = (conv.weight.val(), conv.bias.as_ref().map(|b| b.val()));
    conv_autodiff::<Flex>(kernel, &x, &weight, bias.as_ref()).unwrap_or_else(|| conv.forward(x))
}

/// `conv.forward(head ‖ tail)`, `‖` the concatenation along channels (an hourglass's output and
/// its skip, a head's input): on a GPU read in place by the direct kernel where it serves,
/// else [`convolve`] of the concatenation.
pub fn convolve_concatenated(conv: &Conv2d, head: Tensor<4>, tail: Tensor<4>) -> Tensor<4> {
    direct_on_gpu(conv, &head, Some(&tail), Activation::Identity)
        .unwrap_or_else(|| convolve(conv, crate::cat_channels(vec![head, tail])))
}

/// `sigmoid(conv.forward(x))` (the generator's output): on a GPU in one launch by the direct
/// kernel where it serves, else [`convolve`] then burn's sigmoid.
pub fn convolve_sigmoid(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    direct_on_gpu(conv, &x, None, Activation::Sigmoid).unwrap_or_else(|| sigmoid(convolve(conv, x)))
}

/// `activation(conv.forward(x ‖ tail))` by the GPU's direct kernel, where the process's kernel
/// choice runs ours on the weights' device and the kernel takes the convolution.
fn direct_on_gpu(conv: &Conv2d, x: &Tensor<4>, tail: Option<&Tensor<4>>, activation: Activation) -> Option<Tensor<4>> {
    let bias = conv.bias.as_ref().map(|b| b.val());
    if !gpu::serves(&conv.weight.device()) {
        return None;
    }
    gpu::conv2d_direct(
        x,
        tail,
        &conv.weight.val(),
        bias.as_ref(),
        &conv_options(conv)?,
        activation,
    )
}

/// `conv.forward(x)` by the kernels crate's GPU convolution, where it serves `x`'s device.
fn on_gpu(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let bias = conv.bias.as_ref().map(|b| b.val());
    crate::conv2d(x, &conv.weight.val(), bias.as_ref(), &conv_options(conv)?)
}

/// `conv`'s geometry as burn's convolution options; `None` for `Same` padding, which depends on
/// the input's size (no network here asks for it).
fn conv_options(conv: &Conv2d) -> Option<ConvOptions<2>> {
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => return None,
    };
    Some(ConvOptions::new_with_padding(
        conv.stride,
        [(top, bottom), (left, right)],
        conv.dilation,
        conv.groups,
    ))
}

/// `conv.forward(x)` for a tensor on flex without autodiff, by the direct kernel where it serves
/// the shape (the 7×7 heads). Its weights are laid out at each call: microseconds for a head.
fn direct_on_plain_flex(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let padding = direct_padding(conv)?;
    let input = x.clone().try_into_primitive::<Flex>().ok()?;
    let kernel = DirectConv::new(conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), padding);
    Some(direct_forward(&kernel, &input))
}

/// The direct kernel on a flex tensor of logical shape `[b, C_in, h, w]`, read in place whether
/// it is stored planar or channels-last; the output is planar (what burn's operations after a
/// head take).
pub(crate) fn direct_forward(kernel: &DirectConv, x: &FlexPrimitive) -> Tensor<4> {
    let device = Device::flex();
    let [batch, channels, height, width] = dims4(x);
    match stored_channels_last(x) {
        Some(stored) => kernel.forward(&Nhwc::borrowed(stored, [batch, height, width, channels]), &device),
        None => kernel.forward_nchw(&values(x), [batch, channels, height, width], &device),
    }
}

/// The CPU's kernels for the convolution's autodiff operation ([`crate::autodiff`]).
impl ConvKernels for Flex {
    type Plan = Kernel;

    fn forward(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, kernel: &Kernel) -> Tensor<4> {
        match *kernel {
            Kernel::Winograd | Kernel::Patches => {
                let device: Device = x.device();
                let conv = FusedConv3x3::new(weight, bias, None, Fused::default());
                to_nchw(&forward_by(&conv, &Nhwc::from_tensor(x), kernel), &device)
            }
            Kernel::Direct { padding } => direct_forward(&DirectConv::new(weight, bias, padding), &primitive(x)),
        }
    }

    fn gradients(
        x: Tensor<4>,
        weight: Tensor<4>,
        dy: &Tensor<4>,
        kernel: &Kernel,
        [want_dx, want_dw]: [bool; 2],
    ) -> [Option<Tensor<4>>; 2] {
        let device = Device::flex();
        match *kernel {
            Kernel::Winograd | Kernel::Patches => {
                let dy_nhwc = Nhwc::from_tensor(dy.clone());
                let dx = want_dx.then(|| {
                    let dx = match *kernel {
                        Kernel::Patches => patch_input_gradient(&weight, &dy_nhwc, &device),
                        _ => input_gradient_conv(weight).forward(&dy_nhwc, None),
                    };
                    to_nchw(&dx, &device)
                });
                let dw = want_dw.then(|| {
                    let x = Nhwc::from_tensor(x);
                    match *kernel {
                        Kernel::Patches => patch_weight_gradient(&x, &dy_nhwc, &device),
                        _ => weight_gradient(&x, &dy_nhwc, &device),
                    }
                });
                [dx, dw]
            }
            Kernel::Direct { padding } => {
                let [cout, _, k, _] = weight.dims();
                let (x_dims, dy_dims) = (x.dims(), dy.dims());
                let dy_primitive = primitive(dy.clone());
                let dy_values = values(&dy_primitive);
                let dx = want_dx.then(|| {
                    let flipped = weight.swap_dims(0, 1).flip([2, 3]);
                    DirectConv::new(flipped, None, k - 1 - padding).forward_nchw(&dy_values, dy_dims, &device)
                });
                let dw = want_dw.then(|| {
                    let values = direct_weight_gradient(&values(&primitive(x)), x_dims, &dy_values, cout, k, padding);
                    Tensor::from_data(TensorData::new(values, [cout, x_dims[1], k, k]), &device)
                });
                [dx, dw]
            }
        }
    }

    /// A parallel sum per channel, read in the storage `dy` has (flex's reduction over three
    /// axes runs on one core).
    fn bias_gradient(dy: &Tensor<4>) -> Tensor<1> {
        let [_, channels, _, _] = dy.dims();
        let dy_primitive = primitive(dy.clone());
        let sums = match (stored_channels_last(&dy_primitive), dy_primitive.as_slice::<f32>()) {
            (_, Some(planar)) => planar_channel_sums(planar, dy.dims()),
            (Some(pixels), None) => pixel_channel_sums(pixels, channels),
            (None, None) => return summed_per_channel(dy),
        };
        let sums: Vec<f32> = sums.into_iter().map(|s| s as f32).collect();
        Tensor::from_data(TensorData::new(sums, [channels]), &Device::flex())
    }
}

/// `relu(conv(x))` for a 3×3 convolution whose weights are not trained (the perceptual loss's
/// VGG19, which follows every convolution by a ReLU): its Winograd weights, and the flipped ones
/// of its input gradient, are transformed once, so it takes the fast path on every map size
/// ([`FusedConv3x3`] itself turns to one patch GEMM on small maps). Its outputs are stored
/// channels-last ([`super::layout`]), so a network of them copies no layouts between its layers. The ReLU is applied in the
/// output transform, and its mask to the gradient before the input gradient's convolution.
#[derive(Debug, Clone)]
pub struct FrozenConv3x3Relu {
    forward: Arc<FusedConv3x3>,
    input_gradient: Arc<FusedConv3x3>,
}

impl FrozenConv3x3Relu {
    /// `None` for a convolution that is not 3×3, stride 1, padding 1, or whose weights are trained.
    pub fn new(conv: &Conv2d) -> Option<Self> {
        if !is_3x3_same(conv) || conv.weight.val().is_require_grad() {
            return None;
        }
        let weight = conv.weight.val().inner();
        let bias = conv.bias.as_ref().map(|b| b.val().inner());
        let with_relu = Fused {
            relu: true,
            ..Fused::default()
        };
        Some(Self {
            input_gradient: Arc::new(input_gradient_conv(weight.clone())),
            forward: Arc::new(FusedConv3x3::new(weight, bias, None, with_relu)),
        })
    }

    /// `relu(conv.forward(x))`, `[b, C_in, h, w]` → `[b, C_out, h, w]` stored channels-last, on
    /// flex (with autodiff or without); `None` elsewhere.
    pub fn forward(&self, x: &Tensor<4>) -> Option<Tensor<4>> {
        on_flex(self, x)
    }

    /// The output's values.
    fn compute(&self, x: &FlexPrimitive) -> FlexPrimitive {
        let y = self.forward.forward(&channels_last(x), None);
        primitive(y.into_tensor(&Device::flex()))
    }
}

impl FlexUnaryOp for FrozenConv3x3Relu {
    fn record<C: CheckpointStrategy>(&self, x: FloatTensor<Autodiff<Flex, C>>) -> FloatTensor<Autodiff<Flex, C>> {
        let output = self.compute(x.primitive());
        match FrozenConv3x3ReluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = FrozenGradient {
                    input_gradient: self.input_gradient.clone(),
                    output: output.clone(),
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn plain(&self, x: FlexPrimitive) -> FlexPrimitive {
        self.compute(&x)
    }
}

/// The input gradient's convolution and the output (for the ReLU's mask), kept by the graph
/// until the backward pass.
#[derive(Clone)]
struct FrozenGradient {
    input_gradient: Arc<FusedConv3x3>,
    output: FlexPrimitive,
}

impl std::fmt::Debug for FrozenGradient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrozenGradient")
    }
}

/// The backward step of a frozen convolution + ReLU: only `∂L/∂x`, from `∂L/∂y · [y > 0]`.
#[derive(Debug)]
struct FrozenConv3x3ReluBackward;

impl Backward<Flex, 1> for FrozenConv3x3ReluBackward {
    type State = FrozenGradient;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let (dy, y) = (channels_last(&grad), channels_last(&ops.state.output));
        let mut masked = zeroed(dy.data.len());
        masked
            .par_chunks_mut(1 << 14)
            .zip(dy.data.par_chunks(1 << 14).zip(y.data.par_chunks(1 << 14)))
            .for_each(|(out, (dy, y))| {
                for (o, (&d, &v)) in out.iter_mut().zip(dy.iter().zip(y)) {
                    *o = if v > 0.0 { d } else { 0.0 };
                }
            });
        let masked = Nhwc::owned(masked, [dy.batch, dy.height, dy.width, dy.channels]);
        let dx = ops
            .state
            .input_gradient
            .forward(&masked, None)
            .into_tensor(&Device::flex());
        grads.register::<Flex>(node.id, primitive(dx));
    }
}

/// Σ per channel of NCHW values: a channel per task, its planes summed as the batch norm sums.
fn planar_channel_sums(values: &[f32], [batch, channels, h, w]: [usize; 4]) -> Vec<f64> {
    let pixels = h * w;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            (0..batch)
                .map(|b| block_sum(&values[(b * channels + c) * pixels..][..pixels]))
                .sum()
        })
        .collect()
}

/// Σ per channel of channels-last values: partial sums per block of pixels, added up in f64.
fn pixel_channel_sums(values: &[f32], channels: usize) -> Vec<f64> {
    if channels == 0 {
        return Vec::new();
    }
    values
        .par_chunks(channels * 256)
        .map(|block| {
            let mut partial = vec![0.0f32; channels];
            for pixel in block.chunks_exact(channels) {
                partial.iter_mut().zip(pixel).for_each(|(s, &v)| *s += v);
            }
            partial
        })
        .fold(
            || vec![0.0f64; channels],
            |mut total, partial| {
                total.iter_mut().zip(partial).for_each(|(t, p)| *t += f64::from(p));
                total
            },
        )
        .reduce(
            || vec![0.0f64; channels],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

pub(crate) fn is_3x3_same(conv: &Conv2d) -> bool {
    conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(
            conv.padding,
            PaddingConfig2d::Explicit(1, 1, 1, 1) | PaddingConfig2d::Same
        )
}

/// The padding of a convolution the direct kernel takes: square, odd, 5×5 or 7×7, stride 1,
/// no dilation or groups, the same zero padding on every side.
pub(crate) fn direct_padding(conv: &Conv2d) -> Option<usize> {
    let [k, kw] = conv.kernel_size;
    let square = k == kw && WEIGHT_GRADIENT_KERNELS.contains(&k);
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if square && plain && top == left && left == bottom && bottom == right && top < k =>
        {
            Some(top)
        }
        PaddingConfig2d::Valid if square && plain => Some(0),
        _ => None,
    }
}

/// `conv` of a channels-last map by `kernel`'s path: Winograd, or one GEMM of the 3×3 patches.
fn forward_by(conv: &FusedConv3x3, x: &Nhwc<'_>, kernel: &Kernel) -> Nhwc<'static> {
    match kernel {
        Kernel::Patches => conv.forward_patches(x, None),
        _ => conv.forward(x, None),
    }
}

/// The convolution that gives `∂L/∂x` from `∂L/∂y`: by `W'[i, o] = rot180(W[o, i])`.
fn input_gradient_conv(weight: Tensor<4>) -> FusedConv3x3 {
    FusedConv3x3::input_gradient_of(weight)
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    use super::*;
    use crate::test_support::{SeededDraws, assert_close, largest_difference};

    /// Output and all three gradients of the fast path against burn's convolution, through a
    /// loss that weighs every output differently.
    #[test]
    fn forward_and_gradients_match_burns_convolution() {
        let device = Device::flex().autodiff();
        // (batch, C_in, C_out, h, w, kernel, padding, bias): Winograd's 3×3 shapes, then the
        // direct kernel's (the generator's `first` and `final`, the keypoint and mask heads).
        for (batch, cin, cout, h, w, k, pad, with_bias) in [
            (1, 3, 8, 32, 32, 3, 1, true),
            (2, 16, 24, 36, 40, 3, 1, true),
            (1, 64, 64, 33, 35, 3, 1, false),
            (2, 128, 3, 48, 50, 3, 1, true),
            (1, 256, 16, 64, 64, 3, 1, true),
            // Maps under 32×32: their 3×3 patches.
            (1, 128, 64, 16, 16, 3, 1, false),
            (1, 32, 48, 20, 24, 3, 1, true),
            (1, 128, 64, 12, 12, 3, 1, true),
            (2, 64, 32, 8, 8, 3, 1, false),
            (1, 96, 80, 5, 7, 3, 1, true),
            (2, 16, 8, 3, 2, 3, 1, true),
            (1, 3, 64, 40, 37, 7, 3, false),
            (2, 64, 3, 33, 30, 7, 3, true),
            (1, 35, 10, 20, 21, 7, 0, true),
            (1, 108, 11, 16, 16, 7, 3, true),
            (2, 92, 11, 16, 16, 7, 3, true),
            (2, 6, 5, 12, 13, 5, 2, false),
        ] {
            let config = Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(with_bias);
            let conv = config.init(&device);
            let (out_h, out_w) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
            let x = Tensor::<4>::random([batch, cin, h, w], Distribution::Uniform(-1.0, 1.0), &device);
            let weighting = Tensor::<4>::random([batch, cout, out_h, out_w], Distribution::Uniform(-1.0, 1.0), &device);
            let run = |fast: bool| {
                let x = Tensor::from_data(x.to_data(), &device).require_grad();
                let conv = Conv2d {
                    weight: Param::from_tensor(Tensor::from_data(conv.weight.val().to_data(), &device)),
                    bias: conv
                        .bias
                        .as_ref()
                        .map(|b| Param::from_tensor(Tensor::from_data(b.val().to_data(), &device))),
                    ..conv.clone()
                };
                let y = if fast {
                    convolve(&conv, x.clone())
                } else {
                    conv.forward(x.clone())
                };
                let grads = (y.clone() * weighting.clone()).sum().backward();
                let dx = x.grad(&grads).expect("dx");
                let dw = conv.weight.val().grad(&grads).expect("dw");
                let db = conv.bias.as_ref().map(|b| b.val().grad(&grads).expect("db"));
                (y.inner(), dx, dw, db)
            };
            let (y_fast, dx_fast, dw_fast, db_fast) = run(true);
            let (y_ref, dx_ref, dw_ref, db_ref) = run(false);
            let shape = format!("{batch}×{cin}→{cout} {k}×{k} at {h}×{w}");
            // Both kernels sum in another order: equal to the last bit would mean it did not run.
            let (rounding, _) = largest_difference(y_fast.clone(), y_ref.clone());
            assert!(rounding > 0.0, "{shape}: the fast path did not run");
            assert_close(&format!("output {shape}"), y_fast, y_ref, 6e-5);
            assert_close(&format!("input gradient {shape}"), dx_fast, dx_ref, 6e-5);
            assert_close(&format!("weight gradient {shape}"), dw_fast, dw_ref, 6e-5);
            if let (Some(fast), Some(reference)) = (db_fast, db_ref) {
                assert_close(&format!("bias gradient {shape}"), fast, reference, 6e-5);
            }
        }
    }

    /// The bias gradient's per-channel sums, of planar and of channels-last storage, as burn's.
    #[test]
    fn bias_gradient_sums_either_storage_as_burn() {
        let device = Device::flex();
        let mut draws = SeededDraws::new(3);
        let planar = draws.normal([2, 5, 7, 300], 0.0, 1.0, &device);
        let expected = planar.clone().sum_dims_squeeze::<1, usize>(&[0, 2, 3]);
        let stored_last = Nhwc::from_tensor(planar.clone()).into_tensor(&device);
        assert!(stored_channels_last(&primitive(stored_last.clone())).is_some());
        assert_close(
            "planar",
            <Flex as ConvKernels>::bias_gradient(&planar),
            expected.clone(),
            1e-5,
        );
        assert_close(
            "channels-last",
            <Flex as ConvKernels>::bias_gradient(&stored_last),
            expected,
            1e-5,
        );
    }

    /// A frozen convolution + ReLU (VGG19's): output and input gradient as burn's, on large
    /// maps (Winograd) and small ones (the patch GEMM), and only for weights that are not trained.
    /// The data are seeded and kept off the ReLU's edge: an output within rounding of 0 (the two
    /// convolutions differ by ~1e-6) may be on for one and off for the other, and the input
    /// gradient then differs there by a whole weight (a cold CI run failed so, 0.029 of 1.46).
    #[test]
    fn a_frozen_convolution_matches_burns_and_refuses_trained_weights() {
        let device = Device::flex().autodiff();
        let mut draws = SeededDraws::new(23);
        for (cin, cout, size) in [(8, 16, 40), (64, 32, 6)] {
            let mut trained = Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let bound = 1.0 / ((cin * 9) as f64).sqrt();
            trained.weight = Param::from_tensor(draws.uniform([cout, cin, 3, 3], -bound, bound, &device));
            trained.bias = Some(Param::from_tensor(draws.uniform([cout], -bound, bound, &device)));
            assert!(
                FrozenConv3x3Relu::new(&trained).is_none(),
                "trained weights are not frozen"
            );
            let conv = trained.no_grad();
            let frozen = FrozenConv3x3Relu::new(&conv).expect("frozen");
            let x = draws.uniform([2, cin, size, size], -1.0, 1.0, &device);
            let weighting = draws.uniform([2, cout, size, size], -1.0, 1.0, &device);
            let edge: f32 = conv.forward(x.clone()).abs().min().into_scalar();
            assert!(
                edge > 2e-5,
                "an output sits on the ReLU's edge ({edge}): draw another seed"
            );
            let run = |fast: bool| {
                let x = Tensor::<4>::from_data(x.to_data(), &device).require_grad();
                let y = if fast {
                    frozen.forward(&x).expect("on flex")
                } else {
                    burn::tensor::activation::relu(conv.forward(x.clone()))
                };
                let grads = (y.clone() * weighting.clone()).sum().backward();
                (y.inner(), x.grad(&grads).expect("dx"))
            };
            let ((y_fast, dx_fast), (y_ref, dx_ref)) = (run(true), run(false));
            let shape = format!("{cin}→{cout} at {size}²");
            assert_close(&format!("output {shape}"), y_fast, y_ref, 6e-5);
            assert_close(&format!("input gradient {shape}"), dx_fast, dx_ref, 6e-5);
        }
    }

    /// Off flex with autodiff, or for other shapes, it is burn's convolution.
    #[test]
    fn other_devices_and_shapes_take_burns_convolution() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([4, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([1, 4, 32, 32], Distribution::Uniform(-1.0, 1.0), &device);
        let (difference, _) = largest_difference(convolve(&conv, x.clone()), conv.forward(x));
        assert_eq!(difference, 0.0);
        let autodiff = device.autodiff();
        let strided = Conv2dConfig::new([4, 4], [3, 3]).with_stride([2, 2]).init(&autodiff);
        let x = Tensor::<4>::random([1, 4, 32, 32], Distribution::Uniform(-1.0, 1.0), &autodiff);
        let (difference, _) = largest_difference(convolve(&strided, x.clone()).inner(), strided.forward(x).inner());
        assert_eq!(difference, 0.0);
    }
}
