//! Batched f32 matrix products whose right operands are packed once: the Winograd
//! convolutions' transformed weights, `[k = C_in, n = C_out]` per product. The `gemm` crate packs
//! both operands on every call; a convolution's weights do not change between calls, so they are
//! packed when they are transformed, and the left operand (the transformed tiles, row-major) is
//! read in place. The micro-kernel broadcasts one left value per row and multiplies it into four
//! AVX-512 vectors of a panel: [`ROWS`] × 64 sums in 24 registers, summed along `k` in order;
//! without AVX-512, two AVX2 vectors of a panel's 16 columns at a time: [`ROWS`] × 16 sums in
//! 12 of AVX2's 16 registers, the same sums in the same order.
//!
//! Measured on a 2-core Zen 4 (AMD EPYC family 25 model 17), alternated with the `gemm` crate
//! in one process: 36 products `[256 × 256] · [256 × 256]` (the bottleneck's) at 186–197
//! GFLOP/s against its 170–194, `[16 × 1024] · [1024 × 256]` (an hourglass's 16² maps: 16
//! tiles) at 145–160 against 63–70, where its packing of the weights outweighs the products;
//! a vox-256 animation frame 197–205 ms against 216–237 (`bench animate`, three pairs).
//! AVX2's, on a 2-core Zen 3 (family 25 model 1), whole layers (transforms included)
//! alternated with the `gemm` crate in one process, best of 24: the bottleneck's 256 → 256 at
//! 64² 10.97 and 14.01 ms against 12.92 and 15.30 (the machine's speed moved between the two
//! runs), the decoder's 256 → 128 at 128² 19.4–20.5 against 24.5–25.3, the dense motion's
//! 1024 → 256 at 16² 4.1–4.2 against 7.3–8.0.
#![allow(unsafe_code)]

use rayon::prelude::*;

use super::panels::{PANEL, panel, panel_width, per_matrix};

/// Columns of AVX2's micro-kernel block, two vectors of 8, and of the panels packed for it, so
/// that a block's lines of the panel are contiguous. Blocks read from 64-wide panels put their
/// `k` lines on a quarter of the first-level cache's sets, which could not keep them: 10–15%
/// slower than the `gemm` crate on the bottleneck's products (2-core Zen 3).
const AVX2_COLUMNS: usize = 16;

/// Rows of the left operand a micro-kernel call takes: with four column vectors, 24
/// accumulators, four loaded vectors and one broadcast fit AVX-512's 32 registers.
const ROWS: usize = 6;

/// Whether this CPU runs a micro-kernel (AVX-512F, or AVX2 with FMA); elsewhere
/// [`batched_gemm_packed`] runs a portable loop with the same sums, for tests, not for speed
/// (callers keep the `gemm` crate).
pub fn supported() -> bool {
    Kernel::fastest() != Kernel::Portable
}

/// The ways a product is computed, each giving the same sums bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Six rows by a whole panel, four vectors of 16 (AVX-512F).
    Avx512,
    /// Six rows by 16 columns of a panel, two vectors of 8 (AVX2 and FMA).
    Avx2,
    /// One value at a time.
    Portable,
}

impl Kernel {
    /// Whether this CPU has the kernel's instructions.
    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected;
            match self {
                Kernel::Avx512 => is_x86_feature_detected!("avx512f"),
                Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                Kernel::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernel::Portable
        }
    }

    /// Columns per panel of the right operands the kernel reads best.
    fn panel(self) -> usize {
        match self {
            Kernel::Avx2 => AVX2_COLUMNS,
            Kernel::Avx512 | Kernel::Portable => PANEL,
        }
    }

    /// The widest kernel this CPU runs.
    fn fastest() -> Self {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .find(|kernel| kernel.available())
            .unwrap_or(Kernel::Portable)
    }
}

/// The right operands `[k, n]` of a batch of products, packed for the micro-kernel in
/// [`super::panels`]' layout (depth `k`; zero beyond `n`), in panels as wide as this CPU's
/// micro-kernel reads (every kernel reads either width).
#[derive(Debug, Clone)]
pub struct F32Columns {
    values: Vec<f32>,
    k: usize,
    n: usize,
    /// Columns per panel.
    panel: usize,
}

