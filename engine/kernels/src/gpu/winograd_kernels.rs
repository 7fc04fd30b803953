//! The transforms of [`super::winograd`]'s F(4×4, 3×3), one invocation per tile and channel.
//! Interpolation points 0, ±a, ±b, ∞ (`pa`, `pb`: 1 and 2 in f32; see [`super::winograd::points`]).
//! Tensors are stored in `F` (f32, or f16 for a model stored so); the transforms' arithmetic is
//! f32 either way.
//!
//! Layouts: weights `U[ξ, o, c]`, input tiles `V[ξ, c, t]`, products `M[ξ, o, t]`, ξ = 6·row +
//! column of the 6×6 transformed tile, `t = (b, tile_y, tile_x)`; each 36-plane is contiguous so
//! that one batched matmul `M[ξ] = U[ξ] · V[ξ]` does all the multiplications, and neighbouring
//! invocations write neighbouring values.

use cubecl::prelude::*;

/// `Bᵀ a` of six values `a[start + k·step]` into `out[out_start + k·out_step]`, for the points
/// 0, ±`pa`, ±`pb`, ∞: rows `[a²b², 0, −(a²+b²), 0, 1, 0]`, `[0, ∓ab², −b², ±a, 1, 0]`,
/// `[0, ∓ba², −a², ±b, 1, 0]`, `[0, a²b², 0, −(a²+b²), 0, 1]` (for 0, ±1, ±2: 4, −5; ∓4, −4,
/// ±1; ∓2, −1, ±2, as the CPU's `input_transform`).
#[cube]
fn input_transform_1d(
    a: &Array<f32>,
    #[comptime] start: usize,
    #[comptime] step: usize,
    out: &mut Array<f32>,
    #[comptime] out_start: usize,
    #[comptime] out_step: usize,
    pa: f32,
    pb: f32,
    #[comptime] standard: bool,
) {
    let a0 = a[start];
    let a1 = a[start + step];
    let a2 = a[start + 2 * step];
    let a3 = a[start + 3 * step];
    let a4 = a[start + 4 * step];
    let a5 = a[start + 5 * step];
    if standard {
        // The usual points' integer form (the CPU's too): their f32 rounding, which training's
        // gradients are checked against.
        out[out_start] = f32::new(4.0) * a0 - f32::new(5.0) * a2 + a4;
        out[out_start + out_step] = f32::new(-4.0) * (a1 + a2) + a3 + a4;
        out[out_start + 2 * out_step] = f32::new(4.0) * (a1 - a2) - a3 + a4;
        out[out_start + 3 * out_step] = f32::new(2.0) * (a3 - a1) - a2 + a4;
        out[out_start + 4 * out_step] = f32::new(2.0) * (a1 - a3) - a2 + a4;
        out[out_start + 5 * out_step] = f32::new(4.0) * a1 - f32::new(5.0) * a3 + a5;
    } else {
        let (pa2, pb2) = (pa * pa, pb * pb);
        let (product, sum) = (pa2 * pb2, pa2 + pb2);
        let even_a = a4 - pb2 * a2;
        let odd_a = pa * pb2 * a1 - pa * a3;
        let even_b = a4 - pa2 * a2;
        let odd_b = pb * pa2 * a1 - pb * a3;
        out[out_start] = product * a0 - sum * a2 + a4;
        out[out_start + out_step] = even_a - odd_a;
        out[out_start + 2 * out_step] = even_a + odd_a;
        out[out_start + 3 * out_step] = even_b - odd_b;
        out[out_start + 4 * out_step] = even_b + odd_b;
        out[out_start + 5 * out_step] = product * a1 - sum * a3 + a5;
    }
}

