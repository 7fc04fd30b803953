//! The kernels of [`super::motion`]: one invocation per output pixel of one motion. Maps are
//! stored in `F` (f32, or f16 for a model stored so), keypoints in f32; arithmetic is f32
//! either way.

use cubecl::prelude::*;

/// `tensor[index]` as f32.
#[cube]
fn read<F: Float>(tensor: &Tensor<F>, index: usize) -> f32 {
    f32::cast_from(tensor[index])
}

/// FOMM's `make_coordinate_grid` value at `index` of `size`, in torch's operation order
/// (`2 · (i / (n − 1)) − 1`), so that grids agree bit for bit with the official code.
#[cube]
fn grid_coordinate(index: usize, size: usize) -> f32 {
    let mut denominator = size - 1;
    if size < 2 {
        denominator = 1;
    }
    2.0 * (f32::cast_from(index) / f32::cast_from(denominator)) - 1.0
}

/// The sparse motion `m` of image `image` at grid point `(grid_x, grid_y)`: motion 0 the
/// identity, motion `k + 1` Eq. 4's `T_{S←R}(p_k) + J_k (z − T_{D←R}(p_k))` with
/// `J_k = J_S,k · J_D,k⁻¹` (the inverse in closed form; `J_k = I` without `jacobians`, which are
/// then not read).
#[allow(clippy::too_many_arguments)]
#[cube]
fn sparse_motion(
    kp_driving: &Tensor<f32>,
    kp_source: &Tensor<f32>,
    jacobian_driving: &Tensor<f32>,
    jacobian_source: &Tensor<f32>,
    image: usize,
    motion: usize,
    grid_x: f32,
    grid_y: f32,
    #[comptime] jacobians: bool,
) -> (f32, f32) {
    let mut out_x = grid_x;
    let mut out_y = grid_y;
    if motion > 0 {
        let keypoint = motion - 1;
        let driving = image * kp_driving.stride(0) + keypoint * kp_driving.stride(1);
        let source = image * kp_source.stride(0) + keypoint * kp_source.stride(1);
        let centred_x = grid_x - kp_driving[driving];
        let centred_y = grid_y - kp_driving[driving + kp_driving.stride(2)];
        let mut moved_x = centred_x;
        let mut moved_y = centred_y;
        if jacobians {
            let jd = image * jacobian_driving.stride(0) + keypoint * jacobian_driving.stride(1);
            let (row, column) = (jacobian_driving.stride(2), jacobian_driving.stride(3));
            let a = jacobian_driving[jd];
            let b = jacobian_driving[jd + column];
            let c = jacobian_driving[jd + row];
            let d = jacobian_driving[jd + row + column];
            let determinant = a * d - b * c;
            let (i00, i01, i10, i11) = (d / determinant, -b / determinant, -c / determinant, a / determinant);
            let js = image * jacobian_source.stride(0) + keypoint * jacobian_source.stride(1);
            let (row, column) = (jacobian_source.stride(2), jacobian_source.stride(3));
            let s00 = jacobian_source[js];
            let s01 = jacobian_source[js + column];
            let s10 = jacobian_source[js + row];
            let s11 = jacobian_source[js + row + column];
            let (j00, j01) = (s00 * i00 + s01 * i10, s00 * i01 + s01 * i11);
            let (j10, j11) = (s10 * i00 + s11 * i10, s10 * i01 + s11 * i11);
            moved_x = j00 * centred_x + j01 * centred_y;
            moved_y = j10 * centred_x + j11 * centred_y;
        }
        out_x = moved_x + kp_source[source];
        out_y = moved_y + kp_source[source + kp_source.stride(2)];
    }
    (out_x, out_y)
}