impl F32Columns {
    /// Zeroed room for `batch` matrices `[k, n]`, to be written through
    /// [`F32Columns::rows_mut`].
    pub fn zeroed(batch: usize, k: usize, n: usize) -> Self {
        Self::zeroed_in_panels(batch, k, n, Kernel::fastest().panel())
    }

    fn zeroed_in_panels(batch: usize, k: usize, n: usize, panel: usize) -> Self {
        Self {
            values: crate::cpu::buffer::zeroed(batch * per_matrix(k, n, panel)),
            k,
            n,
            panel,
        }
    }

    /// Columns per panel: the width of each segment of [`F32Columns::rows_mut`]'s rows but the
    /// last.
    pub fn panel_columns(&self) -> usize {
        self.panel
    }

    /// From `batch` row-major matrices `[k, n]`, one after another.
    pub fn pack(matrices: &[f32], k: usize, n: usize) -> Self {
        let size = k * n;
        assert!(
            size > 0 && matrices.len().is_multiple_of(size),
            "whole [{k}, {n}] matrices"
        );
        Self::pack_in_panels(matrices, k, n, Kernel::fastest().panel())
    }

    fn pack_in_panels(matrices: &[f32], k: usize, n: usize, panel: usize) -> Self {
        let mut packed = Self::zeroed_in_panels(matrices.len() / (k * n), k, n, panel);
        let mut rows = packed.rows_mut();
        rows.par_iter_mut()
            .zip(matrices.par_chunks(n))
            .for_each(|(row, values)| {
                for (first, segment) in (0..n).step_by(panel).zip(row.iter_mut()) {
                    let columns = (n - first).min(panel);
                    segment[..columns].copy_from_slice(&values[first..][..columns]);
                }
            });
        drop(rows);
        packed
    }

    /// Every row of every matrix (`batch · k` of them, in order), each as its panels'
    /// segments: segment `s` holds columns `[s·panel, s·panel + width)` for the
    /// [`F32Columns::panel_columns`] `panel` (the columns past `n` stay zero). A writer fills a
    /// matrix row by row as it would a row-major one.
    pub fn rows_mut(&mut self) -> Vec<Vec<&mut [f32]>> {
        let (k, n, columns) = (self.k, self.n, self.panel);
        let per_matrix = per_matrix(k, n, columns);
        let batch = self.values.len() / per_matrix.max(1);
        let mut rows: Vec<Vec<&mut [f32]>> = (0..batch * k)
            .map(|_| Vec::with_capacity(n.div_ceil(columns)))
            .collect();
        for (b, matrix) in self.values.chunks_mut(per_matrix.max(1)).enumerate() {
            for (first, panel) in (0..n).step_by(columns).zip(matrix.chunks_mut(k * columns)) {
                let width = panel_width(n, first, columns);
                for (r, segment) in panel[..k * width].chunks_exact_mut(width).enumerate() {
                    rows[b * k + r].push(segment);
                }
            }
        }
        rows
    }
}

/// `out[b] = lhs[b] · rhs[b]` for the matrices of `out`, row-major `[m, n]` one after another;
/// `lhs` row-major `[m, k]` one after another, `rhs` packed. Products run in parallel, each on
/// one core, each sum in order along `k`.
///
/// # Panics
/// Where `out` does not hold as many `[m, n]` matrices as `rhs`, or `lhs` fewer.
pub fn batched_gemm_packed(out: &mut [f32], lhs: &[f32], rhs: &F32Columns, m: usize) {
    let batch = rhs.values.len() / per_matrix(rhs.k, rhs.n, rhs.panel).max(1);
    assert_eq!(out.len(), batch * m * rhs.n, "[{batch}, {m}, {}] products", rhs.n);
    batched_gemm_packed_at(out, lhs, rhs, m, &(0..batch).collect::<Vec<_>>());
}

