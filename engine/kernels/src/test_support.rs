//! Helpers for the kernels' tests, shared with the engine's (`prioritycut_engine`'s
//! `test_support` re-exports them): comparisons of tensors and random inputs on flex.

use burn::tensor::Tensor;

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
    use burn::tensor::{Device, Distribution};
    Tensor::random(shape, Distribution::Uniform(-scale, scale), &Device::flex())
}