/// `Aᵀ m` of six values `m[start + k·step]` into four `out[out_start + k·out_step]`: row `k` is
/// `[0ᵏ, aᵏ, (−a)ᵏ, bᵏ, (−b)ᵏ, 0]`, plus `m5` in the last.
#[cube]
fn output_transform_1d(
    m: &Array<f32>,
    #[comptime] start: usize,
    #[comptime] step: usize,
    out: &mut Array<f32>,
    #[comptime] out_start: usize,
    #[comptime] out_step: usize,
    pa: f32,
    pb: f32,
    #[comptime] standard: bool,
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
    if standard {
        out[out_start + out_step] = diff12 + f32::new(2.0) * diff34;
        out[out_start + 2 * out_step] = sum12 + f32::new(4.0) * sum34;
        out[out_start + 3 * out_step] = diff12 + f32::new(8.0) * diff34 + a5;
    } else {
        out[out_start + out_step] = pa * diff12 + pb * diff34;
        out[out_start + 2 * out_step] = pa * pa * sum12 + pb * pb * sum34;
        out[out_start + 3 * out_step] = pa * pa * pa * diff12 + pb * pb * pb * diff34 + a5;
    }
}

/// `G g` of three values `g[start + k·step]` into six `out[out_start + k·out_step]`: rows
/// `[1/(a²b²), 0, 0]`, `[1, ±a, a²] / (2a²(a² − b²))`, `[1, ±b, b²] / (2b²(b² − a²))`,
/// `[0, 0, 1]` (for 0, ±1, ±2: 1/4; −1/6 ·[1, ±1, 1]; [1, ±2, 4]/24).
#[cube]
fn weight_transform_1d(
    g: &Array<f32>,
    #[comptime] start: usize,
    #[comptime] step: usize,
    out: &mut Array<f32>,
    #[comptime] out_start: usize,
    #[comptime] out_step: usize,
    pa: f32,
    pb: f32,
    #[comptime] standard: bool,
) {
    let a0 = g[start];
    let a1 = g[start + step];
    let a2 = g[start + 2 * step];
    if standard {
        let sixth = f32::new(1.0 / 6.0);
        out[out_start] = f32::new(0.25) * a0;
        out[out_start + out_step] = -sixth * (a0 + a1 + a2);
        out[out_start + 2 * out_step] = -sixth * (a0 - a1 + a2);
        out[out_start + 3 * out_step] = f32::new(1.0 / 24.0) * a0 + f32::new(1.0 / 12.0) * a1 + sixth * a2;
        out[out_start + 4 * out_step] = f32::new(1.0 / 24.0) * a0 - f32::new(1.0 / 12.0) * a1 + sixth * a2;
    } else {
        let (pa2, pb2) = (pa * pa, pb * pb);
        let outer_a = a0 + pa2 * a2;
        let outer_b = a0 + pb2 * a2;
        let inverse_a = 1.0 / (2.0 * pa2 * (pa2 - pb2));
        let inverse_b = 1.0 / (2.0 * pb2 * (pb2 - pa2));
        out[out_start] = a0 / (pa2 * pb2);
        out[out_start + out_step] = (outer_a + pa * a1) * inverse_a;
        out[out_start + 2 * out_step] = (outer_a - pa * a1) * inverse_a;
        out[out_start + 3 * out_step] = (outer_b + pb * a1) * inverse_b;
        out[out_start + 4 * out_step] = (outer_b - pb * a1) * inverse_b;
    }
    out[out_start + 5 * out_step] = a2;
}

/// `U[ξ, o, c] = (G g Gᵀ)[ξ]` of the 3×3 filter `weight[o, c]`; one invocation per (o, c).
#[cube(launch)]
pub(super) fn weight_transform_kernel<F: Float>(
    weight: &Tensor<F>,
    transformed: &mut Tensor<F>,
    pa: f32,
    pb: f32,
    #[comptime] standard_points: bool,
    #[define(F)] _dtype: ElemType,
) {
    let channels = weight.shape(1);
    let plane = weight.shape(0) * channels;
    let index = ABSOLUTE_POS;
    if index >= plane {
        terminate!();
    }
    let base = (index / channels) * weight.stride(0) + (index % channels) * weight.stride(1);
    let mut g = Array::<f32>::new(9usize);
    #[unroll]
    for row in 0..3usize {
        #[unroll]
        for column in 0..3usize {
            g[row * 3 + column] = f32::cast_from(weight[base + row * weight.stride(2) + column * weight.stride(3)]);
        }
    }
    // G g: 6×3, column by column; then (G g) Gᵀ: 6×6, row by row.
    let mut half = Array::<f32>::new(18usize);
    #[unroll]
    for column in 0..3usize {
        weight_transform_1d(&g, column, 3usize, &mut half, column, 3usize, pa, pb, standard_points);
    }
    let mut u = Array::<f32>::new(36usize);
    #[unroll]
    for row in 0..6usize {
        weight_transform_1d(&half, row * 3, 1usize, &mut u, row * 6, 1usize, pa, pb, standard_points);
    }
    #[unroll]
    for xi in 0..36usize {
        transformed[xi * plane + index] = F::cast_from(u[xi]);
    }
}

