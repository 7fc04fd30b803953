//! The transforms of [`super::winograd`]'s F(4×4, 3×3), one invocation per tile and channel.
//! Interpolation points 0, ±1, ±2, ∞ (the CPU's choice, `cpu/winograd.rs`).
//!
//! Layouts: weights `U[ξ, o, c]`, input tiles `V[ξ, c, t]`, products `M[ξ, o, t]`, ξ = 6·row +
//! column of the 6×6 transformed tile, `t = (b, tile_y, tile_x)`; each 36-plane is contiguous so
//! that one batched matmul `M[ξ] = U[ξ] · V[ξ]` does all the multiplications, and neighbouring
//! invocations write neighbouring values.

use cubecl::prelude::*;

/// `Bᵀ a` of six values `a[start + k·step]` into `out[out_start + k·out_step]`.
#[cube]
fn input_transform_1d<F: Float>(
    a: &Array<F>,
    #[comptime] start: usize,
    #[comptime] step: usize,
    out: &mut Array<F>,
    #[comptime] out_start: usize,
    #[comptime] out_step: usize,
) {
    let a0 = a[start];
    let a1 = a[start + step];
    let a2 = a[start + 2 * step];
    let a3 = a[start + 3 * step];
    let a4 = a[start + 4 * step];
    let a5 = a[start + 5 * step];
    out[out_start] = F::new(4.0) * a0 - F::new(5.0) * a2 + a4;
    out[out_start + out_step] = F::new(-4.0) * (a1 + a2) + a3 + a4;
    out[out_start + 2 * out_step] = F::new(4.0) * (a1 - a2) - a3 + a4;
    out[out_start + 3 * out_step] = F::new(2.0) * (a3 - a1) - a2 + a4;
    out[out_start + 4 * out_step] = F::new(2.0) * (a1 - a3) - a2 + a4;
    out[out_start + 5 * out_step] = F::new(4.0) * a1 - F::new(5.0) * a3 + a5;
}

/// `Aᵀ m` of six values `m[start + k·step]` into four `out[out_start + k·out_step]`.
#[cube]
fn output_transform_1d<F: Float>(
    m: &Array<F>,
    #[comptime] start: usize,
    #[comptime] step: usize,
    out: &mut Array<F>,
    #[comptime] out_start: usize,
    #[comptime] out_step: usize,
) {
    let a0 = m[start];
    let a1 = m[start + step];
    let a2 = m[start + 2 * step];
    let a3 = m[start + 3 * step];
    let a4 = m[start + 4 * step];
    let a5 = m[start + 5 * step];
    let sum12 = a1 + a2;
    let diff12 = a1 - a2;
    let sum34 = a3 + a4;
    let diff34 = a3 - a4;
    out[out_start] = a0 + sum12 + sum34;
    out[out_start + out_step] = diff12 + F::new(2.0) * diff34;
    out[out_start + 2 * out_step] = sum12 + F::new(4.0) * sum34;
    out[out_start + 3 * out_step] = diff12 + F::new(8.0) * diff34 + a5;
}

/// `G g` of three values `g[start + k·step]` into six `out[out_start + k·out_step]`.
#[cube]
fn weight_transform_1d<F: Float>(
    g: &Array<F>,
    #[comptime] start: usize,
    #[comptime] step: usize,
    out: &mut Array<F>,
    #[comptime] out_start: usize,
    #[comptime] out_step: usize,
) {
    let a0 = g[start];
    let a1 = g[start + step];
    let a2 = g[start + 2 * step];
    let sixth = F::new(1.0 / 6.0);
    out[out_start] = F::new(0.25) * a0;
    out[out_start + out_step] = -sixth * (a0 + a1 + a2);
    out[out_start + 2 * out_step] = -sixth * (a0 - a1 + a2);
    out[out_start + 3 * out_step] = F::new(1.0 / 24.0) * a0 + F::new(1.0 / 12.0) * a1 + sixth * a2;
    out[out_start + 4 * out_step] = F::new(1.0 / 24.0) * a0 - F::new(1.0 / 12.0) * a1 + sixth * a2;
    out[out_start + 5 * out_step] = a2;
}

/// `U[ξ, o, c] = (G g Gᵀ)[ξ]` of the 3×3 filter `weight[o, c]`; one invocation per (o, c).
#[cube(launch)]
pub(super) fn weight_transform_kernel<F: Float>(
    weight: &Tensor<F>,
    transformed: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let channels = weight.shape(1);
    let plane = weight.shape(0) * channels;
    let index = ABSOLUTE_POS;
    if index >= plane {
        terminate!();
    }
    let base = (index / channels) * weight.stride(0) + (index % channels) * weight.stride(1);
    let mut g = Array::<F>::new(9usize);
    #[unroll]
    for row in 0..3usize {
        #[unroll]
        for column in 0..3usize {
            g[row * 3 + column] = weight[base + row * weight.stride(2) + column * weight.stride(3)];
        }
    }
    // G g: 6×3, column by column; then (G g) Gᵀ: 6×6, row by row.
    let mut half = Array::<F>::new(18usize);
    #[unroll]
    for column in 0..3usize {
        weight_transform_1d::<F>(&g, column, 3usize, &mut half, column, 3usize);
    }
    let mut u = Array::<F>::new(36usize);
    #[unroll]
    for row in 0..6usize {
        weight_transform_1d::<F>(&half, row * 3, 1usize, &mut u, row * 6, 1usize);
    }
    #[unroll]
    for xi in 0..36usize {
        transformed[xi * plane + index] = u[xi];
    }
}

