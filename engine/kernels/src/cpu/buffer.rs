//! Fresh buffers for the kernels' outputs and scratch.
//!
//! A kernel's output was allocated with `vec![0.0; n]` on the calling thread before its parallel
//! loop: the allocator's memset (for memory it reuses) or the kernel's page faults (for memory
//! it maps) then ran on that thread alone while the pool waited. In a TPSMM training step on 2
//! cores the calling thread spent ~a third of its solo time in memset and page clearing (perf,
//! per thread). [`zeroed`] zeroes large buffers by the pool's threads instead.

use std::cell::RefCell;

use rayon::prelude::*;

/// Below this many values a buffer is zeroed where it is allocated (a task costs more).
const PARALLEL_MIN: usize = 1 << 16;

/// `len` zeros, written by the pool's threads when the buffer is large.
pub fn zeroed(len: usize) -> Vec<f32> {
    if len < PARALLEL_MIN {
        return vec![0.0; len];
    }
    let mut values = Vec::with_capacity(len);
    values.par_extend(rayon::iter::repeat_n(0.0f32, len));
    values
}

thread_local! {
    /// Each thread's scratch buffers, kept between the kernel calls it makes.
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with buffers of `lens` values whose contents are unspecified (zeros, or what an
/// earlier call left): for scratch that `f` writes before it reads. They are the calling
/// thread's, reused by its next call, so that a kernel called layer after layer neither
/// allocates nor zeroes them again (8 MB of Winograd tiles and products per 3×3 layer, zeroed
/// on the calling thread while the pool waited: ~1% of a vox-256 frame).
pub fn with_scratch<const N: usize, R>(lens: [usize; N], f: impl FnOnce([&mut [f32]; N]) -> R) -> R {
    // Taken out while `f` runs, so that a call within `f` gets buffers of its own.
    let mut buffers: [Vec<f32>; N] =
        SCRATCH.with_borrow_mut(|kept| std::array::from_fn(|_| kept.pop().unwrap_or_default()));
    for (buffer, &len) in buffers.iter_mut().zip(&lens) {
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
    }
    let mut parts = buffers.iter_mut().zip(lens);
    let slices = std::array::from_fn(|_| {
        let (buffer, len) = parts.next().expect("one buffer per length");
        &mut buffer[..len]
    });
    let result = f(slices);
    SCRATCH.with_borrow_mut(|kept| kept.extend(buffers));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_has_the_lengths_asked_and_is_reused() {
        let first = with_scratch([10, 3], |[a, b]| {
            assert_eq!((a.len(), b.len()), (10, 3));
            a.fill(1.0);
            b.fill(2.0);
            // A call within gets buffers of its own.
            with_scratch([4], |[c]| {
                assert_eq!(c.len(), 4);
                c.fill(3.0);
            });
            a.as_ptr() as usize
        });
        let again = with_scratch([5, 3], |[a, b]| {
            assert_eq!((a.len(), b.len()), (5, 3));
            [a.as_ptr() as usize, b.as_ptr() as usize]
        });
        assert!(again.contains(&first), "a buffer is reused by the thread's next call");
    }

    #[test]
    fn zeroed_buffers_are_zero_at_every_size() {
        for len in [0, 1, PARALLEL_MIN - 1, PARALLEL_MIN, 3 * PARALLEL_MIN + 7] {
            let values = zeroed(len);
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|&v| v == 0.0), "{len}");
        }
    }
}
