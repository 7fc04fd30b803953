//! Batched matrix products with bf16 operands and f32 accumulation, by AVX512-BF16's dot product
//! `vdpbf16ps`: each f32 lane adds the products of one pair of bf16 values from each operand, so
//! an instruction does 32 multiply-adds where an f32 FMA does 16 (on Zen 4, at the same rate).
//! Neither macerator nor the `gemm` crate has the instruction, so the micro-kernel is ours.
//!
//! Layout, so that the micro-kernel reads both operands in order: the left operand's rows are
//! packed as pairs of bf16 along `k` (one `u32` per pair, the even index in the low half, as
//! the instruction reads a 32-bit lane), broadcast one pair at a time; the right operand as
//! [`Bf16Columns`]: panels of [`PANEL`] columns, each `[pairs][columns]` of pairs, so a
//! vector holds one pair of 16 neighbouring columns.
#![allow(unsafe_code)]

use rayon::prelude::*;

use super::panels::{PANEL, panel, panel_width, per_matrix};
/// Rows of the left operand a micro-kernel call takes: with four column vectors, 24
/// accumulators, four loaded pairs and one broadcast fit AVX-512's 32 registers.
const ROWS: usize = 6;

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits: the rounding
/// `vcvtneps2bf16` does, in plain integer arithmetic so that it vectorizes anywhere.
#[inline(always)]
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // Quiet, and still a NaN after the low half is dropped.
        return (bits >> 16) as u16 | 0x40;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The f32 a bf16 stands for (exact).
#[inline(always)]
fn from_bf16(x: u16) -> f32 {
    f32::from_bits(u32::from(x) << 16)
}

/// Values `a`, `b` (`a` at the lower index along `k`) as one packed pair.
#[inline(always)]
fn pair(a: f32, b: f32) -> u32 {
    u32::from(to_bf16(a)) | u32::from(to_bf16(b)) << 16
}

/// Whether this CPU runs the bf16 dot product (AVX512-BF16); elsewhere [`batched_gemm_bf16`]
/// runs a portable loop with the same rounding, for tests, not for speed.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The right operands `[k, n]` of a batch of products, rounded to bf16 and packed for the
/// micro-kernel; made once per weight (half the f32 weights' bytes).
#[derive(Debug, Clone)]
pub struct Bf16Columns {
    values: Vec<u32>,
    k: usize,
    n: usize,
}

impl Bf16Columns {
    /// From `batch` row-major f32 matrices `[k, n]`, one after another.
    pub fn pack(matrices: &[f32], k: usize, n: usize) -> Self {
        let size = k * n;
        assert!(
            size > 0 && matrices.len().is_multiple_of(size),
            "whole [{k}, {n}] matrices"
        );
        let per_matrix = Self::per_matrix(k, n);
        let mut values = vec![0u32; matrices.len() / size * per_matrix];
        values
            .par_chunks_mut(per_matrix)
            .zip(matrices.par_chunks(size))
            .for_each(|(packed, matrix)| {
                for (panel, first) in (0..n).step_by(PANEL).enumerate() {
                    let width = panel_width(n, first, PANEL);
                    let packed = &mut packed[panel * k.div_ceil(2) * PANEL..];
                    for p in 0..k.div_ceil(2) {
                        let row = |r: usize| (r < k).then(|| &matrix[r * n + first..][..width.min(n - first)]);
                        let (even, odd) = (row(2 * p), row(2 * p + 1));
                        let out = &mut packed[p * width..][..width];
                        for (c, value) in out.iter_mut().enumerate().take(n - first) {
                            let at = |row: Option<&[f32]>| row.map_or(0.0, |r| r[c]);
                            *value = pair(at(even), at(odd));
                        }
                    }
                }
            });
        Self { values, k, n }
    }

    /// Packed values per matrix: [`super::panels`]' layout, its depth the pairs along `k`.
    fn per_matrix(k: usize, n: usize) -> usize {
        per_matrix(k.div_ceil(2), n, PANEL)
    }
}