/// The dense motion network's input at pixel `(y, x)` of motion `m`, into `out`, which holds
/// `inputs` `[b, (K + 1)(c + 1), h, w]` then `motions` `[b, K + 1, h, w, 2]`, each contiguous:
/// the sparse motion into `motions[b, m, y, x]` (see [`sparse_motion`]); `inputs` channel
/// `m·(c + 1)` Eq. 6's heatmap `exp(−|z − p_D,k|²/2σ²) − exp(−|z − p_S,k|²/2σ²)` (0 for the
/// background, `m = 0`), channels `m·(c + 1) + 1 …` the source sampled bilinearly at the motion
/// (torch's `grid_sample`, `align_corners=False`, zero padding). `gaussian_factor` is `−1/2σ²`.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn motion_input_kernel<F: Float>(
    source: &Tensor<F>,
    kp_driving: &Tensor<f32>,
    kp_source: &Tensor<f32>,
    jacobian_driving: &Tensor<f32>,
    jacobian_source: &Tensor<f32>,
    out: &mut Tensor<F>,
    gaussian_factor: f32,
    #[comptime] jacobians: bool,
    #[define(F)] _dtype: ElemType,
) {
    let (height, width) = (source.shape(2), source.shape(3));
    let count = kp_driving.shape(1) + 1;
    let channels = source.shape(1);
    let pixels = count * height * width;
    let images = kp_driving.shape(0);
    let index = ABSOLUTE_POS;
    if index >= images * pixels {
        terminate!();
    }
    let x = index % width;
    let y = (index / width) % height;
    let motion = (index / (width * height)) % count;
    let image = index / pixels;
    let out_plane = height * width;
    let out_base = (image * count * (channels + 1) + motion * (channels + 1)) * out_plane + y * width + x;

    let grid_x = grid_coordinate(x, width);
    let grid_y = grid_coordinate(y, height);
    let (motion_x, motion_y) = sparse_motion(
        kp_driving,
        kp_source,
        jacobian_driving,
        jacobian_source,
        image,
        motion,
        grid_x,
        grid_y,
        jacobians,
    );
    let motions = images * count * (channels + 1) * out_plane + index * 2;
    out[motions] = F::cast_from(motion_x);
    out[motions + 1] = F::cast_from(motion_y);

    let mut heatmap = f32::new(0.0);
    if motion > 0 {
        let factor = gaussian_factor;
        let driving = image * kp_driving.stride(0) + (motion - 1) * kp_driving.stride(1);
        let source_kp = image * kp_source.stride(0) + (motion - 1) * kp_source.stride(1);
        let dx = grid_x - kp_driving[driving];
        let dy = grid_y - kp_driving[driving + kp_driving.stride(2)];
        let sx = grid_x - kp_source[source_kp];
        let sy = grid_y - kp_source[source_kp + kp_source.stride(2)];
        heatmap = f32::exp((dx * dx + dy * dy) * factor) - f32::exp((sx * sx + sy * sy) * factor);
    }
    out[out_base] = F::cast_from(heatmap);

    for channel in 0..channels {
        let base = image * source.stride(0) + channel * source.stride(1);
        out[out_base + (channel + 1) * out_plane] =
            F::cast_from(sample_bilinear::<F>(source, base, motion_x, motion_y));
    }
}

/// Channel `base` (its offset) of `source` sampled bilinearly at the grid point `(gx, gy)` of
/// `[−1, 1]²`: torch's `grid_sample`, `align_corners=False`, zeros outside.
#[cube]
fn sample_bilinear<F: Float>(source: &Tensor<F>, base: usize, gx: f32, gy: f32) -> f32 {
    // torch's unnormalisation without aligned corners: ((g + 1) · size − 1) / 2.
    let (height, width) = (source.shape(2), source.shape(3));
    let ix = ((gx + 1.0) * f32::cast_from(width) - 1.0) / 2.0;
    let iy = ((gy + 1.0) * f32::cast_from(height) - 1.0) / 2.0;
    let left = f32::floor(ix);
    let top = f32::floor(iy);
    let fx = ix - left;
    let fy = iy - top;
    let x0 = i32::cast_from(left);
    let y0 = i32::cast_from(top);
    let inside_x0 = x0 >= 0 && x0 < width as i32;
    let inside_x1 = x0 + 1 >= 0 && x0 + 1 < width as i32;
    let inside_y0 = y0 >= 0 && y0 < height as i32;
    let inside_y1 = y0 + 1 >= 0 && y0 + 1 < height as i32;
    let mut value = f32::new(0.0);
    if inside_y0 && inside_x0 {
        value += (1.0 - fx)
            * (1.0 - fy)
            * read::<F>(
                source,
                base + y0 as usize * source.stride(2) + x0 as usize * source.stride(3),
            );
    }
    if inside_y0 && inside_x1 {
        value += fx
            * (1.0 - fy)
            * read::<F>(
                source,
                base + y0 as usize * source.stride(2) + (x0 + 1) as usize * source.stride(3),
            );
    }
    if inside_y1 && inside_x0 {
        value += (1.0 - fx)
            * fy
            * read::<F>(
                source,
                base + (y0 + 1) as usize * source.stride(2) + x0 as usize * source.stride(3),
            );
    }
    if inside_y1 && inside_x1 {
        value += fx
            * fy
            * read::<F>(
                source,
                base + (y0 + 1) as usize * source.stride(2) + (x0 + 1) as usize * source.stride(3),
            );
    }
    value
}