/// [`batched_gemm_packed`] of the matrices `at` of a batch only: `out[at[i]] = lhs[at[i]] ·
/// rhs[i]`, `rhs` holding one matrix per entry of `at`; the other products of `out` are left as
/// they were. (Winograd's planes that are zero for every tile: [`crate::cpu::winograd`].)
///
/// # Panics
/// Where an entry of `at` is repeated or past the batch that `out` holds.
pub fn batched_gemm_packed_at(out: &mut [f32], lhs: &[f32], rhs: &F32Columns, m: usize, at: &[usize]) {
    let (k, n) = (rhs.k, rhs.n);
    let per_matrix = per_matrix(k, n, rhs.panel);
    assert_eq!(rhs.values.len(), at.len() * per_matrix, "a right operand per product");
    if m == 0 || n == 0 {
        return;
    }
    let mut products: Vec<Option<&mut [f32]>> = out.chunks_mut(m * n).map(Some).collect();
    let chosen: Vec<(usize, &mut [f32])> = at
        .iter()
        .map(|&b| (b, products[b].take().expect("each product of the batch once")))
        .collect();
    let batch = at.iter().max().map_or(0, |&b| b + 1);
    assert!(lhs.len() >= batch * m * k, "[{batch}, {m}, {k}] left operands");
    // The rows a last, partial group of ROWS reads in place of the missing ones.
    let zeros = vec![0.0f32; k];
    chosen
        .into_par_iter()
        .zip(rhs.values.par_chunks(per_matrix.max(1)))
        .for_each(|((b, product), columns)| {
            let operands = Operands {
                rows: &lhs[b * m * k..][..m * k],
                stride: k,
                zeros: &zeros,
                columns,
                panel: rhs.panel,
                packed_depth: k,
                depth_start: 0,
                k,
                m,
                n,
                accumulate: false,
            };
            operands.product(product);
        });
}

/// `out = lhs · rhs[depth]` (`[m, n]`, row-major), or `out += …` with `accumulate`, on the
/// calling thread, for one packed right operand: the product over a block `depth` of its rows,
/// so that a long `k` is summed in blocks whose panels stay in cache while every row of the left
/// operand passes them. Row `i` of the left operand is `lhs[i·stride..][..depth.len()]` (the
/// block's columns of a wider row-major matrix).
///
/// # Panics
/// Where `rhs` is not one matrix, `depth` reaches past its rows, `out` is not `[m, n]` or `lhs`
/// lacks a row.
pub fn gemm_packed_block(
    out: &mut [f32],
    lhs: &[f32],
    stride: usize,
    rhs: &F32Columns,
    depth: std::ops::Range<usize>,
    accumulate: bool,
) {
    let (packed_depth, n) = (rhs.k, rhs.n);
    assert_eq!(
        rhs.values.len(),
        per_matrix(packed_depth, n, rhs.panel),
        "one packed matrix"
    );
    assert!(
        depth.start <= depth.end && depth.end <= packed_depth,
        "{depth:?} of {packed_depth} rows"
    );
    assert!(n > 0 && out.len().is_multiple_of(n), "[m, {n}] sums");
    let (m, k) = (out.len() / n, depth.len());
    if m == 0 || k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    assert!(
        stride >= k && lhs.len() >= (m - 1) * stride + k,
        "{m} rows of {k} left values"
    );
    Operands {
        rows: lhs,
        stride,
        zeros: &vec![0.0f32; k],
        columns: &rhs.values,
        panel: rhs.panel,
        packed_depth,
        depth_start: depth.start,
        k,
        m,
        n,
        accumulate,
    }
    .product(out);
}

/// One product's operands.
struct Operands<'a> {
    /// Left rows, `k` values each, `stride` apart.
    rows: &'a [f32],
    stride: usize,
    /// `k` zeros.
    zeros: &'a [f32],
    /// Right panels as [`F32Columns`] packs them, `packed_depth` rows each, of which rows
    /// `[depth_start, depth_start + k)` take part.
    columns: &'a [f32],
    /// Columns per panel.
    panel: usize,
    packed_depth: usize,
    depth_start: usize,
    k: usize,
    m: usize,
    n: usize,
    /// The sums are added to the output's values rather than written over them.
    accumulate: bool,
}

