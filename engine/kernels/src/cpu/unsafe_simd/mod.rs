//! The crate's one home for `unsafe` (lib.rs, "Unsafe code"): each module wraps an operation
//! with no safe path behind a safe function that checks what the operation relies on.

pub mod bf16_gemm;
pub mod f32_gemm;
pub mod gemm;
pub mod lanes;
pub(crate) mod panels;
pub mod peak;
