//! Helpers for the engine's unit tests.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::Rng;

/// A fresh, empty folder under the system temp dir, unique to this test process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prioritycut-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A batch of two 64×64 RGB frames of uniform noise, the same for the same `seed`.
pub fn noise_frames(seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = Rng::derive(&[seed]);
    let values: Vec<f32> = (0..2 * 3 * 64 * 64).map(|_| rng.uniform() as f32).collect();
    Tensor::from_data(TensorData::new(values, [2, 3, 64, 64]), device)
}

pub use prioritycut_kernels::test_support::assert_close;
