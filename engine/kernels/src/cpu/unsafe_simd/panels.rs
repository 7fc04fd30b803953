//! The layout both packed right operands share ([`super::f32_gemm::F32Columns`]'s f32 values,
//! [`super::bf16_gemm::Bf16Columns`]'s bf16 pairs): each `[depth, n]` matrix as panels of
//! `panel` columns (a multiple of 16), each `[depth][width]`, the panels at a fixed stride of
//! `depth · panel`. No `unsafe` here: the micro-kernels read the panels through slices.

/// Columns of a right-operand panel for AVX-512's micro-kernels: four vectors of 16 f32 lanes.
pub(crate) const PANEL: usize = 64;

/// Packed values per matrix of `depth` rows (`k`, or bf16's pairs along `k`) and `n` columns
/// in panels of `panel` columns: every panel as wide, so that panels start at a fixed stride
/// (the last holds only its columns rounded up to 16).
pub(crate) fn per_matrix(depth: usize, n: usize, panel: usize) -> usize {
    n.div_ceil(panel) * depth * panel
}

/// Columns of the panel starting at column `first`, rounded up to whole vectors of 16.
pub(crate) fn panel_width(n: usize, first: usize, panel: usize) -> usize {
    (n - first).min(panel).next_multiple_of(16)
}

/// The panel of `panel` columns starting at column `first` of one matrix's packed `values`: its
/// width and `[depth][width]` values.
pub(crate) fn panel<T>(values: &[T], depth: usize, n: usize, first: usize, panel: usize) -> (usize, &[T]) {
    let width = panel_width(n, first, panel);
    (width, &values[first / panel * depth * panel..][..depth * width])
}
