//! Batched matrix products on our own buffers, by the `gemm` crate that flex's matmul runs.
//!
//! Through burn's tensors a Winograd block paid for four passes over memory besides its GEMMs:
//! its transformed tiles moved into a tensor, the product tensor zeroed when made, and copied
//! out again (its bytes are not aligned for f32), and every block's buffers allocated afresh
//! (`perf` on a vox-256 frame: `memset` and `memmove` 13% of the samples, 17% of a training
//! step's). Called directly, the GEMMs read and write buffers a convolution reuses block after
//! block. `gemm::gemm` takes raw pointers and strides; [`batched_gemm`] checks that every value
//! they reach lies in its slice.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// One operand of [`batched_gemm`]: matrices whose value `(i, j)` of matrix `b` is
/// `values[b·batch_stride + i·row_stride + j·column_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Matrices<'a> {
    pub values: &'a [f32],
    pub batch_stride: usize,
    pub row_stride: usize,
    pub column_stride: usize,
}

impl<'a> Matrices<'a> {
    /// Row-major matrices of `columns` columns, one after another.
    pub fn row_major(values: &'a [f32], rows: usize, columns: usize) -> Self {
        Self {
            values,
            batch_stride: rows * columns,
            row_stride: columns,
            column_stride: 1,
        }
    }

    /// The same values read as the transposed matrices.
    pub fn transposed(self) -> Self {
        Self {
            row_stride: self.column_stride,
            column_stride: self.row_stride,
            ..self
        }
    }

    /// Matrix `b` of `rows × columns` as a slice holding every value it reaches, or `None`
    /// where one lies beyond `values`.
    fn matrix(&self, b: usize, rows: usize, columns: usize) -> Option<&'a [f32]> {
        let start = b.checked_mul(self.batch_stride)?;
        if rows == 0 || columns == 0 {
            return Some(&[]);
        }
        let last = (rows - 1)
            .checked_mul(self.row_stride)?
            .checked_add((columns - 1).checked_mul(self.column_stride)?)?;
        self.values.get(start..=start.checked_add(last)?)
    }
}

/// `out[b] = lhs[b] · rhs[b]` (or `out[b] += …` with `accumulate`) for the `out.len() / (m·n)`
/// matrices of `out`, row-major `[m, n]` one after another; `lhs` `[m, k]`, `rhs` `[k, n]`. The
/// products run in parallel, each on one core.
///
/// # Panics
/// Where `out` does not hold whole `[m, n]` matrices or an operand does not reach as far as
/// the product needs.
pub fn batched_gemm(out: &mut [f32], accumulate: bool, lhs: Matrices, rhs: Matrices, [m, k, n]: [usize; 3]) {
    let size = m * n;
    if size == 0 {
        return;
    }
    assert_eq!(out.len() % size, 0, "whole [{m}, {n}] products");
    let stride = |s: usize| isize::try_from(s).expect("a stride within isize");
    let (lhs_rs, lhs_cs) = (stride(lhs.row_stride), stride(lhs.column_stride));
    let (rhs_rs, rhs_cs) = (stride(rhs.row_stride), stride(rhs.column_stride));
    let n_stride = stride(n);
    out.par_chunks_mut(size).enumerate().for_each(|(b, product)| {
        let a = lhs.matrix(b, m, k).expect("the left operand holds its matrices");
        let w = rhs.matrix(b, k, n).expect("the right operand holds its matrices");
        if k == 0 {
            if !accumulate {
                product.fill(0.0);
            }
            return;
        }
        // SAFETY: gemm reads `a` at `i·lhs_rs + j·lhs_cs` (i < m, j < k) and `w` at
        // `j·rhs_rs + l·rhs_cs` (j < k, l < n), all within the slices (`Matrices::matrix`
        // checked the last of each), and reads (with `accumulate`) and writes `product` at
        // `i·n + l`, within its m·n values. `product` is borrowed mutably, so it aliases
        // neither operand; `Parallelism::None` keeps the work on this thread, inside the
        // borrows.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                product.as_mut_ptr(),
                1,
                n_stride,
                accumulate,
                a.as_ptr(),
                lhs_cs,
                lhs_rs,
                w.as_ptr(),
                rhs_cs,
                rhs_rs,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    });
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;
    use crate::cpu::winograd::to_vec;
    use crate::test_support::uniform;

    /// Against burn's matmul: plain, the left operand transposed, accumulated into what was there.
    #[test]
    fn products_match_burns_matmul() {
        let device = Device::flex();
        let (batch, m, k, n) = (3, 37, 19, 21);
        let a = uniform([batch, m, k], 1.0);
        let w = uniform([batch, k, n], 1.0);
        let expected = to_vec(a.clone().matmul(w.clone()));
        let (a_values, w_values) = (to_vec(a.clone()), to_vec(w));
        let rhs = Matrices::row_major(&w_values, k, n);
        let mut out = vec![f32::NAN; batch * m * n];
        batched_gemm(&mut out, false, Matrices::row_major(&a_values, m, k), rhs, [m, k, n]);
        crate::test_support::assert_close(
            "product",
            Tensor::<3>::from_data(TensorData::new(out.clone(), [batch, m, n]), &device),
            Tensor::<3>::from_data(TensorData::new(expected.clone(), [batch, m, n]), &device),
            1e-5,
        );

        // aᵀ stored as [batch, k, m], read transposed; the products added to the first ones.
        let a_t = to_vec(a.swap_dims(1, 2));
        let lhs = Matrices::row_major(&a_t, k, m).transposed();
        batched_gemm(&mut out, true, lhs, rhs, [m, k, n]);
        let doubled: Vec<f32> = expected.iter().map(|v| 2.0 * v).collect();
        crate::test_support::assert_close(
            "accumulated",
            Tensor::<3>::from_data(TensorData::new(out, [batch, m, n]), &device),
            Tensor::<3>::from_data(TensorData::new(doubled, [batch, m, n]), &device),
            2e-5,
        );
    }

    #[test]
    #[should_panic(expected = "the right operand holds its matrices")]
    fn an_operand_too_short_is_refused() {
        let (a, w) = (vec![1.0; 2 * 4 * 3], vec![1.0; 2 * 3 * 5 - 1]);
        let mut out = vec![0.0; 2 * 4 * 5];
        batched_gemm(
            &mut out,
            false,
            Matrices::row_major(&a, 4, 3),
            Matrices::row_major(&w, 3, 5),
            [4, 3, 5],
        );
    }
}