/// `V[ξ, c, t] = (Bᵀ d B)[ξ]` of the 6×6 input patch `d` of tile `first_tile + t` in channel `c`
/// (zero outside the image); one invocation per (c, t). A block's surroundings are applied as the input is
/// read: with `concatenated`, the input is `input` then `tail` along channels (the hourglass's
/// skip connection, never copied into one tensor; `tail` is read only then); with `upsample`,
/// the convolution sees the input upsampled ×2 (nearest neighbour); with `affine`, each value
/// inside the image becomes `relu(scale[c] · value + shift[c])` before the zero padding (a
/// pre-activation batch norm and ReLU). `scale` and `shift` are read only then.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn input_transform_kernel<F: Float>(
    input: &Tensor<F>,
    tail: &Tensor<F>,
    scale: &Tensor<F>,
    shift: &Tensor<F>,
    tiles: &mut Tensor<F>,
    first_tile: u32,
    tiles_y: u32,
    tiles_x: u32,
    padding_y: u32,
    padding_x: u32,
    pa: f32,
    pb: f32,
    #[comptime] standard_points: bool,
    #[comptime] concatenated: bool,
    #[comptime] upsample: bool,
    #[comptime] affine: bool,
    #[define(F)] _dtype: ElemType,
) {
    let count = tiles.shape(2);
    let plane = tiles.shape(1) * count;
    let index = ABSOLUTE_POS;
    if index >= plane {
        terminate!();
    }
    let channel = index / count;
    let tile = first_tile as usize + index % count;
    let tile_x = tile % tiles_x as usize;
    let rest = tile / tiles_x as usize;
    let tile_y = rest % tiles_y as usize;
    let image = rest / tiles_y as usize;
    let top = (tile_y * 4) as i32 - padding_y as i32;
    let left = (tile_x * 4) as i32 - padding_x as i32;
    let mut height = input.shape(2) as i32;
    let mut width = input.shape(3) as i32;
    if upsample {
        height *= 2;
        width *= 2;
    }
    let head_channels = input.shape(1);
    let mut from_tail = false;
    if concatenated {
        from_tail = channel >= head_channels;
    }
    let mut base = image * input.stride(0) + channel * input.stride(1);
    let mut row_stride = input.stride(2);
    let mut column_stride = input.stride(3);
    if from_tail {
        base = image * tail.stride(0) + (channel - head_channels) * tail.stride(1);
        row_stride = tail.stride(2);
        column_stride = tail.stride(3);
    }
    let mut channel_scale = f32::new(1.0);
    let mut channel_shift = f32::new(0.0);
    if affine {
        channel_scale = f32::cast_from(scale[channel]);
        channel_shift = f32::cast_from(shift[channel]);
    }

    let mut d = Array::<f32>::new(36usize);
    #[unroll]
    for row in 0..6usize {
        let y = top + row as i32;
        #[unroll]
        for column in 0..6usize {
            let x = left + column as i32;
            let mut value = f32::new(0.0);
            if y >= 0 && y < height && x >= 0 && x < width {
                let mut source_y = y as usize;
                let mut source_x = x as usize;
                if upsample {
                    source_y /= 2;
                    source_x /= 2;
                }
                let at = base + source_y * row_stride + source_x * column_stride;
                if from_tail {
                    value = f32::cast_from(tail[at]);
                } else {
                    value = f32::cast_from(input[at]);
                }
                if affine {
                    value = f32::max(value * channel_scale + channel_shift, 0.0);
                }
            }
            d[row * 6 + column] = value;
        }
    }
    // Bᵀ d column by column, then (Bᵀ d) B row by row.
    let mut half = Array::<f32>::new(36usize);
    #[unroll]
    for column in 0..6usize {
        input_transform_1d(&d, column, 6usize, &mut half, column, 6usize, pa, pb, standard_points);
    }
    let mut v = Array::<f32>::new(36usize);
    #[unroll]
    for row in 0..6usize {
        input_transform_1d(&half, row * 6, 1usize, &mut v, row * 6, 1usize, pa, pb, standard_points);
    }
    #[unroll]
    for xi in 0..36usize {
        tiles[xi * plane + index] = F::cast_from(v[xi]);
    }
}

