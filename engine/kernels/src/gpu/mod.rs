//! Kernels for burn's CubeCL backend (wgpu and every other CubeCL runtime), plugged in through
//! burn's extension API: an operation takes the `Cube` primitives of its tensors, so it runs
//! lazily under fusion like burn's own operations, and declines for tensors on any other backend
//! or under autodiff (their backward passes are not written yet).

mod conv;
mod unfold;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

pub use conv::{MIN_OUTPUT_CHANNELS, UNFOLD_BUDGET, conv2d, conv2d_unfolding_at_most};

/// Whether this crate's GPU kernels are used (the default) or burn's own everywhere.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Devices that keep burn's kernels: software adapters, where ours measured slower.
static BURN_KERNELS_ON: Mutex<Vec<Device>> = Mutex::new(Vec::new());

/// Turns this crate's GPU kernels off (burn's own run) or back on, for the whole process: what
/// `bench --burn-kernels` uses to time both on one GPU.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Keeps burn's kernels on `device`. For software adapters (Mesa's llvmpipe): there the unfolded
/// input and the tiled matmul cost more than burn's direct convolution (measured on llvmpipe,
/// 2 cores: a fomm-small frame 583 ms against 274 ms; a vox-256 frame well over ten times
/// burn's 15 s).
pub fn use_burn_kernels_on(device: &Device) {
    let mut devices = BURN_KERNELS_ON.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !devices.contains(device) {
        devices.push(device.clone());
    }
}

/// Whether the operations should run this crate's GPU kernels for tensors on `device`.
pub fn serves(device: &Device) -> bool {
    ENABLED.load(Ordering::Relaxed)
        && !BURN_KERNELS_ON
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(device)
}