/// `V[ξ, c, t] = (Bᵀ d B)[ξ]` of the 6×6 input patch `d` of tile `t` in channel `c` (zero outside
/// the image); one invocation per (c, t).
#[cube(launch)]
pub(super) fn input_transform_kernel<F: Float>(
    input: &Tensor<F>,
    tiles: &mut Tensor<F>,
    tiles_y: u32,
    tiles_x: u32,
    padding_y: u32,
    padding_x: u32,
    #[define(F)] _dtype: ElemType,
) {
    let count = tiles.shape(2);
    let plane = tiles.shape(1) * count;
    let index = ABSOLUTE_POS;
    if index >= plane {
        terminate!();
    }
    let channel = index / count;
    let tile = index % count;
    let tile_x = tile % tiles_x as usize;
    let rest = tile / tiles_x as usize;
    let tile_y = rest % tiles_y as usize;
    let image = rest / tiles_y as usize;
    let top = (tile_y * 4) as i32 - padding_y as i32;
    let left = (tile_x * 4) as i32 - padding_x as i32;
    let height = input.shape(2) as i32;
    let width = input.shape(3) as i32;
    let base = image * input.stride(0) + channel * input.stride(1);

    let mut d = Array::<F>::new(36usize);
    #[unroll]
    for row in 0..6usize {
        let y = top + row as i32;
        #[unroll]
        for column in 0..6usize {
            let x = left + column as i32;
            let mut value = F::new(0.0);
            if y >= 0 && y < height && x >= 0 && x < width {
                value = input[base + y as usize * input.stride(2) + x as usize * input.stride(3)];
            }
            d[row * 6 + column] = value;
        }
    }
    // Bᵀ d column by column, then (Bᵀ d) B row by row.
    let mut half = Array::<F>::new(36usize);
    #[unroll]
    for column in 0..6usize {
        input_transform_1d::<F>(&d, column, 6usize, &mut half, column, 6usize);
    }
    let mut v = Array::<F>::new(36usize);
    #[unroll]
    for row in 0..6usize {
        input_transform_1d::<F>(&half, row * 6, 1usize, &mut v, row * 6, 1usize);
    }
    #[unroll]
    for xi in 0..36usize {
        tiles[xi * plane + index] = v[xi];
    }
}

/// `y = Aᵀ M A` of tile `t` in output channel `o`, written where it falls inside the output
/// `[b, o, h, w]` (contiguous); one invocation per (o, t).
#[cube(launch)]
pub(super) fn output_transform_kernel<F: Float>(
    products: &Tensor<F>,
    output: &mut Tensor<F>,
    tiles_y: u32,
    tiles_x: u32,
    #[define(F)] _dtype: ElemType,
) {
    let count = products.shape(2);
    let out_channels = products.shape(1);
    let plane = out_channels * count;
    let index = ABSOLUTE_POS;
    if index >= plane {
        terminate!();
    }
    let channel = index / count;
    let tile = index % count;
    let tile_x = tile % tiles_x as usize;
    let rest = tile / tiles_x as usize;
    let tile_y = rest % tiles_y as usize;
    let image = rest / tiles_y as usize;

    let mut m = Array::<F>::new(36usize);
    #[unroll]
    for xi in 0..36usize {
        m[xi] = products[xi * plane + index];
    }
    // Aᵀ M column by column (4×6), then (Aᵀ M) A row by row (4×4).
    let mut half = Array::<F>::new(24usize);
    #[unroll]
    for column in 0..6usize {
        output_transform_1d::<F>(&m, column, 6usize, &mut half, column, 6usize);
    }
    let mut y = Array::<F>::new(16usize);
    #[unroll]
    for row in 0..4usize {
        output_transform_1d::<F>(&half, row * 6, 1usize, &mut y, row * 4, 1usize);
    }
    let height = output.shape(2);
    let width = output.shape(3);
    let base = (image * out_channels + channel) * height * width;
    let top = tile_y * 4;
    let left = tile_x * 4;
    #[unroll]
    for row in 0..4usize {
        #[unroll]
        for column in 0..4usize {
            if top + row < height && left + column < width {
                output[base + (top + row) * width + left + column] = y[row * 4 + column];
            }
        }
    }
}