/// `out[b] = lhs[b] · rhs[b]` for the matrices of `out`, row-major `[m, n]` one after another;
/// `lhs` row-major `[m, k]` f32 (rounded to bf16 here), `rhs` packed. Products run in parallel,
/// each on one core, summed in f32.
///
/// # Panics
/// Where `out` does not hold as many `[m, n]` matrices as `rhs`, or `lhs` fewer.
pub fn batched_gemm_bf16(out: &mut [f32], lhs: &[f32], rhs: &Bf16Columns, m: usize) {
    let (k, n) = (rhs.k, rhs.n);
    let batch = rhs.values.len() / Bf16Columns::per_matrix(k, n);
    assert_eq!(out.len(), batch * m * n, "[{batch}, {m}, {n}] products");
    assert!(lhs.len() >= batch * m * k, "[{batch}, {m}, {k}] left operands");
    if m == 0 {
        return;
    }
    let fast = supported();
    let pairs = k.div_ceil(2);
    out.par_chunks_mut(m * n)
        .zip(rhs.values.par_chunks(Bf16Columns::per_matrix(k, n)))
        .enumerate()
        .for_each_init(Vec::new, |rows, (b, (product, columns))| {
            // The left operand as pairs, its rows padded to whole micro-kernel calls.
            rows.clear();
            rows.resize(m.next_multiple_of(ROWS) * pairs, 0u32);
            for (packed, row) in rows
                .chunks_exact_mut(pairs)
                .zip(lhs[b * m * k..][..m * k].chunks_exact(k))
            {
                let mut done = 0;
                if fast {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `supported()` found AVX-512F and AVX512-BF16 on this CPU, the
                    // features `pack_avx512` is compiled for; its memory accesses are through
                    // slices.
                    unsafe {
                        done = x86::pack_avx512(row, packed);
                    }
                }
                let (whole, last) = row[2 * done..].split_at((k - 2 * done) / 2 * 2);
                for (p, two) in packed[done..].iter_mut().zip(whole.chunks_exact(2)) {
                    *p = pair(two[0], two[1]);
                }
                if let Some(&v) = last.first() {
                    packed[pairs - 1] = pair(v, 0.0);
                }
            }
            let operands = Operands {
                rows,
                columns,
                pairs,
                m,
                n,
            };
            if fast {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `supported()` found AVX-512F and AVX512-BF16 on this CPU, the features
                // `product_avx512` is compiled for; its memory accesses are through slices.
                unsafe {
                    x86::product_avx512(&operands, product)
                }
            } else {
                operands.product_portable(product);
            }
        });
}

/// One product's packed operands.
struct Operands<'a> {
    /// Left rows as pairs, `[m rounded up to ROWS][pairs]`.
    rows: &'a [u32],
    /// Right panels as [`Bf16Columns`] packs them.
    columns: &'a [u32],
    pairs: usize,
    m: usize,
    n: usize,
}