impl Operands<'_> {
    /// `out` (`[m, n]`) by the widest micro-kernel the CPU runs, else the portable loop.
    fn product(&self, out: &mut [f32]) {
        self.product_by(Kernel::fastest(), out);
    }

    /// `out` (`[m, n]`) by `kernel`.
    ///
    /// # Panics
    /// Where this CPU lacks the kernel's instructions.
    fn product_by(&self, kernel: Kernel, out: &mut [f32]) {
        assert!(kernel.available(), "{kernel:?} on a CPU without its instructions");
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` found AVX-512F on this CPU, the feature `product_avx512`
            // is compiled for; its memory accesses are through slices.
            Kernel::Avx512 => unsafe { x86::product_avx512(self, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available()` found AVX2 and FMA on this CPU, the features `product_avx2`
            // is compiled for; its memory accesses are through slices.
            Kernel::Avx2 => unsafe { x86::product_avx2(self, out) },
            _ => self.product_portable(out),
        }
    }

    /// The panel starting at column `first`: its width and the `[k][width]` values of the
    /// block's rows.
    fn panel(&self, first: usize) -> (usize, &[f32]) {
        let (width, values) = panel(self.columns, self.packed_depth, self.n, first, self.panel);
        (width, &values[self.depth_start * width..][..self.k * width])
    }

    /// Rows `[first, first + ROWS)` of the left operand, each `k` long; the rows past `m` read
    /// as zeros.
    fn group(&self, first: usize) -> [&[f32]; ROWS] {
        std::array::from_fn(|i| {
            let row = first + i;
            if row < self.m {
                &self.rows[row * self.stride..][..self.k]
            } else {
                self.zeros
            }
        })
    }

    /// The same sums in the micro-kernel's order, one value at a time.
    fn product_portable(&self, out: &mut [f32]) {
        for first in (0..self.n).step_by(self.panel) {
            let (width, panel) = self.panel(first);
            for i in 0..self.m {
                let row = &self.rows[i * self.stride..][..self.k];
                for c in 0..(self.n - first).min(self.panel) {
                    let mut sum = 0.0f32;
                    for (p, &a) in row.iter().enumerate() {
                        sum = a.mul_add(panel[p * width + c], sum);
                    }
                    let at = &mut out[i * self.n + first + c];
                    *at = if self.accumulate { *at + sum } else { sum };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm512_add_ps,
        _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    use super::super::lanes::avx2;
    use super::super::lanes::avx512::{load, store};
    use super::{AVX2_COLUMNS, Operands, PANEL, ROWS};

    /// Every `[ROWS × 16]` block of the product, each by [`block_avx2`] over all of `k`: a
    /// panel's 16 columns at a time, every group of rows passing them, so that the block's
    /// lines of the panel (`k` of 64 bytes) stay in the first-level cache while the rows stream.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn product_avx2(operands: &Operands, out: &mut [f32]) {
        let n = operands.n;
        for first in (0..n).step_by(operands.panel) {
            let (width, panel) = operands.panel(first);
            for column in (0..width).step_by(AVX2_COLUMNS) {
                for row in (0..operands.m).step_by(ROWS) {
                    let target = Target {
                        rows: (operands.m - row).min(ROWS),
                        n,
                        first: first + column,
                        accumulate: operands.accumulate,
                    };
                    let sums = block_avx2(operands.group(row), panel, width, column);
                    write_avx2(sums, &mut out[row * n..], target);
                }
            }
        }
    }

    /// The sums of [`ROWS`] rows by the 16 columns from `column` of a panel `width` wide, over
    /// all of `k`: per step along `k`, two vectors of the panel's line and one broadcast value
    /// per row, twelve fused multiply-adds into accumulators that stay in registers.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn block_avx2(
        [r0, r1, r2, r3, r4, r5]: [&[f32]; ROWS],
        panel: &[f32],
        width: usize,
        column: usize,
    ) -> [[__m256; 2]; ROWS] {
        let mut sums = [[_mm256_setzero_ps(); 2]; ROWS];
        let steps = panel
            .chunks_exact(width)
            .zip(r0)
            .zip(r1)
            .zip(r2)
            .zip(r3)
            .zip(r4)
            .zip(r5);
        for ((((((line, &x0), &x1), &x2), &x3), &x4), &x5) in steps {
            let line = &line[column..][..AVX2_COLUMNS];
            let columns = [avx2::load(line), avx2::load(&line[8..])];
            for (sums, x) in sums.iter_mut().zip([x0, x1, x2, x3, x4, x5]) {
                let x = _mm256_set1_ps(x);
                for (sum, &b) in sums.iter_mut().zip(&columns) {
                    *sum = _mm256_fmadd_ps(x, b, *sum);
                }
            }
        }
        sums
    }

    /// [`write`] for an AVX2 block's sums.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn write_avx2(sums: [[__m256; 2]; ROWS], out: &mut [f32], target: Target) {
        let Target {
            rows,
            n,
            first,
            accumulate,
        } = target;
        let columns = (n - first).min(AVX2_COLUMNS);
        for (i, sums) in sums.iter().enumerate().take(rows) {
            let dst = &mut out[i * n + first..][..columns];
            if columns == AVX2_COLUMNS {
                for (chunk, &sum) in dst.chunks_exact_mut(8).zip(sums) {
                    let sum = if accumulate {
                        _mm256_add_ps(avx2::load(chunk), sum)
                    } else {
                        sum
                    };
                    avx2::store(chunk, sum);
                }
            } else {
                let mut values = [0.0f32; AVX2_COLUMNS];
                for (chunk, &sum) in values.chunks_exact_mut(8).zip(sums) {
                    avx2::store(chunk, sum);
                }
                for (d, &v) in dst.iter_mut().zip(&values) {
                    *d = if accumulate { *d + v } else { v };
                }
            }
        }
    }

    /// Every `[ROWS × panel]` block of the product, each by [`block`] over all of `k`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn product_avx512(operands: &Operands, out: &mut [f32]) {
        let n = operands.n;
        for first in (0..n).step_by(operands.panel) {
            let (width, panel) = operands.panel(first);
            for row in (0..operands.m).step_by(ROWS) {
                let group = operands.group(row);
                let rows = (operands.m - row).min(ROWS);
                let out = &mut out[row * n..];
                let target = Target {
                    rows,
                    n,
                    first,
                    accumulate: operands.accumulate,
                };
                match width / 16 {
                    1 => write(block::<1>(group, panel), out, target),
                    2 => write(block::<2>(group, panel), out, target),
                    3 => write(block::<3>(group, panel), out, target),
                    _ => write(block::<4>(group, panel), out, target),
                }
            }
        }
    }

    /// The sums of [`ROWS`] rows by `16·V` columns over all of `k`: the micro-kernel. Per
    /// step along `k`, `V` vectors of the panel and one broadcast value per row, `ROWS·V`
    /// fused multiply-adds into accumulators that stay in registers. The rows are walked as
    /// iterators beside the panel's lines, so no index is checked in the loop.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn block<const V: usize>([r0, r1, r2, r3, r4, r5]: [&[f32]; ROWS], panel: &[f32]) -> [[__m512; V]; ROWS] {
        let mut sums = [[_mm512_setzero_ps(); V]; ROWS];
        let steps = panel
            .chunks_exact(16 * V)
            .zip(r0)
            .zip(r1)
            .zip(r2)
            .zip(r3)
            .zip(r4)
            .zip(r5);
        for ((((((line, &x0), &x1), &x2), &x3), &x4), &x5) in steps {
            let columns: [__m512; V] = std::array::from_fn(|j| load(&line[16 * j..]));
            for (sums, x) in sums.iter_mut().zip([x0, x1, x2, x3, x4, x5]) {
                let x = _mm512_set1_ps(x);
                for (sum, &b) in sums.iter_mut().zip(&columns) {
                    *sum = _mm512_fmadd_ps(x, b, *sum);
                }
            }
        }
        sums
    }

    /// Where a block's sums go: its first `rows` rows, into rows `n` apart from column `first`.
    #[derive(Clone, Copy)]
    struct Target {
        rows: usize,
        n: usize,
        first: usize,
        /// Added to the values there rather than written over them.
        accumulate: bool,
    }

    /// The first `rows` rows of `sums` into `out` as `target` says, the columns past `n`
    /// dropped.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn write<const V: usize>(sums: [[__m512; V]; ROWS], out: &mut [f32], target: Target) {
        let Target {
            rows,
            n,
            first,
            accumulate,
        } = target;
        let columns = (n - first).min(16 * V);
        for (i, sums) in sums.iter().enumerate().take(rows) {
            let dst = &mut out[i * n + first..][..columns];
            if columns == 16 * V {
                for (chunk, &sum) in dst.chunks_exact_mut(16).zip(sums) {
                    let sum = if accumulate {
                        _mm512_add_ps(load(chunk), sum)
                    } else {
                        sum
                    };
                    store(chunk, sum);
                }
            } else {
                let mut values = [0.0f32; PANEL];
                for (chunk, &sum) in values.chunks_exact_mut(16).zip(sums) {
                    store(chunk, sum);
                }
                for (d, &v) in dst.iter_mut().zip(&values) {
                    *d = if accumulate { *d + v } else { v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::winograd::to_vec;
    use crate::test_support::uniform;

    /// The SIMD kernels this CPU runs, each to be checked against the portable loop (the
    /// fastest also runs through the public functions).
    fn simd_kernels() -> Vec<Kernel> {
        let kernels: Vec<Kernel> = [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|kernel| kernel.available())
            .collect();
        if kernels.is_empty() {
            eprintln!("NOTE: neither AVX-512F nor AVX2 with FMA here: only the portable loop was checked");
        }
        kernels
    }

    /// Against the sums in f64: rows not a multiple of the micro-kernel's, columns in a partial
    /// vector and a partial panel, `k` of one, several matrices; by each instruction set the
    /// CPU has, and by the portable loop.
    #[test]
    fn products_match_the_f64_product() {
        let kernels = simd_kernels();
        for (batch, m, k, n) in [
            (3, 13, 37, 21),
            (2, 6, 64, 64),
            (2, 7, 5, 100),
            (1, 1, 1, 1),
            (2, 20, 130, 48),
            (1, 16, 256, 200),
        ] {
            let a = to_vec(uniform([batch, m, k], 1.0));
            let w = to_vec(uniform([batch, k, n], 1.0));
            for panel in [PANEL, AVX2_COLUMNS] {
                let packed = F32Columns::pack_in_panels(&w, k, n, panel);
                let mut out = vec![f32::NAN; batch * m * n];
                batched_gemm_packed(&mut out, &a, &packed, m);
                let mut portable = vec![f32::NAN; batch * m * n];
                let mut by_kernel = vec![vec![f32::NAN; batch * m * n]; kernels.len()];
                for b in 0..batch {
                    let operands = Operands {
                        rows: &a[b * m * k..][..m * k],
                        stride: k,
                        zeros: &vec![0.0; k],
                        columns: &packed.values[b * per_matrix(k, n, panel)..][..per_matrix(k, n, panel)],
                        panel,
                        packed_depth: k,
                        depth_start: 0,
                        k,
                        m,
                        n,
                        accumulate: false,
                    };
                    operands.product_portable(&mut portable[b * m * n..][..m * n]);
                    for (&kernel, out) in kernels.iter().zip(&mut by_kernel) {
                        operands.product_by(kernel, &mut out[b * m * n..][..m * n]);
                    }
                }
                for b in 0..batch {
                    for i in 0..m {
                        for j in 0..n {
                            let exact: f64 = (0..k)
                                .map(|l| f64::from(a[(b * m + i) * k + l]) * f64::from(w[(b * k + l) * n + j]))
                                .sum();
                            let at = (b * m + i) * n + j;
                            let tolerance = 1e-6 * (k as f64).sqrt().max(1.0) * 4.0;
                            assert!(
                                (f64::from(out[at]) - exact).abs() <= tolerance,
                                "[{batch}, {m}, {k}, {n}] ({b}, {i}, {j}): {} against {exact}",
                                out[at]
                            );
                            // The same fused multiply-adds in the same order.
                            assert_eq!(out[at], portable[at], "({b}, {i}, {j}) portable");
                            for (kernel, out) in kernels.iter().zip(&by_kernel) {
                                assert_eq!(out[at], portable[at], "({b}, {i}, {j}) {kernel:?}, panels of {panel}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// A product summed in blocks of its depth, the left rows a column block of a wider
    /// matrix, matches the f64 product; each instruction set and the portable loop agree bit
    /// for bit.
    #[test]
    fn blocks_of_the_depth_add_up_to_the_product() {
        let kernels = simd_kernels();
        for (m, k, n, wide, block) in [
            (13, 37, 21, 50, 10),
            (6, 64, 64, 64, 64),
            (20, 300, 70, 310, 128),
            (1, 5, 1, 5, 2),
        ] {
            let a = to_vec(uniform([m, wide], 1.0));
            let w = to_vec(uniform([k, n], 1.0));
            for panel in [PANEL, AVX2_COLUMNS] {
                let packed = F32Columns::pack_in_panels(&w, k, n, panel);
                let (mut out, mut portable) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                let mut by_kernel = vec![vec![f32::NAN; m * n]; kernels.len()];
                for start in (0..k).step_by(block) {
                    let depth = start..(start + block).min(k);
                    gemm_packed_block(&mut out, &a[start..], wide, &packed, depth.clone(), start > 0);
                    let operands = Operands {
                        rows: &a[start..],
                        stride: wide,
                        zeros: &vec![0.0; depth.len()],
                        columns: &packed.values,
                        panel,
                        packed_depth: k,
                        depth_start: start,
                        k: depth.len(),
                        m,
                        n,
                        accumulate: start > 0,
                    };
                    operands.product_portable(&mut portable);
                    for (&kernel, out) in kernels.iter().zip(&mut by_kernel) {
                        operands.product_by(kernel, out);
                    }
                }
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|l| f64::from(a[i * wide + l]) * f64::from(w[l * n + j]))
                            .sum();
                        let at = i * n + j;
                        assert!(
                            (f64::from(out[at]) - exact).abs() <= 4e-6 * (k as f64).sqrt(),
                            "[{m}, {k}, {n}] ({i}, {j}): {} against {exact}",
                            out[at]
                        );
                        assert_eq!(out[at], portable[at], "({i}, {j}) portable");
                        for (kernel, out) in kernels.iter().zip(&by_kernel) {
                            assert_eq!(out[at], portable[at], "({i}, {j}) {kernel:?}, panels of {panel}");
                        }
                    }
                }
            }
        }
    }

    /// Rows written through `rows_mut` pack as `pack` does, in either width of panels.
    #[test]
    fn rows_written_in_place_pack_as_a_matrix_does() {
        let (batch, k, n) = (2, 5, 150);
        let w = to_vec(uniform([batch, k, n], 1.0));
        for panel in [PANEL, AVX2_COLUMNS] {
            let packed = F32Columns::pack_in_panels(&w, k, n, panel);
            let mut written = F32Columns::zeroed_in_panels(batch, k, n, panel);
            assert_eq!(written.panel_columns(), panel);
            for (row, values) in written.rows_mut().into_iter().zip(w.chunks(n)) {
                for (s, segment) in row.into_iter().enumerate() {
                    let columns = (n - s * panel).min(panel);
                    segment[..columns].copy_from_slice(&values[s * panel..][..columns]);
                }
            }
            assert_eq!(written.values, packed.values);
        }
    }
}
