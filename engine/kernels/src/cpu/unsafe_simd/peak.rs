//! This machine's arithmetic peak, measured rather than estimated: every core of the pool runs
//! independent chains of the vector multiply-add the kernels use (f32 FMA; AVX512-BF16's dot
//! product) with nothing to load or store, and the sums per second are the most the cores give
//! now. A clock read from /proc/cpuinfo can be the base clock (a VM's 2.6 GHz where the cores
//! boost past 3.4), and a shared machine's speed drifts from minute to minute: a figure put
//! against a peak measured beside it, in the same minute, reads the same on a busy machine as
//! on a quiet one.
#![allow(unsafe_code)]

/// Independent accumulators per chain: more than an FMA's latency (4 cycles) times the vector
/// instructions a core starts per cycle (2), so the chains never wait on each other.
const CHAINS: usize = 12;

/// Steps of the inner loop per timed run: ~1.5–5 ms a core, long enough for the clock, short
/// enough that the best of a few runs skips a neighbour's burst.
const STEPS: usize = 400_000;

/// Timed runs on every core, [`PAUSE`] apart; the best counts.
const RUNS: usize = 16;

/// Between runs: a shared machine's slow spells (on our 2-vCPU VMs, runs at exactly half the
/// rate, as if both vCPUs shared one core) come and go within tens of milliseconds, so runs
/// spread over ~0.2 s find the cores' rate where runs back to back can all fall in one spell.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// A peak in GFLOP/s (a multiply-add counted as 2) on every core of the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasuredPeak {
    /// f32 FMAs on the widest vectors this CPU has (AVX-512 or AVX2).
    pub f32_gflops: f64,
    /// f32 lanes of those vectors.
    pub f32_lanes: usize,
    /// AVX512-BF16's dot product (two multiply-adds of bf16 pairs per f32 lane), where present.
    pub bf16_gflops: Option<f64>,
    /// Threads that ran the chains at once.
    pub threads: usize,
}

