//! 3×3 stride-1 convolution on the GPU by Winograd's minimal filtering F(4×4, 3×3) (Lavin &
//! Gray, 2016), the algorithm the CPU runs too: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for every 6×6
//! input tile `d` and its 4×4 output tile.
//!
//! Why: a FOMM frame is ~95% 3×3 convolutions; F(4×4, 3×3) multiplies 36 times per channel pair
//! and 4×4 outputs instead of 144, and the 36 element-wise products summed over input channels
//! are one batched matmul `M[ξ] = U[ξ] · V[ξ]` (burn's autotuned matmul, batch 36). The
//! transformed input is 2.25× the input (the unfolded one of [`super::conv`] 9×), so it is also
//! less memory to write and read. Four launches: weights, input, matmul, output; three for a
//! block in its inference form ([`super::inference`]), whose weights are transformed once and
//! whose surroundings (bias, batch norms, ReLU, upsampling, pooling, residual) are applied by the
//! input and output transforms as they read and write.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::conv::{MIN_OUTPUT_CHANNELS, output_shape};
use super::launch_size;
use super::winograd_kernels::{input_transform_kernel, output_transform_kernel, weight_transform_kernel};

/// Values in one transformed tile (6×6).
pub(super) const TILE_VALUES: usize = 36;

/// The interpolation points 0, ±a, ±b, ∞ of the transforms for tensors stored in `dtype`:
/// 1 and 2 (Lavin and Gray's) in f32; 2/3 and 3/2 in f16, where the transformed tiles and the
/// products are stored in f16 too: those points scale their rounding least (the CPU's bf16
/// products found the same, `cpu::winograd::Points::RECIPROCAL`). The weights' transform and
/// the tiles' must use the same.
pub(super) fn points(dtype: DType) -> [f32; 2] {
    match dtype {
        DType::F16 | DType::BF16 => [2.0 / 3.0, 3.0 / 2.0],
        _ => STANDARD_POINTS,
    }
}

/// Lavin and Gray's points, for which the transforms run in their integer form.
const STANDARD_POINTS: [f32; 2] = [1.0, 2.0];

/// What the transforms apply around a prepared block's convolution (each read only where on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// The input is the block's input then a second tensor along channels (an hourglass's skip
    /// connection), read in place of their concatenation.
    pub concatenated_input: bool,
    /// The input is upsampled ×2 by nearest neighbour first (an `UpBlock2d`).
    pub upsample_input: bool,
    /// `relu(scale · x + shift)` per input channel before the zero padding (a pre-activation
    /// batch norm and ReLU).
    pub input_affine: bool,
    /// The bias is added to the output.
    pub bias: bool,
    /// ReLU on the output, after the bias.
    pub relu: bool,
    /// 2×2 average pooling of the output after the ReLU (a `DownBlock2d`).
    pub pool_output: bool,
    /// A residual of the output's shape is added last.
    pub residual: bool,
}