/// `y = Aᵀ M A` of tile `first_tile + t` in output channel `o`, written where it falls inside the output
/// `[b, o, h, w]` (contiguous; `h × w` the convolution's size); one invocation per (o, t). A
/// block's surroundings are applied as the tile is written: with `add_bias`, `bias[o]`; with
/// `relu`, a ReLU; with `pool`, 2×2 average pooling (the output is then `[b, o, h/2, w/2]`;
/// a 4×4 tile holds whole windows); with `add_residual`, `residual[b, o, y, x]` last. `bias` and
/// `residual` are read only where asked for.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn output_transform_kernel<F: Float>(
    products: &Tensor<F>,
    bias: &Tensor<F>,
    residual: &Tensor<F>,
    output: &mut Tensor<F>,
    first_tile: u32,
    tiles_y: u32,
    tiles_x: u32,
    height: u32,
    width: u32,
    pa: f32,
    pb: f32,
    #[comptime] standard_points: bool,
    #[comptime] add_bias: bool,
    #[comptime] relu: bool,
    #[comptime] pool: bool,
    #[comptime] add_residual: bool,
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
    let local_tile = index % count;
    let tile = first_tile as usize + local_tile;
    let tile_x = tile % tiles_x as usize;
    let rest = tile / tiles_x as usize;
    let tile_y = rest % tiles_y as usize;
    let image = rest / tiles_y as usize;

    let product_base = channel * products.stride(1) + local_tile * products.stride(2);
    let mut m = Array::<f32>::new(36usize);
    #[unroll]
    for xi in 0..36usize {
        m[xi] = f32::cast_from(products[xi * products.stride(0) + product_base]);
    }
    // Aᵀ M column by column (4×6), then (Aᵀ M) A row by row (4×4).
    let mut half = Array::<f32>::new(24usize);
    #[unroll]
    for column in 0..6usize {
        output_transform_1d(&m, column, 6usize, &mut half, column, 6usize, pa, pb, standard_points);
    }
    let mut y = Array::<f32>::new(16usize);
    #[unroll]
    for row in 0..4usize {
        output_transform_1d(&half, row * 6, 1usize, &mut y, row * 4, 1usize, pa, pb, standard_points);
    }
    if add_bias {
        let channel_bias = f32::cast_from(bias[channel]);
        #[unroll]
        for value in 0..16usize {
            y[value] += channel_bias;
        }
    }
    if relu {
        #[unroll]
        for value in 0..16usize {
            y[value] = f32::max(y[value], 0.0);
        }
    }
    let height = height as usize;
    let width = width as usize;
    if pool {
        let (pooled_height, pooled_width) = (height / 2, width / 2);
        let base = (image * out_channels + channel) * pooled_height * pooled_width;
        let (top, left) = (tile_y * 2, tile_x * 2);
        #[unroll]
        for row in 0..2usize {
            #[unroll]
            for column in 0..2usize {
                if top + row < pooled_height && left + column < pooled_width {
                    let corner = row * 8 + column * 2;
                    let sum = y[corner] + y[corner + 1] + y[corner + 4] + y[corner + 5];
                    output[base + (top + row) * pooled_width + left + column] = F::cast_from(sum * 0.25);
                }
            }
        }
    } else {
        let base = (image * out_channels + channel) * height * width;
        let (top, left) = (tile_y * 4, tile_x * 4);
        #[unroll]
        for row in 0..4usize {
            #[unroll]
            for column in 0..4usize {
                if top + row < height && left + column < width {
                    let mut value = y[row * 4 + column];
                    if add_residual {
                        value += f32::cast_from(
                            residual[image * residual.stride(0)
                                + channel * residual.stride(1)
                                + (top + row) * residual.stride(2)
                                + (left + column) * residual.stride(3)],
                        );
                    }
                    output[base + (top + row) * width + left + column] = F::cast_from(value);
                }
            }
        }
    }
}
