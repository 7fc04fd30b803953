//! Kernels for burn's CubeCL backend (wgpu and every other CubeCL runtime), plugged in through
//! burn's extension API: an operation takes the `Cube` primitives of its tensors, so it runs
//! lazily under fusion like burn's own operations, and declines for tensors on any other backend.
//! Under autodiff the convolution is one operation with its own backward ([`conv2d`]).

mod conv;
mod conv_autodiff;
mod direct_block_kernels;
mod direct_conv;
mod direct_conv_kernels;
mod inference;
mod motion;
mod motion_kernels;
mod unfold;
mod winograd;
mod winograd_kernels;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::Cube;
use burn::backend::tensor::FloatTensor;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::{CubeCount, CubeDim};

pub use conv::{MIN_OUTPUT_CHANNELS, UNFOLD_BUDGET, conv2d_unfold, conv2d_unfolding_at_most};
pub use conv_autodiff::weight_gradient_unfolding_at_most;
pub use direct_conv::{Activation, DIRECT_MAX_OUTPUT_CHANNELS, conv2d_direct};
pub use inference::{PreparedConv3x3, is_cube};
pub use motion::{
    MotionInputs, MotionOutputs, heatmap_keypoints, heatmap_keypoints_of_heads, motion_inputs, motion_outputs,
    warp_occluded,
};
pub use winograd::conv2d_winograd;

/// Which convolution kernels run on a GPU, for the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum KernelChoice {
    /// Ours, except on software adapters (burn's there: see [`use_burn_kernels_on`]).
    #[default]
    Auto,
    /// Ours on every adapter: 3×3 stride-1 convolutions by Winograd's F(4×4, 3×3), those of
    /// few outputs by the direct kernel, the others by unfold + matmul.
    Ours,
    /// Ours on every adapter, the 3×3 convolutions too by unfold + matmul (no Winograd).
    Unfold,
    /// burn's own everywhere (its direct convolution).
    Burn,
}

static CHOICE: AtomicU8 = AtomicU8::new(KernelChoice::Auto as u8);

/// Devices that keep burn's kernels under [`KernelChoice::Auto`]: software adapters.
static BURN_KERNELS_ON: Mutex<Vec<Device>> = Mutex::new(Vec::new());

/// Sets which kernels run from now on (`bench --gpu-kernels`: ours and burn's timed on one card).
pub fn choose(choice: KernelChoice) {
    CHOICE.store(choice as u8, Ordering::Relaxed);
}

/// The kernels chosen (by default [`KernelChoice::Auto`]).
pub fn choice() -> KernelChoice {
    match CHOICE.load(Ordering::Relaxed) {
        value if value == KernelChoice::Ours as u8 => KernelChoice::Ours,
        value if value == KernelChoice::Unfold as u8 => KernelChoice::Unfold,
        value if value == KernelChoice::Burn as u8 => KernelChoice::Burn,
        _ => KernelChoice::Auto,
    }
}

/// Whether 3×3 stride-1 convolutions run as Winograd's F(4×4, 3×3) where ours serve.
pub fn winograd() -> bool {
    choice() != KernelChoice::Unfold
}

/// `conv2d(x, weight) + bias` by this module's kernels: Winograd's F(4×4, 3×3) for 3×3 stride-1
/// filters (unless [`KernelChoice::Unfold`] is chosen), the direct kernel for the others of at
/// most [`DIRECT_MAX_OUTPUT_CHANNELS`] outputs, unfold + matmul for the rest; under autodiff,
/// one operation whose gradients run these kernels too. `None` where they do not serve
/// (tensors on another backend, groups with more than [`DIRECT_MAX_OUTPUT_CHANNELS`] outputs,
/// dilation with fewer than [`MIN_OUTPUT_CHANNELS`], and under autodiff strides, dilation or
/// groups).
pub fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if x.device().is_autodiff() {
        return conv_autodiff::conv2d_autodiff(x, weight, bias, options);
    }
    plain_conv2d(x, weight, bias, options)
}

/// [`conv2d`] of tensors without autodiff.
fn plain_conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if winograd::applies(weight, options) {
        return match winograd() {
            true => conv2d_winograd(x, weight, bias, options),
            false => conv2d_unfold(x, weight, bias, options),
        };
    }
    conv2d_direct(x, None, weight, bias, options, Activation::Identity)
        .or_else(|| conv2d_unfold(x, weight, bias, options))
}

/// `convolution(x, weight) + bias` where `x` and `weight` are plain (not autodiff) tensors on
/// burn's CubeCL backend, else `None`: the bias is added at the tensor level, so that fusion
/// merges it with the batch norm and ReLU after it.
fn on_cube(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    convolution: impl FnOnce(FloatTensor<Cube>, FloatTensor<Cube>) -> FloatTensor<Cube>,
) -> Option<Tensor<4>> {
    let x = x.clone().try_into_primitive::<Cube>().ok()?;
    let out_channels = weight.dims()[0];
    let weight = weight.clone().try_into_primitive::<Cube>().ok()?;
    let y = Tensor::<4>::from_primitive::<Cube>(convolution(x, weight));
    Some(match bias {
        Some(bias) => y + bias.clone().reshape([1, out_channels, 1, 1]),
        None => y,
    })
}

/// Keeps burn's kernels on `device` under [`KernelChoice::Auto`]. For software adapters (Mesa's
/// llvmpipe): there ours are no faster (llvmpipe, 2 Zen 3 cores, fomm-small frame: burn's 292 ms,
/// Winograd 301 ms, unfold + matmul 400 ms).
pub fn use_burn_kernels_on(device: &Device) {
    let mut devices = BURN_KERNELS_ON.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !devices.contains(device) {
        devices.push(device.clone());
    }
}

/// Whether the operations should run this crate's GPU kernels for tensors on `device`.
pub fn serves(device: &Device) -> bool {
    match choice() {
        KernelChoice::Burn => false,
        KernelChoice::Ours | KernelChoice::Unfold => true,
        KernelChoice::Auto => !BURN_KERNELS_ON
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(device),
    }
}

/// The largest buffer `device` allocates (`None` off CubeCL's runtimes): what an unfolded or
/// transformed input must be cut to fit.
pub fn largest_buffer(device: &Device) -> Option<usize> {
    match device.clone().without_autodiff().as_dispatch() {
        burn::backend::DispatchDevice::Cube(cube) => Some(cube.client().properties().memory.max_page_size as usize),
        _ => None,
    }
}

/// The cubes and their size for one invocation per value of `values`: every element-wise kernel
/// here launches so.
fn launch_size(client: &cubecl::client::Client, values: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new(client, values);
    (calculate_cube_count_elemwise(client, values, cube_dim), cube_dim)
}
