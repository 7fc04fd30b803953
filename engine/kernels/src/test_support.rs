//! Helpers for the kernels' tests, shared with the engine's (`prioritycut_engine`'s
//! `test_support` re-exports them) and the workspace's integration tests: comparisons of tensors,
//! random inputs on flex, temporary folders.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

/// A fresh, empty folder under the system temp dir for one test, `PREFIX-NAME-PID`, removed with
/// what it holds when dropped: a run of the tests writes hundreds of MB of videos, datasets and
/// checkpoints, which stayed behind run after run. `PRIORITYCUT_KEEP_TEST_DIRS=1` keeps them to
/// look at.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for TempDir {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PRIORITYCUT_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// (max |a − b|, max |b|).
pub fn largest_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> (f32, f32) {
    let scale = b.clone().abs().max().into_scalar();
    ((a - b).abs().max().into_scalar(), scale)
}

/// Asserts max |ours − reference| ≤ `tolerance` · max(1, max |reference|).
pub fn assert_close<const D: usize>(what: &str, ours: Tensor<D>, reference: Tensor<D>, tolerance: f32) {
    let (difference, scale) = largest_difference(ours, reference);
    assert!(
        difference <= tolerance * scale.max(1.0),
        "{what}: {difference} of {scale}"
    );
}

/// A flex tensor of values drawn uniformly from [−scale, scale].
pub fn uniform<const D: usize>(shape: [usize; D], scale: f64) -> Tensor<D> {
    use burn::tensor::Distribution;
    Tensor::random(shape, Distribution::Uniform(-scale, scale), &Device::flex())
}

/// Reproducible draws for tests whose data must not change from run to run (the device's own
/// generator is shared by every test running beside them): splitmix64, Box–Muller for normals.
#[derive(Debug, Clone)]
pub struct SeededDraws(u64);

impl SeededDraws {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
    }

    /// A flex tensor of values uniform in [low, high).
    pub fn uniform<const D: usize>(&mut self, shape: [usize; D], low: f64, high: f64, device: &Device) -> Tensor<D> {
        let values: Vec<f32> = (0..shape.iter().product())
            .map(|_| (low + (high - low) * self.next_unit()) as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A flex tensor of values drawn from N(mean, std²).
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], mean: f64, std: f64, device: &Device) -> Tensor<D> {
        let values: Vec<f32> = (0..shape.iter().product())
            .map(|_| {
                let (u, v) = (1.0 - self.next_unit(), self.next_unit());
                (mean + std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}
