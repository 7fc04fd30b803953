//! Convolution on the GPU as one matrix product: the input unfolded into columns (im2col), then
//! burn's autotuned matmul.
//!
//! `y[o, p] = Σ_k W[o, k] · cols[k, p]`, with `k = (c, ky, kx)` the taps of input channel `c`
//! and `p = (b, y, x)` the output pixels: `cols[(c, ky, kx), (b, y, x)] = x[b, c, y·s + ky·d − pad,
//! x·s + kx·d − pad]`, zero outside the image.
//!
//! Why: on WGSL burn's convolution is always its direct kernel (one invocation per output value,
//! no tiling; the implicit-GEMM kernels need cooperative matrices, which WGSL lacks). On an
//! NVIDIA H200 a vox-256 frame ran its 89 GFLOP at 1.3 TFLOP/s, ~2% of the card's f32 rate.
//! burn's matmul is register-tiled and autotuned per adapter, so the arithmetic goes there; the
//! unfold is one pass that writes `k` values per output pixel, in chunks of input channels of at
//! most [`UNFOLD_BUDGET`] bytes.

use std::ops::Range;

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::conv::{ConvStrategy, conv_forward};
use burn_cubecl::kernel::matmul::{MatmulStrategy, matmul};
use burn_cubecl::kernel::{into_contiguous, slice};
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::ops::{permute, reshape};
use burn_cubecl::tensor::CubeTensor;

use super::launch_size;
use super::unfold::unfold_kernel;

/// The most bytes one chunk of the unfolded input takes (the adapter's largest buffer if that is
/// smaller: llvmpipe's is 128 MiB). Peak memory beyond burn's is one chunk; FOMM's largest unfold
/// that runs here (the last up-block at 256², 75 M values, 302 MB) is one chunk.
pub const UNFOLD_BUDGET: usize = 512 << 20;

/// Fewer output channels than this are not unfolded: a matmul of so few rows wastes most of its
/// tile (the direct kernel takes them, [`super::conv2d_direct`]; under autodiff burn's kernel).
/// FOMM's final 7×7 convolution (3 outputs).
pub const MIN_OUTPUT_CHANNELS: usize = 8;

