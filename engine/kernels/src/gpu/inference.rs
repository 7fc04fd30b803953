//! A block's 3×3 convolution in its inference form on the GPU: the eval-mode batch norm after it
//! folded into its weights and bias (`w' = w·s`, `b' = b·s + t`), the weights transformed for
//! F(4×4, 3×3) once, and what the block computes around the convolution applied by Winograd's
//! input and output transforms as they read and write ([`super::winograd::Surroundings`]): a
//! pre-activation batch norm and ReLU, ×2 upsampling, bias, ReLU, 2×2 average pooling, a
//! residual. Three launches a block (input transform, batched matmul, output transform), where
//! the block as trained launches a weight transform, an upsampling, a pooling and element-wise
//! kernels besides; one on small maps, where a direct kernel computes the block.

use std::sync::OnceLock;

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::conv::MIN_OUTPUT_CHANNELS;
use super::direct_block_kernels::direct_block_kernel;
use super::launch_size;
use super::winograd::{Surroundings, TILE_VALUES, WinogradConvOps, block_convolution_size};
use crate::cpu::conv::is_3x3_same;
use crate::cpu::winograd::{ChannelAffine, Fused, bias_with_norm};

/// A 3×3 stride-1 padding-1 convolution with its block's surroundings, for weights on a CubeCL
/// device (see the module's comment).
#[derive(Debug)]
pub struct PreparedConv3x3 {
    /// `[o, c, 3, 3]` as the caller holds it (shared, not copied).
    weight: Tensor<4>,
    /// The output norm's scale per output channel, folded into the weights as they are
    /// transformed.
    output_scale: Option<Tensor<1>>,
    /// The bias with the output norm folded in: `b·s + t`.
    bias: Tensor<1>,
    /// The pre-activation norm's `(scale, shift)` per input channel.
    input_affine: Option<(Tensor<1>, Tensor<1>)>,
    surroundings: Surroundings,
    /// `G (w·s) Gᵀ`, `[36, o, c]`: made on first use, so a device that never runs it (a
    /// software adapter keeping burn's kernels) never holds it.
    transformed: OnceLock<Tensor<3>>,
    /// `w·s`, `[o, c, 3, 3]`, for small maps: made on first use.
    folded: OnceLock<Tensor<4>>,
}

/// Maps of at most this many pixels (8×8: four 4×4 tiles) may take the direct kernel: one
/// launch where Winograd takes three, for the few tiles there (an hourglass's deepest levels).
pub const DIRECT_MAX_PIXELS: usize = 64;

/// ... when their convolution is at most this many multiply-adds per image: the direct kernel
/// loops over its taps in each invocation, where Winograd's matmul is tiled (on llvmpipe a
/// vox-256 hourglass's 512- and 1024-channel levels took seconds directly).
pub const DIRECT_MAX_MULTIPLY_ADDS: usize = 4 << 20;

/// ... or when Winograd's transformed weights would be larger than this (a 1024 × 1024 layer's
/// are 144 MiB; WebGPU's default largest storage buffer is 128 MiB, llvmpipe's too).
pub const DIRECT_MIN_TRANSFORMED_BYTES: usize = 128 << 20;

/// A block's 3×3 convolution computed directly, with its surroundings, in one launch.
#[backend_extension(Cube, Fusion)]
pub trait DirectBlockOps: Backend {
    /// As [`WinogradConvOps::winograd_block`], by folded weights `[o, c, 3, 3]`, without a
    /// residual.
    #[allow(clippy::too_many_arguments)]
    #[fusion(dtype = x, shape = direct_block_shape(x, weight, surroundings))]
    fn direct_block(
        x: FloatTensor<Self>,
        x_tail: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        input_scale: FloatTensor<Self>,
        input_shift: FloatTensor<Self>,
        surroundings: Surroundings,
    ) -> FloatTensor<Self>;
}

fn direct_block_shape(x: &Shape, weight: &Shape, surroundings: &Surroundings) -> Shape {
    let [height, width] = block_convolution_size(x, surroundings);
    let pooled = if surroundings.pool_output { 2 } else { 1 };
    Shape::new([x[0], weight[0], height / pooled, width / pooled])
}

impl DirectBlockOps for CubeBackend {
    fn direct_block(
        x: CubeTensor,
        x_tail: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        input_scale: CubeTensor,
        input_shift: CubeTensor,
        surroundings: Surroundings,
    ) -> CubeTensor {
        let [height, width] = block_convolution_size(&x.shape(), &surroundings);
        let shape = direct_block_shape(&x.shape(), &weight.shape(), &surroundings);
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        let values = shape.num_elements();
        let output = empty_device_dtype(client.clone(), device, shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, values);
        direct_block_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            x.into_tensor_arg(),
            x_tail.into_tensor_arg(),
            input_scale.into_tensor_arg(),
            input_shift.into_tensor_arg(),
            weight.into_tensor_arg(),
            bias.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            height as u32,
            width as u32,
            surroundings.concatenated_input,
            surroundings.upsample_input,
            surroundings.input_affine,
            surroundings.relu,
            surroundings.pool_output,
            dtype_to_storage_type(dtype),
        );
        output
    }
}