/// The Winograd convolution as backend operations (lazy, in order, under fusion).
#[backend_extension(Cube, Fusion)]
pub trait WinogradConvOps: Backend {
    /// `conv2d(x, weight)` of a 3×3 filter, stride 1, dilation 1, groups 1, without bias.
    #[fusion(dtype = x, shape = output_shape(x, weight, options))]
    fn conv2d_winograd(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;

    /// `U[ξ, o, c] = (G g Gᵀ)[ξ]` of 3×3 filters `[o, c, 3, 3]`: `[36, o, c]`.
    #[fusion(dtype = weight, shape = transformed_weight_shape(weight))]
    fn winograd_weights(weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// A block's 3×3 stride-1 padding-1 convolution of `x` `[b, c, h, w]` (or of `x` and
    /// `x_tail` concatenated along channels) by weights already transformed (`[36, o, c]`), with
    /// its `surroundings`: `x_tail`, `input_scale` and `input_shift` (`[c]`), `bias` (`[o]`) and
    /// `residual` (the output's shape) are read only where those ask for them (pass any tensor
    /// otherwise).
    #[allow(clippy::too_many_arguments)]
    #[fusion(dtype = x, shape = block_output_shape(x, transformed_weight, surroundings))]
    fn winograd_block(
        x: FloatTensor<Self>,
        x_tail: FloatTensor<Self>,
        transformed_weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        input_scale: FloatTensor<Self>,
        input_shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        surroundings: Surroundings,
    ) -> FloatTensor<Self>;
}

fn transformed_weight_shape(weight: &Shape) -> Shape {
    Shape::new([TILE_VALUES, weight[0], weight[1]])
}

/// `[b, o, h', w']` of [`WinogradConvOps::winograd_block`].
pub(super) fn block_output_shape(x: &Shape, transformed_weight: &Shape, surroundings: &Surroundings) -> Shape {
    let [height, width] = block_convolution_size(x, surroundings);
    let pooled = if surroundings.pool_output { 2 } else { 1 };
    Shape::new([x[0], transformed_weight[1], height / pooled, width / pooled])
}

/// The size the block's convolution runs at: the input's, doubled where it is upsampled.
pub(super) fn block_convolution_size(x: &Shape, surroundings: &Surroundings) -> [usize; 2] {
    let scale = if surroundings.upsample_input { 2 } else { 1 };
    [x[2] * scale, x[3] * scale]
}

/// Whether F(4×4, 3×3) computes this convolution: a 3×3 filter, stride 1, no dilation, no groups,
/// and at least [`MIN_OUTPUT_CHANNELS`] outputs (fewer go to the direct kernel).
pub fn applies(weight: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    let [out_channels, _, kernel_height, kernel_width] = weight.dims();
    (kernel_height, kernel_width) == (3, 3)
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && options.groups == 1
        && out_channels >= MIN_OUTPUT_CHANNELS
}

/// `conv2d(x, weight) + bias` by F(4×4, 3×3) where it [`applies`] and `x` is a plain (not
/// autodiff) tensor on burn's CubeCL backend; `None` otherwise.
pub fn conv2d_winograd(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if !applies(weight, options) {
        return None;
    }
    super::on_cube(x, weight, bias, |x, weight| {
        <Cube as WinogradConvOps>::conv2d_winograd(x, weight, options.clone())
    })
}

impl WinogradConvOps for CubeBackend {
    fn conv2d_winograd(x: CubeTensor, weight: CubeTensor, options: ConvOptions<2>) -> CubeTensor {
        let weight_shape = weight.shape();
        let transformed = Self::winograd_weights(weight);
        let padding = [options.padding[0].0, options.padding[1].0];
        // Tensors that are never read stand in for the absent surroundings.
        let unused = x.clone();
        let tensors = BlockTensors {
            tail: &unused,
            bias: &unused,
            input_scale: &unused,
            input_shift: &unused,
            residual: &unused,
        };
        let [_, _, height, width] = output_shape(&x.shape(), &weight_shape, &options).dims::<4>();
        winograd(
            x.clone(),
            transformed,
            [[height, width], padding],
            tensors,
            Surroundings::default(),
        )
    }

    fn winograd_weights(weight: CubeTensor) -> CubeTensor {
        let (client, device, dtype) = (weight.client.clone(), weight.device.clone(), weight.dtype);
        let [out_channels, channels, _, _] = weight.shape().dims::<4>();
        let transformed = empty_device_dtype(client.clone(), device, transformed_weight_shape(&weight.shape()), dtype);
        let (cube_count, cube_dim) = launch_size(&client, out_channels * channels);
        let [a, b] = points(dtype);
        weight_transform_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            weight.into_tensor_arg(),
            transformed.clone().into_tensor_arg(),
            a,
            b,
            [a, b] == STANDARD_POINTS,
            dtype_to_storage_type(dtype),
        );
        transformed
    }

    fn winograd_block(
        x: CubeTensor,
        x_tail: CubeTensor,
        transformed_weight: CubeTensor,
        bias: CubeTensor,
        input_scale: CubeTensor,
        input_shift: CubeTensor,
        residual: CubeTensor,
        surroundings: Surroundings,
    ) -> CubeTensor {
        let tensors = BlockTensors {
            tail: &x_tail,
            bias: &bias,
            input_scale: &input_scale,
            input_shift: &input_shift,
            residual: &residual,
        };
        // Padding 1 on every side keeps the size.
        let size = block_convolution_size(&x.shape(), &surroundings);
        winograd(x, transformed_weight, [size, [1, 1]], tensors, surroundings)
    }
}

/// The tensors a block's surroundings read.
struct BlockTensors<'a> {
    tail: &'a CubeTensor,
    bias: &'a CubeTensor,
    input_scale: &'a CubeTensor,
    input_shift: &'a CubeTensor,
    residual: &'a CubeTensor,
}

