//! Convolutions of few outputs in one launch: the networks' 7×7 heads (keypoints and Jacobians,
//! mask and occlusion), the generator's first 7×7 layer and its output with the sigmoid, the
//! anti-aliased downsampling's depthwise Gaussian.
//!
//! `y[b, o, y', x'] = σ(bias[o] + Σ_{c ∈ group(o)} Σ_{ky, kx} w[o, c, ky, kx] · x[b, c, y'·s + ky − p, x'·s + kx − p])`
//!
//! Why: unfold + matmul writes `kh·kw` columns per input value (49 for a 7×7 head) for a matmul
//! of so few rows that most of its tile is wasted, and adds the bias in a launch of its own;
//! burn's direct kernel copies the weights and the input into its layout at every call and its
//! output back (the generator's output took five launches with its sigmoid). Here one
//! invocation per output pixel and block of output channels reads the input in place — an
//! hourglass's output and its skip as their concatenation, never built — and applies the bias
//! and the sigmoid as it writes: one launch.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::direct_conv_kernels::direct_conv_kernel;
use super::launch_size;

/// Convolutions of at most this many output channels run here (FOMM's heads: 50 and 12; its
/// image layers: 3 and 64), loops of `c·kh·kw` taps per output value; wider ones go to the
/// matmul, whose tiles reuse each input value across many outputs.
pub const DIRECT_MAX_OUTPUT_CHANNELS: usize = 64;

/// Output channels one invocation computes (of one group), reading each input value once for
/// them: FOMM's image output 3, its heads' 50 and 12 in blocks of 4.
const OUTPUTS_PER_INVOCATION: usize = 4;

/// What runs on the sum after the bias.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    Identity,
    /// `1 / (1 + e^(−x))`: the generator's output.
    Sigmoid,
}

/// The geometry and the epilogue of a direct convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectConvShape {
    pub stride: [usize; 2],
    /// Zero padding `(before, after)` of each axis.
    pub padding: [(usize, usize); 2],
    pub groups: usize,
    /// The input is `x` then `x_tail` along channels, read in place.
    pub concatenated_input: bool,
    pub bias: bool,
    pub activation: Activation,
}

/// The direct convolution as a backend operation (lazy, in order, under fusion).
#[backend_extension(Cube, Fusion)]
pub trait DirectConvOps: Backend {
    /// `activation(conv2d(x ‖ x_tail, weight) + bias)`; `x_tail` and `bias` are read only where
    /// `shape` asks for them (pass any tensor otherwise).
    #[fusion(dtype = x, shape = direct_conv_output_shape(x, weight, shape))]
    fn direct_conv(
        x: FloatTensor<Self>,
        x_tail: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        shape: DirectConvShape,
    ) -> FloatTensor<Self>;
}

fn direct_conv_output_shape(x: &Shape, weight: &Shape, shape: &DirectConvShape) -> Shape {
    let size: [usize; 2] = std::array::from_fn(|axis| {
        let (before, after) = shape.padding[axis];
        (x[2 + axis] + before + after).saturating_sub(weight[2 + axis]) / shape.stride[axis] + 1
    });
    Shape::new([x[0], weight[0], size[0], size[1]])
}

impl DirectConvOps for CubeBackend {
    fn direct_conv(
        x: CubeTensor,
        x_tail: CubeTensor,
        weight: CubeTensor,
        bias: CubeTensor,
        shape: DirectConvShape,
    ) -> CubeTensor {
        let output_shape = direct_conv_output_shape(&x.shape(), &weight.shape(), &shape);
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        // Each invocation computes a block of a group's outputs at one pixel, reading each input
        // value once for the block.
        let group_outputs = output_shape[1] / shape.groups;
        let block = group_outputs.min(OUTPUTS_PER_INVOCATION);
        let invocations = output_shape.num_elements() / group_outputs * group_outputs.div_ceil(block);
        let output = empty_device_dtype(client.clone(), device, output_shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, invocations);
        direct_conv_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            x.into_tensor_arg(),
            x_tail.into_tensor_arg(),
            weight.into_tensor_arg(),
            bias.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            shape.stride[0] as u32,
            shape.stride[1] as u32,
            shape.padding[0].0 as u32,
            shape.padding[1].0 as u32,
            shape.groups as u32,
            block,
            shape.concatenated_input,
            shape.bias,
            shape.activation == Activation::Sigmoid,
            dtype_to_storage_type(dtype),
        );
        output
    }
}

/// `activation(conv2d(x ‖ tail, weight) + bias)` (`‖`: concatenation along channels, read in
/// place) in one launch, where `x` (and `tail`) are plain tensors on a CubeCL device, the
/// weights have at most [`DIRECT_MAX_OUTPUT_CHANNELS`] outputs and no dilation; `None`
/// otherwise. Whether the process's kernel choice runs ours is the caller's to ask
/// ([`super::serves`]).
pub fn conv2d_direct(
    x: &Tensor<4>,
    tail: Option<&Tensor<4>>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
    activation: Activation,
) -> Option<Tensor<4>> {
    let device = x.device();
    let [out_channels, group_channels, ..] = weight.dims();
    let channels = x.dims()[1] + tail.map_or(0, |tail| tail.dims()[1]);
    let fits = weight.device() == device
        && out_channels <= DIRECT_MAX_OUTPUT_CHANNELS
        && options.dilation == [1, 1]
        && options.groups > 0
        && out_channels.is_multiple_of(options.groups)
        && group_channels * options.groups == channels
        && tail.is_none_or(|tail| {
            tail.device() == device && tail.dims()[0] == x.dims()[0] && tail.dims()[2..] == x.dims()[2..]
        });
    if !fits || device.is_autodiff() || !super::is_cube(&device) {
        return None;
    }
    let primitive = |t: &Tensor<4>| t.clone().try_into_primitive::<Cube>().ok();
    let shape = DirectConvShape {
        stride: options.stride,
        padding: options.padding,
        groups: options.groups,
        concatenated_input: tail.is_some(),
        bias: bias.is_some(),
        activation,
    };
    // Tensors the shape does not ask for stand in, unread.
    let bias = match bias {
        Some(bias) => bias.clone().try_into_primitive::<Cube>().ok()?,
        None => primitive(weight)?,
    };
    let y = <Cube as DirectConvOps>::direct_conv(
        primitive(x)?,
        primitive(tail.unwrap_or(x))?,
        primitive(weight)?,
        bias,
        shape,
    );
    Some(Tensor::from_primitive::<Cube>(y))
}