/// The unfold + matmul convolution as a backend operation, so that it runs where burn's
/// operations run (lazily, in order, under fusion).
#[backend_extension(Cube, Fusion)]
pub trait GemmConvOps: Backend {
    /// `conv2d(x, weight)` without bias, groups 1, unfolding at most `unfold_budget` bytes at a
    /// time.
    #[fusion(dtype = x, shape = output_shape(x, weight, options))]
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
        unfold_budget: usize,
    ) -> FloatTensor<Self>;

    /// The columns `[(c, ky, kx), (b, y, x)]` of input channels `channels[0]..channels[1]` for a
    /// `kernel_size` filter (what the weight gradient multiplies the output gradient by).
    #[fusion(dtype = x, shape = unfolded_shape(x, options, kernel_size, channels))]
    fn unfold_columns(
        x: FloatTensor<Self>,
        options: ConvOptions<2>,
        kernel_size: [usize; 2],
        channels: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// `[channels · kh · kw, b · h' · w']` of [`GemmConvOps::unfold_columns`].
fn unfolded_shape(x: &Shape, options: &ConvOptions<2>, kernel_size: &[usize; 2], channels: &[usize; 2]) -> Shape {
    let [height, width] = filter_output_size(x, *kernel_size, options);
    Shape::new([
        (channels[1] - channels[0]) * kernel_size[0] * kernel_size[1],
        x[0] * height * width,
    ])
}

/// `[b, out, h', w']` for an input `[b, in, h, w]` and weights `[out, in, kh, kw]`.
pub(super) fn output_shape(x: &Shape, weight: &Shape, options: &ConvOptions<2>) -> Shape {
    let [height, width] = output_size(x, weight, options);
    Shape::new([x[0], weight[0], height, width])
}

/// [`output_size`] of a `kernel_size` filter.
fn filter_output_size(x: &Shape, kernel_size: [usize; 2], options: &ConvOptions<2>) -> [usize; 2] {
    output_size(x, &Shape::new([1, x[1], kernel_size[0], kernel_size[1]]), options)
}

fn output_size(x: &Shape, weight: &Shape, options: &ConvOptions<2>) -> [usize; 2] {
    std::array::from_fn(|axis| {
        let reach = options.dilation[axis] * (weight[2 + axis] - 1) + 1;
        let (before, after) = options.padding[axis];
        (x[2 + axis] + before + after).saturating_sub(reach) / options.stride[axis] + 1
    })
}

/// `conv2d(x, weight) + bias` by unfold + matmul where `x` is a plain (not autodiff) tensor on
/// burn's CubeCL backend, groups 1 and at least [`MIN_OUTPUT_CHANNELS`] outputs; `None`
/// otherwise.
pub fn conv2d_unfold(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    conv2d_unfolding_at_most(UNFOLD_BUDGET, x, weight, bias, options)
}

/// [`conv2d_unfold`] with another budget for one chunk of the unfolded input (tests: many chunks on
/// small maps).
pub fn conv2d_unfolding_at_most(
    unfold_budget: usize,
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if options.groups != 1 || weight.dims()[0] < MIN_OUTPUT_CHANNELS {
        return None;
    }
    super::on_cube(x, weight, bias, |x, weight| {
        <Cube as GemmConvOps>::conv2d_gemm(x, weight, options.clone(), unfold_budget)
    })
}

impl GemmConvOps for CubeBackend {
    fn conv2d_gemm(x: CubeTensor, weight: CubeTensor, options: ConvOptions<2>, unfold_budget: usize) -> CubeTensor {
        let [batch, channels, _, _] = x.shape().dims::<4>();
        let [out_channels, _, kernel_height, kernel_width] = weight.shape().dims::<4>();
        let [height, width] = output_size(&x.shape(), &weight.shape(), &options);
        let (dtype, client) = (x.dtype, x.client.clone());
        let kernel_taps = kernel_height * kernel_width;
        let pixels = batch * height * width;

        // The unfolded input of a chunk of input channels fits one buffer of the device and the
        // budget; the chunks' products are summed.
        let largest_buffer = (client.properties().memory.max_page_size as usize).min(unfold_budget);
        let bytes_per_channel = kernel_taps * pixels * dtype.size();
        let chunk = (largest_buffer / bytes_per_channel).min(channels);
        if chunk == 0 {
            return fallback(x, weight, options);
        }
        let weights = reshape(
            into_contiguous(weight.clone()),
            Shape::new([out_channels, channels * kernel_taps]),
        );
        let mut sum: Option<CubeTensor> = None;
        for first in (0..channels).step_by(chunk) {
            let last = (first + chunk).min(channels);
            let columns = unfold(
                &x,
                first..last,
                [height, width],
                [kernel_height, kernel_width],
                &options,
            );
            let weights = match (first, last) {
                (0, last) if last == channels => weights.clone(),
                _ => into_contiguous(slice(
                    weights.clone(),
                    &[0..out_channels, first * kernel_taps..last * kernel_taps],
                )),
            };
            let product = match matmul(weights, columns, None, MatmulStrategy::default(), dtype) {
                Ok(product) => product,
                // No matmul kernel for this adapter and shape: burn's convolution instead.
                Err(_) => return fallback(x, weight, options),
            };
            sum = Some(match sum {
                Some(sum) => CubeBackend::float_add(sum, product),
                None => product,
            });
        }
        let product = sum.unwrap_or_else(|| unreachable!("at least one chunk of input channels"));
        if batch == 1 {
            return reshape(product, Shape::new([1, out_channels, height, width]));
        }
        let per_image = reshape(product, Shape::new([out_channels, batch, height * width]));
        let batch_first = into_contiguous(permute(per_image, &[1, 0, 2]));
        reshape(batch_first, Shape::new([batch, out_channels, height, width]))
    }

    fn unfold_columns(
        x: CubeTensor,
        options: ConvOptions<2>,
        kernel_size: [usize; 2],
        channels: [usize; 2],
    ) -> CubeTensor {
        let size = filter_output_size(&x.shape(), kernel_size, &options);
        unfold(&x, channels[0]..channels[1], size, kernel_size, &options)
    }
}

/// The columns `[(c, ky, kx), (b, y, x)]` of input channels `channels`, in one launch.
fn unfold(
    x: &CubeTensor,
    channels: Range<usize>,
    [height, width]: [usize; 2],
    [kernel_height, kernel_width]: [usize; 2],
    options: &ConvOptions<2>,
) -> CubeTensor {
    let (client, batch) = (&x.client, x.shape()[0]);
    let rows = channels.len() * kernel_height * kernel_width;
    let pixels = batch * height * width;
    let columns = empty_device_dtype(client.clone(), x.device.clone(), Shape::new([rows, pixels]), x.dtype);
    let (cube_count, cube_dim) = launch_size(client, rows * pixels);
    let geometry = [
        channels.start,
        height,
        width,
        kernel_height,
        kernel_width,
        options.stride[0],
        options.stride[1],
        options.padding[0].0,
        options.padding[1].0,
        options.dilation[0],
        options.dilation[1],
    ]
    .map(|value| value as u32);
    unfold_kernel::launch(
        client,
        cube_count,
        cube_dim,
        x.clone().into_tensor_arg(),
        columns.clone().into_tensor_arg(),
        geometry[0],
        geometry[1],
        geometry[2],
        geometry[3],
        geometry[4],
        geometry[5],
        geometry[6],
        geometry[7],
        geometry[8],
        geometry[9],
        geometry[10],
        dtype_to_storage_type(x.dtype),
    );
    columns
}

fn fallback(x: CubeTensor, weight: CubeTensor, options: ConvOptions<2>) -> CubeTensor {
    conv_forward(x, weight, None, options, ConvStrategy::default())
        .unwrap_or_else(|e| panic!("burn's convolution declined a shape it accepts elsewhere: {e:?}"))
}