impl PreparedConv3x3 {
    /// `conv`, then `output_norm`, with `fused` around them. `None` where this does not serve:
    /// weights not on a CubeCL device without autodiff, another shape than 3×3 stride-1
    /// padding-1, fewer than [`MIN_OUTPUT_CHANNELS`] outputs.
    pub fn new(conv: &Conv2d, output_norm: Option<ChannelAffine>, fused: &Fused) -> Option<Self> {
        let weight = conv.weight.val();
        let device = weight.device();
        let [out_channels, ..] = weight.dims();
        if device.is_autodiff() || !is_cube(&device) || !is_3x3_same(conv) || out_channels < MIN_OUTPUT_CHANNELS {
            return None;
        }
        let bias = bias_with_norm(conv.bias.as_ref().map(|b| b.val()), out_channels, output_norm.as_ref());
        // In the weights' precision (f16 where the model is stored so).
        let dtype = weight.dtype();
        let upload =
            |values: &[f32]| Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), (&device, dtype));
        Some(Self {
            output_scale: output_norm.as_ref().map(|norm| upload(&norm.scale)),
            bias: upload(&bias),
            input_affine: fused
                .input_affine
                .as_ref()
                .map(|affine| (upload(&affine.scale), upload(&affine.shift))),
            surroundings: Surroundings {
                concatenated_input: false,
                upsample_input: fused.upsample_input,
                input_affine: fused.input_affine.is_some(),
                bias: true,
                relu: fused.relu,
                pool_output: fused.pool_output,
                residual: false,
            },
            weight,
            transformed: OnceLock::new(),
            folded: OnceLock::new(),
        })
    }

    /// The block's output for `x` `[b, c, h, w]`, `residual` (of the output's shape) added last;
    /// `None` unless `x` is a plain tensor on the weights' device and the process's kernel
    /// choice runs ours there with Winograd ([`super::serves`], [`super::winograd`]): the block
    /// then runs as trained.
    pub fn forward(&self, x: &Tensor<4>, residual: Option<&Tensor<4>>) -> Option<Tensor<4>> {
        self.run(x, None, residual)
    }

    /// [`Self::forward`] of `head` and `tail` concatenated along channels, read in place.
    pub fn forward_concatenated(&self, head: &Tensor<4>, tail: &Tensor<4>) -> Option<Tensor<4>> {
        self.run(head, Some(tail), None)
    }

    fn run(&self, x: &Tensor<4>, tail: Option<&Tensor<4>>, residual: Option<&Tensor<4>>) -> Option<Tensor<4>> {
        let device = x.device();
        if device.is_autodiff() || device != self.weight.device() || !super::serves(&device) || !super::winograd() {
            return None;
        }
        let (scale, shift) = match &self.input_affine {
            Some((scale, shift)) => (scale, shift),
            None => (&self.bias, &self.bias),
        };
        let surroundings = Surroundings {
            concatenated_input: tail.is_some(),
            residual: residual.is_some(),
            ..self.surroundings
        };
        // Tensors the surroundings do not ask for stand in, unread.
        let primitive = |t: &Tensor<4>| t.clone().try_into_primitive::<Cube>().ok();
        let one_dimensional = |t: &Tensor<1>| t.clone().try_into_primitive::<Cube>().ok();
        let [height, width] = block_convolution_size(&x.shape(), &surroundings);
        let [out_channels, in_channels, ..] = self.weight.dims();
        let multiply_adds = height * width * out_channels * in_channels * 9;
        let transformed_bytes = TILE_VALUES * out_channels * in_channels * self.weight.dtype().size();
        let direct = residual.is_none()
            && height * width <= DIRECT_MAX_PIXELS
            && (multiply_adds <= DIRECT_MAX_MULTIPLY_ADDS || transformed_bytes > DIRECT_MIN_TRANSFORMED_BYTES);
        let y = if direct {
            let folded = self.folded.get_or_init(|| self.folded_weights());
            <Cube as DirectBlockOps>::direct_block(
                primitive(x)?,
                primitive(tail.unwrap_or(x))?,
                primitive(folded)?,
                one_dimensional(&self.bias)?,
                one_dimensional(scale)?,
                one_dimensional(shift)?,
                surroundings,
            )
        } else {
            let transformed = self.transformed.get_or_init(|| self.transform_weights());
            <Cube as WinogradConvOps>::winograd_block(
                primitive(x)?,
                primitive(tail.unwrap_or(x))?,
                transformed.clone().try_into_primitive::<Cube>().ok()?,
                one_dimensional(&self.bias)?,
                one_dimensional(scale)?,
                one_dimensional(shift)?,
                primitive(residual.unwrap_or(x))?,
                surroundings,
            )
        };
        Some(Tensor::from_primitive::<Cube>(y))
    }

    /// The weights with the output norm's scale folded in, `w·s`.
    fn folded_weights(&self) -> Tensor<4> {
        let [out_channels, ..] = self.weight.dims();
        match &self.output_scale {
            Some(scale) => self.weight.clone() * scale.clone().reshape([out_channels, 1, 1, 1]),
            None => self.weight.clone(),
        }
    }

    fn transform_weights(&self) -> Tensor<3> {
        let weight = self
            .folded_weights()
            .try_into_primitive::<Cube>()
            .unwrap_or_else(|e| unreachable!("weights checked to be on a CubeCL device: {e:?}"));
        Tensor::from_primitive::<Cube>(<Cube as WinogradConvOps>::winograd_weights(weight))
    }
}

/// Whether `device` computes with burn's CubeCL backend (wgpu and the other CubeCL runtimes).
pub fn is_cube(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::Cube(_)
    )
}