/// One invocation per output value `[b, c, y, x]` (contiguous): `source[b, c]` sampled
/// bilinearly at `grid[b, y, x]` (see [`sample_bilinear`]), times `scale[b, 0, y, x]`.
#[cube(launch)]
pub(super) fn warp_scaled_kernel<F: Float>(
    source: &Tensor<F>,
    grid: &Tensor<F>,
    scale: &Tensor<F>,
    output: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let index = ABSOLUTE_POS;
    if index >= output.len() {
        terminate!();
    }
    let (channels, height, width) = (output.shape(1), output.shape(2), output.shape(3));
    let x = index % width;
    let y = (index / width) % height;
    let channel = (index / (width * height)) % channels;
    let image = index / (width * height * channels);
    let at = image * grid.stride(0) + y * grid.stride(1) + x * grid.stride(2);
    let base = image * source.stride(0) + channel * source.stride(1);
    let value = sample_bilinear::<F>(source, base, read::<F>(grid, at), read::<F>(grid, at + grid.stride(3)));
    let factor = read::<F>(
        scale,
        image * scale.stride(0) + y * scale.stride(2) + x * scale.stride(3),
    );
    output[index] = F::cast_from(value * factor);
}

/// One invocation per heatmap `(b, k)` of the `keypoints` first channels of `prediction`: the
/// softmax of `prediction[b, k] / temperature` over the pixels, then its mean position
/// `means[b, k, ·]` = Σ h·(x, y) on FOMM's grid and, with `jacobian`, the heatmap-weighted
/// Jacobian `jacobians[b, k, r, c]` = Σ h · `maps[b, first_map + 4m + 2r + c]` (`m` = k, or 0
/// where `shared_map` is 1: one map for every keypoint); `out` holds `jacobians` `[b, K, 2, 2]`
/// with `jacobian`, then `means` `[b, K, 2]`, each contiguous. Each invocation walks its heatmap
/// twice in order (a few thousand pixels): few heatmaps, and no shared memory.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn heatmap_statistics_kernel<F: Float>(
    prediction: &Tensor<F>,
    maps: &Tensor<F>,
    out: &mut Tensor<f32>,
    keypoints: u32,
    first_map: u32,
    shared_map: u32,
    temperature: f32,
    #[comptime] jacobian: bool,
    #[define(F)] _dtype: ElemType,
) {
    let keypoints = keypoints as usize;
    let heatmap = ABSOLUTE_POS;
    if heatmap >= prediction.shape(0) * keypoints {
        terminate!();
    }
    let (height, width) = (prediction.shape(2), prediction.shape(3));
    let image = heatmap / keypoints;
    let keypoint = heatmap % keypoints;
    let divisor = temperature;
    let base = image * prediction.stride(0) + keypoint * prediction.stride(1);

    // The largest logit, as softmax subtracts it.
    let mut largest = f32::new(-3.0e38);
    for y in 0..height {
        for x in 0..width {
            let value = read::<F>(prediction, base + y * prediction.stride(2) + x * prediction.stride(3)) / divisor;
            largest = f32::max(largest, value);
        }
    }

    let mut map = keypoint;
    if shared_map == 1 {
        map = 0usize;
    }
    let map_base = image * maps.stride(0) + (first_map as usize + 4 * map) * maps.stride(1);
    let mut total = f32::new(0.0);
    let mut mean_x = f32::new(0.0);
    let mut mean_y = f32::new(0.0);
    let mut first = f32::new(0.0);
    let mut second = f32::new(0.0);
    let mut third = f32::new(0.0);
    let mut fourth = f32::new(0.0);
    for y in 0..height {
        for x in 0..width {
            let value = read::<F>(prediction, base + y * prediction.stride(2) + x * prediction.stride(3)) / divisor;
            let weight = f32::exp(value - largest);
            total += weight;
            mean_x += weight * grid_coordinate(x, width);
            mean_y += weight * grid_coordinate(y, height);
            if jacobian {
                let at = map_base + y * maps.stride(2) + x * maps.stride(3);
                first += weight * read::<F>(maps, at);
                second += weight * read::<F>(maps, at + maps.stride(1));
                third += weight * read::<F>(maps, at + 2 * maps.stride(1));
                fourth += weight * read::<F>(maps, at + 3 * maps.stride(1));
            }
        }
    }
    let mut means = heatmap * 2;
    if jacobian {
        means += prediction.shape(0) * keypoints * 4;
        out[heatmap * 4] = first / total;
        out[heatmap * 4 + 1] = second / total;
        out[heatmap * 4 + 2] = third / total;
        out[heatmap * 4 + 3] = fourth / total;
    }
    out[means] = mean_x / total;
    out[means + 1] = mean_y / total;
}

