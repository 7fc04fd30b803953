//! The kernels behind the engine's networks, kept apart from them as burn keeps its kernels in
//! backend crates: a network calls an operation ([`conv2d`]) and the operation chooses its kernel
//! by the device its tensors are on, or declines (`None`) and the caller runs burn's own.
//!
//! [`cpu`]: the CPU kernels on flex (Winograd and direct convolutions, the training step's fused
//! operations with their backward passes); [`gpu`]: kernels for burn's CubeCL backend.
//!
//! # The seam's conventions
//! - **Layout**: operations take and return burn's logical `[batch, channels, height, width]`;
//!   on the CPU the fast kernels store their outputs channels-last and read such inputs in
//!   place ([`cpu::layout`]), so a chain of them never transposes.
//! - **Precision**: the CPU's kernels take and return f32 tensors; the GPU's take the dtype their
//!   tensors are stored in (f32, or f16 for a model stored so) and sum in f32. A reduced
//!   precision is a choice made once per process ([`precision::set_precision`], `--precision`),
//!   as [`gpu::choose`] makes the GPU's kernel choice: bf16 products in the CPU's Winograd
//!   convolutions where the CPU has AVX512-BF16, which an inference-form operation reads when it
//!   runs; f16 storage of a model opened on a GPU with `SHADER_F16`
//!   ([`precision::storage_dtype`]). Training stays f32.
//!
//! # Unsafe code
//! The workspace forbids `unsafe`; this crate denies it (its `Cargo.toml`), so that an
//! instruction with no safe path (AVX512-BF16's dot products) can be reached, under one rule:
//! only in modules under `src/cpu/unsafe_simd/`, each allowed by `#[allow(unsafe_code)]` on the
//! module, each block with its `// SAFETY:` argument and one unsafe operation
//! (`clippy::undocumented_unsafe_blocks`, `clippy::multiple_unsafe_ops_per_block`), each kernel
//! tested against the safe kernel it speeds up: [`cpu::unsafe_simd::gemm`], the Winograd
//! convolutions' GEMMs on their own buffers, [`cpu::unsafe_simd::f32_gemm`], their f32 products
//! by our AVX-512 or AVX2 micro-kernel on weights packed once, and [`cpu::unsafe_simd::bf16_gemm`],
//! their bf16 products by AVX512-BF16's dot product.

mod autodiff;
pub mod cpu;
pub mod gpu;
mod inference;
pub mod precision;
#[doc(hidden)]
pub mod test_support;

#[cfg(test)]
mod rules;

pub use cpu::adam::{AdamStep, adam_update};
pub use cpu::batch_norm::{
    batch_norm_relu_pool_train, batch_norm_relu_train, instance_norm_relu, instance_norm_relu_pool,
};
pub use cpu::conv::{FrozenConv3x3Relu, convolve, convolve_concatenated, convolve_sigmoid};
pub use cpu::grid_sample::{grid_sample, grid_sample_align_corners};
pub use cpu::mean_absolute::mean_absolute_difference;
pub use cpu::pool::max_pool2;
pub use cpu::winograd::{ChannelAffine, Fused, inference_multiplies};
pub use inference::InferenceConv;
pub use precision::{Precision, UnsupportedPrecision, precision, set_precision};

use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

/// `torch.cat(tensors, dim=1)`: kept stored channels-last on flex where one of the maps is
/// ([`cpu::layout`]), burn's concatenation elsewhere.
pub fn cat_channels(tensors: Vec<Tensor<4>>) -> Tensor<4> {
    cpu::layout::cat_channels_last(&tensors).unwrap_or_else(|| Tensor::cat(tensors, 1))
}

/// `conv2d(x, weight) + bias` by one of this crate's kernels where one serves the device and
/// shape, else `None`. Inputs in burn's layout (NCHW, weights `[out, in, kh, kw]`).
pub fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if !gpu::serves(&x.device()) {
        return None;
    }
    gpu::conv2d(x, weight, bias, options)
}
