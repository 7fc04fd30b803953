//! A vector of f32 from a slice and back: macerator's loads and stores take raw pointers
//! (`vload_unaligned`, `vstore_unaligned`); [`load`] and [`store`] take a slice and check that it
//! holds a whole vector, so the kernels written with macerator's vectors stay safe code.
#![allow(unsafe_code)]

use macerator::{Scalar, Simd, Vector, vload_unaligned, vstore_unaligned};

/// The first `f32::lanes::<S>()` values of `values` as one vector. Panics where there are fewer.
#[inline(always)]
pub(crate) fn load<S: Simd>(values: &[f32]) -> Vector<S, f32> {
    let values = &values[..f32::lanes::<S>()];
    // SAFETY: `values` holds exactly one vector's lanes (the slice above checked its length) and
    // an unaligned load reads those values and no others.
    unsafe { vload_unaligned::<S, f32>(values.as_ptr()) }
}

/// Writes `vector` over the first `f32::lanes::<S>()` values of `values`. Panics where there
/// are fewer.
#[inline(always)]
pub(crate) fn store<S: Simd>(values: &mut [f32], vector: Vector<S, f32>) {
    let values = &mut values[..f32::lanes::<S>()];
    // SAFETY: `values` is one vector's lanes, borrowed mutably (the slice above checked its
    // length); an unaligned store writes those values and no others.
    unsafe { vstore_unaligned::<S, f32>(values.as_mut_ptr(), vector) }
}

/// The same for AVX-512's vectors of 16 f32, for the micro-kernels written with its intrinsics
/// (`f32_gemm`, `bf16_gemm`).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::{__m512, _mm512_loadu_ps, _mm512_storeu_ps};

    /// The first 16 values of `values` as one vector. Panics where there are fewer.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn load(values: &[f32]) -> __m512 {
        let values = &values[..16];
        // SAFETY: `values` holds exactly 16 f32, 64 bytes (checked above): the unaligned load
        // reads those and no others.
        unsafe { _mm512_loadu_ps(values.as_ptr()) }
    }

    /// Writes `vector` over the first 16 values of `values`. Panics where there are fewer.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn store(values: &mut [f32], vector: __m512) {
        let values = &mut values[..16];
        // SAFETY: `values` is 16 f32 borrowed mutably (checked above); the unaligned store
        // writes those and no others.
        unsafe { _mm512_storeu_ps(values.as_mut_ptr(), vector) }
    }
}

/// The same for AVX2's vectors of 8 f32 (`f32_gemm`'s micro-kernel on CPUs without AVX-512).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::{__m256, _mm256_loadu_ps, _mm256_storeu_ps};

    /// The first 8 values of `values` as one vector. Panics where there are fewer.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn load(values: &[f32]) -> __m256 {
        let values = &values[..8];
        // SAFETY: `values` holds exactly 8 f32, 32 bytes (checked above): the unaligned load
        // reads those and no others.
        unsafe { _mm256_loadu_ps(values.as_ptr()) }
    }

    /// Writes `vector` over the first 8 values of `values`. Panics where there are fewer.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn store(values: &mut [f32], vector: __m256) {
        let values = &mut values[..8];
        // SAFETY: `values` is 8 f32 borrowed mutably (checked above); the unaligned store
        // writes those and no others.
        unsafe { _mm256_storeu_ps(values.as_mut_ptr(), vector) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::simd::{LaneKernel, vectorized_lanes};

    /// Loads from every offset of a slice, doubles, stores back: each value once, in place.
    struct Double<'a>(&'a mut [f32]);

    impl LaneKernel for Double<'_> {
        #[inline(always)]
        fn run<S: Simd>(self) {
            let lanes = f32::lanes::<S>();
            for chunk in self.0.chunks_exact_mut(lanes) {
                let v = load::<S>(chunk);
                store::<S>(chunk, v + v);
            }
        }
    }

    /// Reports the lanes of the dispatched vectors.
    struct Lanes<'a>(&'a mut usize);

    impl LaneKernel for Lanes<'_> {
        #[inline(always)]
        fn run<S: Simd>(self) {
            *self.0 = f32::lanes::<S>();
        }
    }

    #[test]
    fn a_vector_goes_in_and_out_of_a_slice() {
        let mut lanes = 0;
        vectorized_lanes(Lanes(&mut lanes));
        assert!(lanes >= 1 && 64 % lanes == 0, "{lanes} lanes");
        let mut values: Vec<f32> = (0..4 * lanes + 3).map(|i| i as f32).collect();
        vectorized_lanes(Double(&mut values));
        for (i, &v) in values.iter().enumerate() {
            let expected = if i < 4 * lanes { 2.0 * i as f32 } else { i as f32 };
            assert_eq!(v, expected, "value {i}");
        }
    }

    /// A slice shorter than a vector is refused before any memory is touched.
    struct Short;

    impl LaneKernel for Short {
        #[inline(always)]
        fn run<S: Simd>(self) {
            let values = vec![1.0f32; f32::lanes::<S>() - 1];
            let _ = load::<S>(&values);
        }
    }

    #[test]
    #[should_panic]
    fn a_short_slice_is_refused() {
        vectorized_lanes(Short);
    }
}