/// The peak measured now, on every thread of the pool at once (~0.2 s; twice that with bf16);
/// `None` where no vector FMA is known to this crate (not x86-64, or no AVX2/FMA).
pub fn measure() -> Option<MeasuredPeak> {
    #[cfg(target_arch = "x86_64")]
    {
        let (f32_lanes, flop_per_step) = if std::arch::is_x86_feature_detected!("avx512f") {
            (16, 2 * 16 * CHAINS)
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            (8, 2 * 8 * CHAINS)
        } else {
            return None;
        };
        let f32_chains = move || {
            let sum = if f32_lanes == 16 {
                // SAFETY: AVX-512F was detected above; the chains touch registers only.
                unsafe { x86::fma_chains_avx512(STEPS) }
            } else {
                // SAFETY: AVX2 and FMA were detected above; the chains touch registers only.
                unsafe { x86::fma_chains_avx2(STEPS) }
            };
            std::hint::black_box(sum);
        };
        let f32_gflops = gflops_on_every_thread(flop_per_step, f32_chains);
        let bf16_gflops = super::bf16_gemm::supported().then(|| {
            gflops_on_every_thread(2 * 2 * 16 * CHAINS, || {
                // SAFETY: `bf16_gemm::supported()` found AVX-512F and AVX512-BF16; the chains
                // touch registers only.
                let sum = unsafe { x86::dot_chains_bf16(STEPS) };
                std::hint::black_box(sum);
            })
        });
        Some(MeasuredPeak {
            f32_gflops,
            f32_lanes,
            bf16_gflops,
            threads: rayon::current_num_threads(),
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// GFLOP/s of `chains` (`flop_per_step · STEPS` each call) run on every pool thread at once,
/// the best of [`RUNS`] runs after one warm-up.
#[cfg(target_arch = "x86_64")]
fn gflops_on_every_thread(flop_per_step: usize, chains: impl Fn() + Sync) -> f64 {
    use std::time::Instant;

    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for run in 0..=RUNS {
        let start = Instant::now();
        rayon::broadcast(|_| chains());
        let seconds = start.elapsed().as_secs_f64();
        if run > 0 {
            best = best.min(seconds);
        }
        std::thread::sleep(PAUSE);
    }
    (flop_per_step * STEPS * threads) as f64 / best / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_cvtss_f32, _mm256_fmadd_ps, _mm256_set1_ps, _mm512_add_ps,
        _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps,
    };

    use super::CHAINS;

    /// `steps` × [`CHAINS`] dependent-per-chain FMAs on 16 lanes; the chains' sum, so that
    /// none is optimized away. Multiplying by 1 − 2⁻²⁰ keeps the values finite.
    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_chains_avx512(steps: usize) -> f32 {
        let (factor, addend) = (_mm512_set1_ps(1.0 - 1.0 / 1_048_576.0), _mm512_set1_ps(1e-3));
        let mut chains: [__m512; CHAINS] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
        for _ in 0..steps {
            for chain in &mut chains {
                *chain = _mm512_fmadd_ps(*chain, factor, addend);
            }
        }
        let sum = chains
            .iter()
            .fold(_mm512_set1_ps(0.0), |sum, &chain| _mm512_add_ps(sum, chain));
        _mm512_reduce_add_ps(sum)
    }

    /// [`fma_chains_avx512`] on AVX2's 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_chains_avx2(steps: usize) -> f32 {
        let (factor, addend) = (_mm256_set1_ps(1.0 - 1.0 / 1_048_576.0), _mm256_set1_ps(1e-3));
        let mut chains: [__m256; CHAINS] = std::array::from_fn(|i| _mm256_set1_ps(i as f32));
        for _ in 0..steps {
            for chain in &mut chains {
                *chain = _mm256_fmadd_ps(*chain, factor, addend);
            }
        }
        let sum = chains
            .iter()
            .fold(_mm256_set1_ps(0.0), |sum, &chain| _mm256_add_ps(sum, chain));
        _mm256_cvtss_f32(sum)
    }

    /// `steps` × [`CHAINS`] bf16 dot products (32 multiply-adds each) into f32 accumulators:
    /// the bf16 GEMM's instruction. The pairs are 2⁻⁸ · 2⁻⁸, so the sums stay small.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn dot_chains_bf16(steps: usize) -> f32 {
        let eighth_power = _mm512_set1_ps(1.0 / 256.0);
        let pairs = _mm512_cvtne2ps_pbh(eighth_power, eighth_power);
        let mut chains: [__m512; CHAINS] = std::array::from_fn(|i| _mm512_set1_ps(i as f32));
        for _ in 0..steps {
            for chain in &mut chains {
                *chain = _mm512_dpbf16_ps(*chain, pairs, pairs);
            }
        }
        let sum = chains
            .iter()
            .fold(_mm512_set1_ps(0.0), |sum, &chain| _mm512_add_ps(sum, chain));
        _mm512_reduce_add_ps(sum)
    }
}

#[cfg(test)]
mod tests {
    /// Where the CPU has a vector FMA, the measured peak is at least one FMA per core every
    /// few cycles at 1 GHz, and at most two per cycle at 6 GHz: a measurement, not a constant.
    #[test]
    fn the_peak_is_measured_within_what_cores_can_do() {
        let Some(peak) = super::measure() else {
            return;
        };
        eprintln!("measured: {peak:?}");
        let per_thread = peak.f32_gflops / peak.threads as f64;
        let lanes = peak.f32_lanes as f64;
        assert!(
            per_thread > 2.0 * lanes * 0.25 && per_thread < 2.0 * lanes * 2.0 * 6.0,
            "{peak:?}"
        );
        if let Some(bf16) = peak.bf16_gflops {
            assert!(bf16 / peak.threads as f64 > per_thread * 0.5, "{peak:?}");
        }
    }
}
