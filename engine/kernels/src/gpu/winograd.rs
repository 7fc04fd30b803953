//! 3×3 stride-1 convolution on the GPU by Winograd's minimal filtering F(4×4, 3×3) (Lavin &
//! Gray, 2016), the algorithm the CPU runs too: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for every 6×6
//! input tile `d` and its 4×4 output tile.
//!
//! Why: a FOMM frame is ~95% 3×3 convolutions; F(4×4, 3×3) multiplies 36 times per channel pair
//! and 4×4 outputs instead of 144, and the 36 element-wise products summed over input channels
//! are one batched matmul `M[ξ] = U[ξ] · V[ξ]` (burn's autotuned matmul, batch 36). The
//! transformed input is 2.25× the input (the unfolded one of [`super::conv`] 9×), so it is also
//! less memory to write and read. Four launches: weights, input, matmul, output.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::kernel::matmul::{MatmulStrategy, matmul};
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::CubeDim;

use super::conv::{GemmConvOps, MIN_OUTPUT_CHANNELS, UNFOLD_BUDGET, output_shape};
use super::winograd_kernels::{input_transform_kernel, output_transform_kernel, weight_transform_kernel};

/// Values in one transformed tile (6×6).
const TILE_VALUES: usize = 36;

/// The Winograd convolution as a backend operation (lazy, in order, under fusion).
#[backend_extension(Cube, Fusion)]
pub trait WinogradConvOps: Backend {
    /// `conv2d(x, weight)` of a 3×3 filter, stride 1, dilation 1, groups 1, without bias.
    #[fusion(dtype = x, shape = output_shape(x, weight, options))]
    fn conv2d_winograd(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;
}

/// Whether F(4×4, 3×3) computes this convolution: a 3×3 filter, stride 1, no dilation, no groups,
/// and at least [`MIN_OUTPUT_CHANNELS`] outputs (fewer keep burn's direct kernel).
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
        let output = output_shape(&x.shape(), &weight.shape(), &options);
        let [batch, channels, _, _] = x.shape().dims::<4>();
        let [_, out_channels, height, width] = output.dims::<4>();
        let (tiles_y, tiles_x) = (height.div_ceil(4), width.div_ceil(4));
        let tiles = batch * tiles_y * tiles_x;
        let (dtype, client, device) = (x.dtype, x.client.clone(), x.device.clone());

        // The transformed input and the products must each fit one buffer of the device; else
        // the unfold convolution, which goes in chunks.
        let largest_buffer = client.properties().memory.max_page_size as usize;
        let largest = TILE_VALUES * tiles * channels.max(out_channels) * dtype.size();
        if largest > largest_buffer {
            return <CubeBackend as GemmConvOps>::conv2d_gemm(x, weight, options, UNFOLD_BUDGET);
        }

        let storage = dtype_to_storage_type(dtype);
        let empty = |dims: [usize; 3]| empty_device_dtype(client.clone(), device.clone(), Shape::new(dims), dtype);
        let launch_size = |values: usize| {
            let cube_dim = CubeDim::new(&client, values);
            (calculate_cube_count_elemwise(&client, values, cube_dim), cube_dim)
        };

        let transformed_weight = empty([TILE_VALUES, out_channels, channels]);
        let (cube_count, cube_dim) = launch_size(out_channels * channels);
        weight_transform_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            weight.clone().into_tensor_arg(),
            transformed_weight.clone().into_tensor_arg(),
            storage,
        );

        let transformed_input = empty([TILE_VALUES, channels, tiles]);
        let (cube_count, cube_dim) = launch_size(channels * tiles);
        input_transform_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            x.clone().into_tensor_arg(),
            transformed_input.clone().into_tensor_arg(),
            tiles_y as u32,
            tiles_x as u32,
            options.padding[0].0 as u32,
            options.padding[1].0 as u32,
            storage,
        );

        let products = match matmul(
            transformed_weight,
            transformed_input,
            None,
            MatmulStrategy::default(),
            dtype,
        ) {
            // The output transform reads the planes as laid out above.
            Ok(products) => into_contiguous(products),
            // No matmul kernel for this adapter and shape: the unfold convolution's own fallback.
            Err(_) => return <CubeBackend as GemmConvOps>::conv2d_gemm(x, weight, options, UNFOLD_BUDGET),
        };

        let y = empty_device_dtype(client.clone(), device.clone(), output, dtype);
        let (cube_count, cube_dim) = launch_size(out_channels * tiles);
        output_transform_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            products.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            tiles_y as u32,
            tiles_x as u32,
            storage,
        );
        y
    }
}