/// One invocation per pixel of the dense motion network's heads `logits[b, 0..n(+1), y, x]`,
/// into `out`, which holds `maps` `[b, n(+1), h, w]` then `deformation` `[b, h, w, 2]`, each
/// contiguous: the softmax of the first `n` channels (the mask) into `maps[b, 0..n, y, x]`,
/// where there is an occlusion channel (`n + 1` channels) its sigmoid into `maps[b, n, y, x]`,
/// and the dense motion Σ_m mask_m · `motions[b, m, y, x, ·]` into `deformation[b, y, x, ·]`.
/// Softmax as burn's: `exp(x − max) / Σ exp(x − max)`.
#[cube(launch)]
pub(super) fn motion_output_kernel<F: Float>(
    logits: &Tensor<F>,
    motions: &Tensor<F>,
    out: &mut Tensor<F>,
    masks: u32,
    #[define(F)] _dtype: ElemType,
) {
    let (channels, height, width) = (logits.shape(1), logits.shape(2), logits.shape(3));
    let pixels = height * width;
    let index = ABSOLUTE_POS;
    if index >= logits.shape(0) * pixels {
        terminate!();
    }
    let image = index / pixels;
    let pixel = index % pixels;
    let (y, x) = (pixel / width, pixel % width);
    let masks = masks as usize;
    let base = image * logits.stride(0) + y * logits.stride(2) + x * logits.stride(3);
    let mut largest = f32::new(-3.0e38);
    for m in 0..masks {
        largest = f32::max(largest, read::<F>(logits, base + m * logits.stride(1)));
    }
    let mut total = f32::new(0.0);
    for m in 0..masks {
        total += f32::exp(read::<F>(logits, base + m * logits.stride(1)) - largest);
    }
    let out_base = image * channels * pixels + pixel;
    let mut moved_x = f32::new(0.0);
    let mut moved_y = f32::new(0.0);
    for m in 0..masks {
        let weight = f32::exp(read::<F>(logits, base + m * logits.stride(1)) - largest) / total;
        out[out_base + m * pixels] = F::cast_from(weight);
        let at = image * motions.stride(0) + m * motions.stride(1) + y * motions.stride(2) + x * motions.stride(3);
        moved_x += read::<F>(motions, at) * weight;
        moved_y += read::<F>(motions, at + motions.stride(4)) * weight;
    }
    if channels > masks {
        let logit = read::<F>(logits, base + masks * logits.stride(1));
        out[out_base + masks * pixels] = F::cast_from(1.0 / (1.0 + f32::exp(-logit)));
    }
    let deformation = logits.shape(0) * channels * pixels + index * 2;
    out[deformation] = F::cast_from(moved_x);
    out[deformation + 1] = F::cast_from(moved_y);
}
