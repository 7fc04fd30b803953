//! The kernels behind the engine's networks, kept apart from them as burn keeps its kernels in
//! backend crates: a network calls an operation ([`conv2d`]) and the operation chooses its kernel
//! by the device its tensors are on, or declines (`None`) and the caller runs burn's own.
//!
//! Today this crate holds the GPU side ([`gpu`]); the CPU kernels still live in the engine's
//! `model/` and move here next (issue "Kernels in a house of their own").

pub mod gpu;

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
