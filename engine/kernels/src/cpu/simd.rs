//! The CPU kernels' SIMD dispatch, apart from the kernels as burn-flex keeps its own
//! (`burn-flex/src/simd/`): a kernel is a struct of its arguments implementing
//! [`VectorKernel`], run by [`vectorized`] for the best vector instructions the CPU has.

/// Runs a kernel compiled for the best vector instructions the CPU has (AVX2 + FMA on x86-64
/// where present; the crate itself is built for the SSE2 baseline), through macerator's safe
/// run-time dispatch. Target features reach only code inlined into the dispatching function,
/// so every step is `#[inline(always)]` and a method call, never a closure or `FnOnce` shim
/// (checked with objdump and perf: those stayed separate SSE2 functions).
#[inline(always)]
pub(crate) fn vectorized<K: VectorKernel>(kernel: K) {
    macerator::AutoArch::new().dispatch(Dispatched(kernel))
}

/// A kernel for [`vectorized`]: its arguments, and `run` inlining the kernel function.
pub(crate) trait VectorKernel {
    fn run(self);
}

/// `impl VectorKernel for $kernel`, whose `run` calls `$function` on its arguments.
macro_rules! vector_kernel {
    ($kernel:ty => $function:expr) => {
        impl $crate::cpu::simd::VectorKernel for $kernel {
            #[inline(always)]
            fn run(self) {
                $function(self.0)
            }
        }
    };
}
pub(crate) use vector_kernel;

struct Dispatched<K>(K);

impl<K: VectorKernel> macerator::WithSimd for Dispatched<K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: macerator::Simd>(self) {
        self.0.run()
    }
}

/// A kernel written with macerator's vectors (`Vector<S, f32>`, loaded and stored through
/// `unsafe_simd::lanes`), for [`vectorized_lanes`]: where the compiler's own vectorization of
/// plain loops does not hold (it left a 7×7 head's multiply-adds scalar, or its accumulators on
/// the stack), the kernel says its vectors itself.
pub(crate) trait LaneKernel {
    fn run<S: macerator::Simd>(self);
}

/// Runs a [`LaneKernel`] with the best vectors the CPU has (16 lanes of f32 with AVX-512, 8
/// with AVX2), as [`vectorized`] runs its kernels.
#[inline(always)]
pub(crate) fn vectorized_lanes<K: LaneKernel>(kernel: K) {
    macerator::AutoArch::new().dispatch(WithLanes(kernel))
}

struct WithLanes<K>(K);

impl<K: LaneKernel> macerator::WithSimd for WithLanes<K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: macerator::Simd>(self) {
        self.0.run::<S>()
    }
}
