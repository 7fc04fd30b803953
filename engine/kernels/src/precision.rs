//! The arithmetic precision of the kernels' products, chosen once per process (`--precision`).
//! On the CPU tensors at the seam stay f32 whatever is chosen, so networks do not change; on a
//! GPU, f16 stores a whole animation model in f16 ([`storage_dtype`]), and the networks' code
//! follows its tensors' dtype.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::tensor::{DType, Device, FloatDType};

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
    /// On a GPU whose adapter has `SHADER_F16`: an animation model's weights and feature maps
    /// stored in f16 (half the bytes each kernel reads and writes: on WGSL that, not arithmetic,
    /// is what f16 saves), the kernels' sums in f32, keypoint arithmetic between the networks in
    /// f32 ([`half_precision_on`]). The CPU runs f32 under it.
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// A precision by its [`Precision::name`].
    fn from_str(text: &str) -> Result<Self, String> {
        [Precision::F32, Precision::Bf16, Precision::F16]
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| format!("unknown precision `{text}`: f32, bf16 (a CPU's) or f16 (a GPU's)"))
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

/// Whether this machine's CPU kernels run `precision` at its speed (f16 is a GPU's: whether a
/// device runs it is [`half_precision_on`]).
pub fn supports(precision: Precision) -> bool {
    match precision {
        Precision::F32 | Precision::F16 => true,
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
    match PRECISION.load(Ordering::Relaxed) {
        value if value == Precision::Bf16 as u8 => Precision::Bf16,
        value if value == Precision::F16 as u8 => Precision::F16,
        _ => Precision::F32,
    }
}

/// Whether an animation model on `device` stores its weights and feature maps in f16: f16
/// chosen, and `device` a CubeCL device (without autodiff) that computes in f16 (wgpu asks the
/// adapter for `SHADER_F16`).
pub fn half_precision_on(device: &Device) -> bool {
    precision() == Precision::F16
        && !device.is_autodiff()
        && crate::gpu::is_cube(device)
        && device.supports_dtype(DType::F16)
}

/// The dtype an animation model on `device` stores its weights and feature maps in: f16 where
/// [`half_precision_on`], else f32.
pub fn storage_dtype(device: &Device) -> FloatDType {
    if half_precision_on(device) {
        FloatDType::F16
    } else {
        FloatDType::F32
    }
}
