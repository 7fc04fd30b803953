//! Fresh buffers for the kernels' outputs and scratch.
//!
//! A kernel's output was allocated with `vec![0.0; n]` on the calling thread before its parallel
//! loop: the allocator's memset (for memory it reuses) or the kernel's page faults (for memory
//! it maps) then ran on that thread alone while the pool waited. In a TPSMM training step on 2
//! cores the calling thread spent ~a third of its solo time in memset and page clearing (perf,
//! per thread). [`zeroed`] zeroes large buffers by the pool's threads instead.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero_at_every_size() {
        for len in [0, 1, PARALLEL_MIN - 1, PARALLEL_MIN, 3 * PARALLEL_MIN + 7] {
            let values = zeroed(len);
            assert_eq!(values.len(), len);
            assert!(values.iter().all(|&v| v == 0.0), "{len}");
        }
    }
}