impl Operands<'_> {
    /// The panel starting at column `first`: its width and `[pairs][width]` values.
    fn panel(&self, first: usize) -> (usize, &[u32]) {
        panel(self.columns, self.pairs, self.n, first, PANEL)
    }

    /// The same sums in the instruction's order (the odd product, then the even, each rounded
    /// into the f32 sum), one value at a time.
    fn product_portable(&self, out: &mut [f32]) {
        for first in (0..self.n).step_by(PANEL) {
            let (width, panel) = self.panel(first);
            for i in 0..self.m {
                let row = &self.rows[i * self.pairs..][..self.pairs];
                for c in 0..(self.n - first).min(PANEL) {
                    let mut sum = 0.0f32;
                    for (p, &a) in row.iter().enumerate() {
                        let b = panel[p * width + c];
                        sum += from_bf16((a >> 16) as u16) * from_bf16((b >> 16) as u16);
                        sum += from_bf16(a as u16) * from_bf16(b as u16);
                    }
                    out[i * self.n + first + c] = sum;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_set1_epi32, _mm512_setzero_ps, _mm512_storeu_si512,
    };
    use std::mem::transmute;

    use super::super::lanes::avx512::store;
    use super::{Operands, PANEL, ROWS};

    /// The pairs of `row` 32 values at a time (`vcvtne2ps2bf16`: rounded to nearest even, as
    /// [`super::to_bf16`] does, but for inputs below f32's normal range, which it reads as
    /// zero), into `packed`; how many pairs it wrote (the rest are the caller's). In memory
    /// the pairs are the row's bf16 values in order: a pair's even value is its low half.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn pack_avx512(row: &[f32], packed: &mut [u32]) -> usize {
        let whole = (row.len() / 32).min(packed.len() / 16);
        for (values, out) in row.chunks_exact(32).zip(packed.chunks_exact_mut(16)).take(whole) {
            let (low, high) = values.split_at(16);
            // SAFETY: `low` is 16 f32, 64 bytes: the unaligned load reads those.
            let low = unsafe { _mm512_loadu_ps(low.as_ptr()) };
            // SAFETY: as for `low`.
            let high = unsafe { _mm512_loadu_ps(high.as_ptr()) };
            // The second operand's values fill the low half: `low` first in memory.
            let converted = _mm512_cvtne2ps_pbh(high, low);
            // SAFETY: both types are 64 bytes of plain bits.
            let pairs = unsafe { transmute::<__m512bh, __m512i>(converted) };
            // SAFETY: `out` is 16 u32 (64 bytes) borrowed mutably; the unaligned store writes
            // those and no others.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), pairs) };
        }
        16 * whole
    }

    /// Every `[ROWS × panel]` block of the product, each by [`block`] over all of `k`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn product_avx512(operands: &Operands, out: &mut [f32]) {
        for first in (0..operands.n).step_by(PANEL) {
            let (width, panel) = operands.panel(first);
            for row in (0..operands.m).step_by(ROWS) {
                let rows = &operands.rows[row * operands.pairs..][..ROWS * operands.pairs];
                let sums = match width / 16 {
                    1 => spread(block::<1>(rows, panel, operands.pairs)),
                    2 => spread(block::<2>(rows, panel, operands.pairs)),
                    3 => spread(block::<3>(rows, panel, operands.pairs)),
                    _ => block::<4>(rows, panel, operands.pairs),
                };
                let columns = (operands.n - first).min(PANEL);
                for (i, sums) in sums.iter().enumerate().take(operands.m - row) {
                    let dst = &mut out[(row + i) * operands.n + first..][..columns];
                    let mut values = [0.0f32; PANEL];
                    for (vector, &sum) in values.chunks_exact_mut(16).zip(sums) {
                        store(vector, sum);
                    }
                    dst.copy_from_slice(&values[..columns]);
                }
            }
        }
    }

    /// `V` vectors of sums per row, widened to four (the rest zero) for one write-out path.
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn spread<const V: usize>(sums: [[__m512; V]; ROWS]) -> [[__m512; 4]; ROWS] {
        sums.map(|row| std::array::from_fn(|j| if j < V { row[j] } else { _mm512_setzero_ps() }))
    }

    /// The sums of [`ROWS`] rows by `16·V` columns over all pairs: the micro-kernel. Per pair,
    /// `V` vectors of the panel and one broadcast pair per row, `ROWS·V` dot products into
    /// accumulators that stay in registers.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn block<const V: usize>(rows: &[u32], panel: &[u32], pairs: usize) -> [[__m512; V]; ROWS] {
        let width = 16 * V;
        let rows: [&[u32]; ROWS] = std::array::from_fn(|i| &rows[i * pairs..][..pairs]);
        let panel = &panel[..pairs * width];
        let mut sums = [[_mm512_setzero_ps(); V]; ROWS];
        for p in 0..pairs {
            let line = &panel[p * width..][..width];
            let columns: [__m512bh; V] = std::array::from_fn(|j| load_pairs(&line[16 * j..]));
            for (sums, row) in sums.iter_mut().zip(&rows) {
                let a = broadcast_pair(row[p]);
                for (sum, &b) in sums.iter_mut().zip(&columns) {
                    *sum = _mm512_dpbf16_ps(*sum, a, b);
                }
            }
        }
        sums
    }

    /// The first 16 pairs of `values` as one vector of 32 bf16. Panics where there are fewer.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn load_pairs(values: &[u32]) -> __m512bh {
        let values = &values[..16];
        // SAFETY: `values` holds exactly 16 u32, 64 bytes (checked above): the unaligned load
        // reads those and no others.
        let vector: __m512i = unsafe { _mm512_loadu_si512(values.as_ptr().cast()) };
        // SAFETY: both types are 64 bytes of plain bits, and every bit pattern is a valid vector
        // of bf16.
        unsafe { transmute::<__m512i, __m512bh>(vector) }
    }

    /// One pair in every lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn broadcast_pair(pair: u32) -> __m512bh {
        let vector = _mm512_set1_epi32(pair as i32);
        // SAFETY: as in `load_pairs`: 64 bytes of plain bits either way.
        unsafe { transmute::<__m512i, __m512bh>(vector) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::uniform;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: to the even one, 1.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to the even one, up.
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert_eq!(to_bf16(f32::MAX), 0x7f80, "rounds up to infinity");
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// The instruction's packing gives the portable rounding's pairs, in order, for normal
    /// values (ties included); below f32's normal range it reads zero.
    #[test]
    fn packing_by_the_instruction_matches_the_portable_rounding() {
        if !supported() {
            eprintln!("NOTE: no AVX512-BF16 here: the instruction's packing was not checked");
            return;
        }
        let row: Vec<f32> = (0..70u32)
            .map(|i| match i % 5 {
                0 => f32::from_bits(0x3f80_8000 + (i << 17)),
                1 => -(i as f32) * 0.37,
                2 => 1e-30 * i as f32,
                3 => 12345.678 / (i as f32 + 1.0),
                _ => f32::from_bits(0x3f81_8000),
            })
            .collect();
        let mut packed = vec![0u32; 35];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `supported()` found AVX-512F and AVX512-BF16 above.
        let done = unsafe { x86::pack_avx512(&row, &mut packed) };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        assert_eq!(done, 32, "two whole groups of 32 values");
        for (p, &value) in packed[..done].iter().enumerate() {
            assert_eq!(value, pair(row[2 * p], row[2 * p + 1]), "pair {p}");
        }
        let subnormal = f32::from_bits(0x007f_0000);
        assert_eq!(to_bf16(subnormal), 0x007f, "the portable rounding keeps it");
        let mut one = [0u32; 16];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            x86::pack_avx512(&[subnormal; 32], &mut one)
        };
        assert_eq!(one[0], 0, "a subnormal input is read as zero");
    }

    /// Every shape's edge: rows not a multiple of the micro-kernel's, odd `k`, columns in a
    /// partial vector and a partial panel, several matrices.
    #[test]
    fn products_match_the_bf16_rounded_f32_product() {
        for (batch, m, k, n) in [
            (3, 13, 37, 21),
            (2, 6, 64, 64),
            (2, 7, 5, 100),
            (1, 1, 1, 1),
            (2, 20, 130, 48),
        ] {
            let a = crate::cpu::winograd::to_vec(uniform([batch, m, k], 1.0));
            let w = crate::cpu::winograd::to_vec(uniform([batch, k, n], 1.0));
            let rounded = |v: &[f32]| v.iter().map(|&x| from_bf16(to_bf16(x))).collect::<Vec<_>>();
            let (ar, wr) = (rounded(&a), rounded(&w));
            let packed = Bf16Columns::pack(&w, k, n);
            let mut out = vec![f32::NAN; batch * m * n];
            batched_gemm_bf16(&mut out, &a, &packed, m);
            for b in 0..batch {
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|l| f64::from(ar[(b * m + i) * k + l]) * f64::from(wr[(b * k + l) * n + j]))
                            .sum();
                        let got = out[(b * m + i) * n + j];
                        assert!(
                            (f64::from(got) - exact).abs() <= 1e-5 * (k as f64).sqrt(),
                            "[{batch}, {m}, {k}, {n}] at ({b}, {i}, {j}): {got} against {exact}"
                        );
                    }
                }
            }
        }
    }

    /// The instruction against the portable loop: the same roundings, so the same sums (up to
    /// the instruction's flushing of subnormals, which these values never reach).
    #[test]
    fn the_instruction_matches_the_portable_loop() {
        if !supported() {
            eprintln!("no AVX512-BF16 on this CPU: the portable loop alone was checked");
            return;
        }
        let (m, k, n) = (11, 70, 80);
        let a = crate::cpu::winograd::to_vec(uniform([m, k], 1.0));
        let w = crate::cpu::winograd::to_vec(uniform([k, n], 1.0));
        let packed = Bf16Columns::pack(&w, k, n);
        let mut fast = vec![f32::NAN; m * n];
        batched_gemm_bf16(&mut fast, &a, &packed, m);
        let rows: Vec<u32> = a
            .chunks_exact(k)
            .flat_map(|row| (0..k.div_ceil(2)).map(|p| pair(row[2 * p], row.get(2 * p + 1).copied().unwrap_or(0.0))))
            .collect();
        let operands = Operands {
            rows: &rows,
            columns: &packed.values,
            pairs: k.div_ceil(2),
            m,
            n,
        };
        let mut portable = vec![f32::NAN; m * n];
        operands.product_portable(&mut portable);
        for (i, (f, p)) in fast.iter().zip(&portable).enumerate() {
            assert!((f - p).abs() <= 1e-5, "value {i}: {f} against {p}");
        }
    }
}