/// Input transform, batched matmul and output transform, in chunks of tiles such that the
/// transformed input and the products each fit one buffer of the device (one chunk for every
/// FOMM layer on a GPU; llvmpipe's buffers are 128 MiB).
/// `size` is the convolution's output size (before pooling), `padding` its top and left zero
/// padding: the plain convolution's may differ on each side.
fn winograd(
    x: CubeTensor,
    transformed_weight: CubeTensor,
    [size, padding]: [[usize; 2]; 2],
    tensors: BlockTensors,
    surroundings: Surroundings,
) -> CubeTensor {
    let [batch, mut channels, _, _] = x.shape().dims::<4>();
    if surroundings.concatenated_input {
        channels += tensors.tail.shape()[1];
    }
    let out_channels = transformed_weight.shape()[1];
    let [height, width] = size;
    let (tiles_y, tiles_x) = (height.div_ceil(4), width.div_ceil(4));
    let tiles = batch * tiles_y * tiles_x;
    let (dtype, client, device) = (x.dtype, x.client.clone(), x.device.clone());
    let storage = dtype_to_storage_type(dtype);
    let [a, b] = points(dtype);

    let pooled = if surroundings.pool_output { 2 } else { 1 };
    let output = empty_device_dtype(
        client.clone(),
        device.clone(),
        Shape::new([batch, out_channels, height / pooled, width / pooled]),
        dtype,
    );
    let largest_buffer = client.properties().memory.max_page_size as usize;
    let bytes_per_tile = TILE_VALUES * channels.max(out_channels) * dtype.size();
    let chunk = (largest_buffer / bytes_per_tile).clamp(1, tiles);
    for first_tile in (0..tiles).step_by(chunk) {
        let count = chunk.min(tiles - first_tile);
        let transformed_input = empty_device_dtype(
            client.clone(),
            device.clone(),
            Shape::new([TILE_VALUES, channels, count]),
            dtype,
        );
        let (cube_count, cube_dim) = launch_size(&client, channels * count);
        input_transform_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            x.clone().into_tensor_arg(),
            tensors.tail.clone().into_tensor_arg(),
            tensors.input_scale.clone().into_tensor_arg(),
            tensors.input_shift.clone().into_tensor_arg(),
            transformed_input.clone().into_tensor_arg(),
            first_tile as u32,
            tiles_y as u32,
            tiles_x as u32,
            padding[0] as u32,
            padding[1] as u32,
            a,
            b,
            [a, b] == STANDARD_POINTS,
            surroundings.concatenated_input,
            surroundings.upsample_input,
            surroundings.input_affine,
            storage,
        );
        // burn's matmul sums f16 operands in f32 (cubek-matmul's accumulator), then stores
        // the products in the operands' dtype.
        let products = CubeBackend::float_matmul(transformed_weight.clone(), transformed_input);
        let (cube_count, cube_dim) = launch_size(&client, out_channels * count);
        output_transform_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            products.into_tensor_arg(),
            tensors.bias.clone().into_tensor_arg(),
            tensors.residual.clone().into_tensor_arg(),
            output.clone().into_tensor_arg(),
            first_tile as u32,
            tiles_y as u32,
            tiles_x as u32,
            height as u32,
            width as u32,
            a,
            b,
            [a, b] == STANDARD_POINTS,
            surroundings.bias,
            surroundings.relu,
            surroundings.pool_output,
            surroundings.residual,
            storage,
        );
    }
    output
}
