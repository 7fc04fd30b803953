//! Helpers for the engine's unit tests.

use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::Rng;

/// A fresh, empty folder under the system temp dir, unique to this test process and `name`,
/// removed when dropped.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new("prioritycut-engine", name)
}

/// A batch of two 64×64 RGB frames of uniform noise, the same for the same `seed`.
pub fn noise_frames(seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = Rng::derive(&[seed]);
    let values: Vec<f32> = (0..2 * 3 * 64 * 64).map(|_| rng.uniform() as f32).collect();
    Tensor::from_data(TensorData::new(values, [2, 3, 64, 64]), device)
}

pub use prioritycut_kernels::test_support::{TempDir, assert_close};
