//! The arithmetic precision of the kernels' products, chosen once per process (`--precision`):
//! tensors at the seam stay f32 whatever is chosen, so networks do not change.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// What the convolutions' matrix products multiply in; sums are f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Precision {
    /// f32 throughout: the reference's arithmetic.
    #[default]
    F32,
    /// The Winograd products of blocks that tolerate it (residual branches:
    /// [`crate::Fused::tolerates_reduced_precision`]) on bf16 operands (8 bits of mantissa)
    /// with f32 sums, by AVX512-BF16's dot product; everything else f32. Approximate: frames
    /// move by up to a few 255ths (README, "Precision").
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// A precision by its [`Precision::name`].
    fn from_str(text: &str) -> Result<Self, String> {
        [Precision::F32, Precision::Bf16]
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| format!("unknown precision `{text}`: f32 or bf16"))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A precision this machine cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedPrecision(pub Precision);

impl fmt::Display for UnsupportedPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--precision {} needs a CPU with AVX512-BF16 (Zen 4 and later, Intel since Cooper Lake); this one has none: use f32",
            self.0
        )
    }
}

impl std::error::Error for UnsupportedPrecision {}

static PRECISION: AtomicU8 = AtomicU8::new(Precision::F32 as u8);

/// Whether this machine's CPU kernels run `precision` at its speed.
pub fn supports(precision: Precision) -> bool {
    match precision {
        Precision::F32 => true,
        Precision::Bf16 => crate::cpu::unsafe_simd::bf16_gemm::supported(),
    }
}

/// Sets the precision from now on, or refuses one this CPU has no instructions for.
pub fn set_precision(precision: Precision) -> Result<(), UnsupportedPrecision> {
    if !supports(precision) {
        return Err(UnsupportedPrecision(precision));
    }
    PRECISION.store(precision as u8, Ordering::Relaxed);
    Ok(())
}

/// The precision chosen (by default f32).
pub fn precision() -> Precision {
    if PRECISION.load(Ordering::Relaxed) == Precision::Bf16 as u8 {
        Precision::Bf16
    } else {
        Precision::F32
    }
}
