//! The layout both packed right operands share ([`super::f32_gemm::F32Columns`]'s f32 values,
//! [`super::bf16_gemm::Bf16Columns`]'s bf16 pairs): each `[depth, n]` matrix as panels of
//! [`PANEL`] columns, each `[depth][width]`, the panels at a fixed stride of `depth · PANEL`. No
//! `unsafe` here: the micro-kernels read the panels through slices.

/// Columns of a right-operand panel: four vectors of 16 f32 lanes.
pub(crate) const PANEL: usize = 64;

/// Packed values per matrix of `depth` rows (`k`, or bf16's pairs along `k`) and `n` columns:
/// every panel as wide as [`PANEL`], so that panels start at a fixed stride (the last holds
/// only its columns rounded up to 16).
pub(crate) fn per_matrix(depth: usize, n: usize) -> usize {
    n.div_ceil(PANEL) * depth * PANEL
}

/// Columns of the panel starting at column `first`, rounded up to whole vectors of 16.
pub(crate) fn panel_width(n: usize, first: usize) -> usize {
    (n - first).min(PANEL).next_multiple_of(16)
}

/// The panel starting at column `first` of one matrix's packed `values`: its width and
/// `[depth][width]` values.
pub(crate) fn panel<T>(values: &[T], depth: usize, n: usize, first: usize) -> (usize, &[T]) {
    let width = panel_width(n, first);
    (width, &values[first / PANEL * depth * PANEL..][..depth * width])
}
