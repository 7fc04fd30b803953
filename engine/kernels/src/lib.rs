//! The kernels behind the engine's networks, kept apart from them as burn keeps its kernels in
//! backend crates: a network calls an operation ([`conv2d`]) and the operation chooses its kernel
//! by the device its tensors are on, or declines (`None`) and the caller runs burn's own.
//!
//! [`cpu`]: the CPU kernels on flex (Winograd and direct convolutions, the training step's fused
//! operations with their backward passes); [`gpu`]: kernels for burn's CubeCL backend.

pub mod cpu;
pub mod gpu;
#[doc(hidden)]
pub mod test_support;

pub use cpu::batch_norm::{batch_norm_relu_pool_train, batch_norm_relu_train};
pub use cpu::conv::{FrozenConv3x3Relu, Layout, convolve};
pub use cpu::grid_sample::grid_sample;
pub use cpu::pool::max_pool2_channels_last;

use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

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
