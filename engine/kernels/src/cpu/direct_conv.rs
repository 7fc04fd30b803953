//! The CPU's direct `k × k` convolution for FOMM's 7×7 layers: the generator's `first` (3 → 64
//! channels) and `final` (64 → 3), the dense motion's mask and occlusion heads and the keypoint
//! and Jacobian heads. One side of each has few channels, so a GEMM (im2col or Winograd) would
//! keep its kernel mostly idle; these loops keep strips of pixels × a group of up to 4 output
//! channels in registers instead, written with explicit vectors (the compiler's own
//! vectorization of the same loops left the multiply-adds unfused and the accumulators on the
//! stack: 8–16 GFLOP/s; TPSMM's 148 → 11 mask head took 41 ms a frame, now ~6–15).
//! Where the input channels are whole vectors (the generator's 64 → 3 `final`), inference reads
//! its channels-last maps as they are instead, each tap a dot product over the channels for a
//! few neighbouring pixels: 8.0 against 19.8 ms from planes at 256², 2-core Zen 3
//! (`cargo bench -p prioritycut-kernels --bench direct_heads`).
//!
//! Training needs the three products of `y = W ⋆ x + b`: the output, the input gradient
//! `∂L/∂x = rot180(Wᵀ) ⋆ ∂L/∂y` (the same direct convolution, padded by `k − 1 − p`) and the
//! weight gradient `∂L/∂W[o, i, ky, kx] = Σ_{b, y, x} ∂L/∂y[b, o, y, x] · x_pad[b, i, y + ky, x + kx]`
//! ([`weight_gradient`]).

use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};
use macerator::{Scalar, Simd, Vector};
use rayon::prelude::*;

use super::buffer::zeroed;
use super::simd::{LaneKernel, vectorized_lanes};
use super::unsafe_simd::lanes::{load, store};
use super::winograd::{ChannelAffine, Nhwc, folded};

/// A `k × k` stride-1 convolution with few channels on one side, computed directly. The input
/// is laid out as zero-padded planes; a task computes `O` output channels × 8 neighbouring
/// pixels of one row in registers, and every input value loaded serves `O` multiply-adds.
#[derive(Debug)]
pub struct DirectConv {
    input_channels: usize,
    output_channels: usize,
    kernel: usize,
    padding: usize,
    /// Output channels computed together: up to 4 ([`strips_beside`] says how many strips of
    /// pixels go with them).
    group: usize,
    /// [groups, C_in, k, k, group]: the weights of a group's channels side by side per tap,
    /// zero beyond C_out.
    weight: Vec<f32>,
    /// [groups, k, k, group, C_in]: each tap's filters as runs of input channels, for
    /// [`channels_last_row`]; made where C_in is a whole number of vectors at every width.
    weight_by_tap: Option<Vec<f32>>,
    bias: Vec<f32>,
    relu: bool,
}

impl DirectConv {
    /// `weight` [C_out, C_in, k, k], `bias` [C_out], symmetric zero `padding`.
    pub fn new(weight: Tensor<4>, bias: Option<Tensor<1>>, padding: usize) -> Self {
        Self::with_output_norm(weight, bias, padding, None, false)
    }

    /// As [`new`](Self::new), with a batch norm on the output folded into the weights and a
    /// ReLU after it (a `SameBlock2d`).
    pub fn with_output_norm(
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
        padding: usize,
        output_norm: Option<ChannelAffine>,
        relu: bool,
    ) -> Self {
        let [cout, cin, k, kw] = weight.dims();
        assert_eq!(k, kw, "a square kernel");
        let group = cout.clamp(1, 4);
        let groups = cout.div_ceil(group);
        let (raw, bias) = folded(weight, bias, output_norm);
        let mut laid = vec![0.0f32; groups * cin * k * k * group];
        for o in 0..cout {
            for i in 0..cin {
                for tap in 0..k * k {
                    laid[(((o / group) * cin + i) * k * k + tap) * group + o % group] =
                        raw[(o * cin + i) * k * k + tap];
                }
            }
        }
        let weight_by_tap = cin.is_multiple_of(MAX_LANES).then(|| {
            let mut by_tap = vec![0.0f32; groups * k * k * group * cin];
            for o in 0..cout {
                for i in 0..cin {
                    for tap in 0..k * k {
                        by_tap[(((o / group) * k * k + tap) * group + o % group) * cin + i] =
                            raw[(o * cin + i) * k * k + tap];
                    }
                }
            }
            by_tap
        });
        Self {
            input_channels: cin,
            output_channels: cout,
            kernel: k,
            padding,
            group,
            weight: laid,
            weight_by_tap,
            bias,
            relu,
        }
    }

    /// [b, h, w, C_in] → NCHW [b, C_out, h + 2p − k + 1, w + 2p − k + 1], what burn's
    /// operations after a head take.
    pub fn forward(&self, x: &Nhwc, device: &Device) -> Tensor<4> {
        assert_eq!(x.channels, self.input_channels, "input channels");
        if let Some(weight) = &self.weight_by_tap {
            return self.forward_channels_last(x, weight, device);
        }
        let planes = Planes::from_nhwc(x, self.padding, self.row_stride(x.width));
        self.forward_planes(&planes, device)
    }

    /// As [`forward`](Self::forward), from NCHW values [b, C_in, h, w] (the training form's layout).
    pub fn forward_nchw(&self, x: &[f32], dims: [usize; 4], device: &Device) -> Tensor<4> {
        assert_eq!(dims[1], self.input_channels, "input channels");
        let planes = Planes::from_nchw(x, dims, self.padding, self.row_stride(dims[3]));
        self.forward_planes(&planes, device)
    }

    /// The padded rows' stride: the last strips of pixels read zeros, not past the end.
    fn row_stride(&self, width: usize) -> usize {
        let out_w = (width + 2 * self.padding + 1).saturating_sub(self.kernel);
        let span = strips_beside(self.group) * MAX_LANES;
        out_w.div_ceil(span) * span + self.kernel - 1
    }

    fn forward_planes(&self, planes: &Planes, device: &Device) -> Tensor<4> {
        let (cin, k) = (self.input_channels, self.kernel);
        let (hp, stride) = (planes.height, planes.stride);
        let out_h = (hp + 1).saturating_sub(k);
        let out_w = (planes.width + 1).saturating_sub(k);
        let group = self.group;
        self.by_output_rows([planes.batch, out_h, out_w], device, |b, y, g, outputs, bias| {
            let args = DirectRowArgs {
                planes: &planes.data[b * cin * hp * stride..][..cin * hp * stride],
                weight: &self.weight[g * cin * k * k * group..][..cin * k * k * group],
                input_channels: cin,
                kernel: k,
                padded_height: hp,
                row_stride: stride,
                y,
                out_w,
                outputs,
                bias,
                relu: self.relu,
            };
            match group {
                1 => vectorized_lanes(DirectRow::<1, { strips_beside(1) }>(args)),
                2 => vectorized_lanes(DirectRow::<2, { strips_beside(2) }>(args)),
                3 => vectorized_lanes(DirectRow::<3, { strips_beside(3) }>(args)),
                _ => vectorized_lanes(DirectRow::<4, { strips_beside(4) }>(args)),
            }
        })
    }

    /// The output NCHW `[batch, C_out, out_h, out_w]`, one task per (image, row) calling
    /// `row(image, y, group, its rows of the group's output channels, their biases)` for each
    /// group of output channels.
    fn by_output_rows(
        &self,
        [batch, out_h, out_w]: [usize; 3],
        device: &Device,
        row: impl Fn(usize, usize, usize, &mut [&mut [f32]], &[f32]) + Sync,
    ) -> Tensor<4> {
        let (cout, group) = (self.output_channels, self.group);
        let mut out = zeroed(batch * cout * out_h * out_w);
        if !out.is_empty() {
            let mut rows: Vec<Vec<&mut [f32]>> = (0..batch * out_h).map(|_| Vec::with_capacity(cout)).collect();
            for (i, chunk) in out.chunks_mut(out_w).enumerate() {
                let (b, y) = (i / (cout * out_h), i % out_h);
                rows[b * out_h + y].push(chunk);
            }
            rows.into_par_iter().enumerate().for_each(|(task, mut channels)| {
                let (b, y) = (task / out_h, task % out_h);
                for g in 0..cout.div_ceil(group) {
                    let outputs = (g * group)..(g * group + group).min(cout);
                    row(b, y, g, &mut channels[outputs.clone()], &self.bias[outputs]);
                }
            });
        }
        Tensor::from_data(TensorData::new(out, [batch, cout, out_h, out_w]), device)
    }

    /// [`forward`](Self::forward) read from the channels-last input as it is, where its channels
    /// are whole vectors: each tap is a dot product over the input channels, so neither the
    /// padded planes (a transposed copy of the input: 3.3 ms of the generator's 64 → 3 head at
    /// 256², 2-core Zen 3) nor the zero padding (taps outside the map are skipped) is made.
    /// That head ran at 65 GFLOP/s from planes: a group of 3 outputs fills a quarter fewer
    /// accumulators than one of 4.
    fn forward_channels_last(&self, x: &Nhwc, weight: &[f32], device: &Device) -> Tensor<4> {
        let (cin, k, pad) = (self.input_channels, self.kernel, self.padding);
        let (h, w) = (x.height, x.width);
        let out_h = (h + 2 * pad + 1).saturating_sub(k);
        let out_w = (w + 2 * pad + 1).saturating_sub(k);
        let group = self.group;
        self.by_output_rows([x.batch, out_h, out_w], device, |b, y, g, outputs, bias| {
            let args = ChannelsLastRowArgs {
                image: &x.data[b * h * w * cin..][..h * w * cin],
                height: h,
                width: w,
                input_channels: cin,
                weight: &weight[g * k * k * group * cin..][..k * k * group * cin],
                kernel: k,
                padding: pad,
                y,
                out_w,
                outputs,
                bias,
                relu: self.relu,
            };
            match group {
                1 => vectorized_lanes(ChannelsLastRow::<1, { pixels_beside(1) }>(args)),
                2 => vectorized_lanes(ChannelsLastRow::<2, { pixels_beside(2) }>(args)),
                3 => vectorized_lanes(ChannelsLastRow::<3, { pixels_beside(3) }>(args)),
                _ => vectorized_lanes(ChannelsLastRow::<4, { pixels_beside(4) }>(args)),
            }
        })
    }
}

/// Neighbouring output pixels a channels-last task computes beside a group of `outputs` output
/// channels: `outputs × pixels` accumulators, the group's `outputs` weight vectors and one
/// input vector within AVX2's 16 registers; each weight loaded serves `pixels` multiply-adds
/// and each input `outputs`. (A group of 3 beside 4 pixels needs all 16 and spilled: 17.1
/// against 11.1 ms for the generator's `final`.)
const fn pixels_beside(outputs: usize) -> usize {
    match outputs {
        1 => 8,
        2 => 4,
        3 => 3,
        _ => 2,
    }
}

/// One output row of `O` channels from channels-last input, `P` neighbouring pixels at a time
/// where all their taps lie on the map, one at a time (its taps clipped) near the edges.
#[inline(always)]
fn channels_last_row<S: Simd, const O: usize, const P: usize>(args: ChannelsLastRowArgs) {
    let ChannelsLastRowArgs {
        image,
        height,
        width,
        input_channels: cin,
        weight,
        kernel: k,
        padding: pad,
        y,
        out_w,
        outputs,
        bias,
        relu,
    } = args;
    // The taps' rows on the map: input row `y + ky − pad` within [0, height).
    let rows = pad.saturating_sub(y)..k.min((height + pad).saturating_sub(y));
    let taps = |x: usize| pad.saturating_sub(x)..k.min((width + pad).saturating_sub(x));
    let mut write = |x: usize, sums: &[f32; O]| {
        for ((out, &sum), &b) in outputs.iter_mut().zip(sums).zip(bias) {
            let v = sum + b;
            out[x] = if relu { v.max(0.0) } else { v };
        }
    };
    let mut x = 0;
    while x < out_w {
        // The block's first pixel reads column x − pad, its last x + P − 1 + k − 1 − pad.
        if x >= pad && x + P + k - 1 <= width + pad && x + P <= out_w {
            let sums = tap_sums::<S, O, P>(image, (width, cin), weight, k, (rows.clone(), 0..k), x - pad, y, pad);
            for (p, sums) in sums.iter().enumerate() {
                write(x + p, sums);
            }
            x += P;
        } else {
            let columns = taps(x);
            let first = (x + columns.start).saturating_sub(pad);
            let [sums] = tap_sums::<S, O, 1>(image, (width, cin), weight, k, (rows.clone(), columns), first, y, pad);
            write(x, &sums);
            x += 1;
        }
    }
}

/// Σ over the taps `rows × columns` and the input channels, for `P` neighbouring output pixels
/// of row `y` whose first reads input column `first` at the first of `columns`: `O` sums each.
/// (The group's weights, 38 KB for 64 channels of a 7×7 group of 3, are read whole for each
/// block of pixels; summing 16 or 32 channels at a time so that they stayed in the first-level
/// cache took 1.5–2.5× as long: per tap, the loop's set-up outweighed its few vectors.)
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tap_sums<S: Simd, const O: usize, const P: usize>(
    image: &[f32],
    (width, cin): (usize, usize),
    weight: &[f32],
    k: usize,
    (rows, columns): (Range<usize>, Range<usize>),
    first: usize,
    y: usize,
    pad: usize,
) -> [[f32; O]; P] {
    let lanes = f32::lanes::<S>();
    let zero = 0.0f32.splat::<S>();
    let mut acc = [[zero; O]; P];
    for ky in rows {
        let row = &image[(y + ky - pad) * width * cin..][..width * cin];
        for (step, kx) in columns.clone().enumerate() {
            let pixels = &row[(first + step) * cin..][..P * cin];
            let filters = &weight[(ky * k + kx) * O * cin..][..O * cin];
            let pixels: [&[f32]; P] = std::array::from_fn(|p| &pixels[p * cin..][..cin]);
            let filters: [&[f32]; O] = std::array::from_fn(|o| &filters[o * cin..][..cin]);
            // `c + lanes ≤ cin` in the loop's condition lets the loads go unchecked.
            let mut c = 0;
            while c + lanes <= cin {
                let w: [Vector<S, f32>; O] = std::array::from_fn(|o| load::<S>(&filters[o][c..]));
                for (acc, pixel) in acc.iter_mut().zip(&pixels) {
                    let input = load::<S>(&pixel[c..]);
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        *acc = w.mul_add(input, *acc);
                    }
                }
                c += lanes;
            }
        }
    }
    acc.map(|pixel| pixel.map(|v| v.reduce_add()))
}

/// One output row of a group of output channels, from channels-last input.
struct ChannelsLastRowArgs<'a, 'b> {
    /// One image, [h, w, C_in].
    image: &'a [f32],
    height: usize,
    width: usize,
    input_channels: usize,
    /// The group's weights, [k, k, O, C_in].
    weight: &'a [f32],
    kernel: usize,
    padding: usize,
    /// The output row.
    y: usize,
    out_w: usize,
    /// The row of each of the group's output channels.
    outputs: &'a mut [&'b mut [f32]],
    bias: &'a [f32],
    relu: bool,
}
struct ChannelsLastRow<'a, 'b, const O: usize, const P: usize>(ChannelsLastRowArgs<'a, 'b>);

impl<const O: usize, const P: usize> LaneKernel for ChannelsLastRow<'_, '_, O, P> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        channels_last_row::<S, O, P>(self.0)
    }
}

/// Zero-padded planes [b, C, h + 2p, stride], the image at column `p` of each row.
struct Planes {
    data: Vec<f32>,
    batch: usize,
    /// Padded height.
    height: usize,
    /// Padded width (the columns that hold the image and its padding).
    width: usize,
    stride: usize,
}

impl Planes {
    fn empty([batch, channels, h, w]: [usize; 4], pad: usize, stride: usize) -> Self {
        let height = h + 2 * pad;
        Self {
            data: zeroed(batch * channels * height * stride),
            batch,
            height,
            width: w + 2 * pad,
            stride,
        }
    }

    /// The rows of every plane that hold image row `y` of image `b`, one `Vec` per (b, y).
    fn image_rows(&mut self, channels: usize, h: usize, w: usize, pad: usize) -> Vec<Vec<&mut [f32]>> {
        let (height, stride) = (self.height, self.stride);
        let mut rows: Vec<Vec<&mut [f32]>> = (0..self.batch * h).map(|_| Vec::with_capacity(channels)).collect();
        for (i, plane) in self.data.chunks_mut(height * stride).enumerate() {
            let b = i / channels;
            for (y, row) in plane[pad * stride..].chunks_mut(stride).take(h).enumerate() {
                rows[b * h + y].push(&mut row[pad..pad + w]);
            }
        }
        rows
    }

    fn from_nhwc(x: &Nhwc, pad: usize, stride: usize) -> Self {
        let (c, h, w) = (x.channels, x.height, x.width);
        let mut planes = Self::empty([x.batch, c, h, w], pad, stride);
        // Row by row: each task reads one input row (contiguous) and writes it to every plane.
        planes
            .image_rows(c, h, w, pad)
            .into_par_iter()
            .enumerate()
            .for_each(|(i, mut rows)| {
                let source = &x.data[i * w * c..][..w * c];
                for (xx, pixel) in source.chunks_exact(c).enumerate() {
                    for (row, &v) in rows.iter_mut().zip(pixel) {
                        row[xx] = v;
                    }
                }
            });
        planes
    }

    fn from_nchw(x: &[f32], dims: [usize; 4], pad: usize, stride: usize) -> Self {
        let [batch, c, h, w] = dims;
        assert_eq!(x.len(), batch * c * h * w, "NCHW values of the stated shape");
        let mut planes = Self::empty(dims, pad, stride);
        planes
            .image_rows(c, h, w, pad)
            .into_par_iter()
            .enumerate()
            .for_each(|(i, rows)| {
                let (b, y) = (i / h, i % h);
                for (channel, row) in rows.into_iter().enumerate() {
                    row.copy_from_slice(&x[((b * c + channel) * h + y) * w..][..w]);
                }
            });
        planes
    }
}

/// The most f32 lanes a vector has (AVX-512): rows are padded for strips this wide.
const MAX_LANES: usize = 16;

/// Strips of one vector's pixels a task computes beside a group of `outputs` output channels:
/// `outputs × strips` vectors of accumulators in registers (12 at most, within AVX2's 16), each
/// input vector loaded serving `outputs` multiply-adds and each weight `strips`. A head with one
/// to three outputs takes its own group rather than a partly empty one of 4.
const fn strips_beside(outputs: usize) -> usize {
    if outputs >= 4 { 2 } else { 4 }
}

/// One output row of `O` channels (`outputs`, up to `O` of them) from zero-padded planes,
/// `T` strips of a vector's pixels at a time.
#[inline(always)]
fn direct_row<S: Simd, const O: usize, const T: usize>(args: DirectRowArgs) {
    let DirectRowArgs {
        planes,
        weight,
        input_channels: cin,
        kernel: k,
        padded_height: hp,
        row_stride: stride,
        y,
        out_w,
        outputs,
        bias,
        relu,
    } = args;
    let lanes = f32::lanes::<S>();
    let zero = 0.0f32.splat::<S>();
    let mut written = [0.0f32; MAX_LANES];
    for x0 in (0..out_w).step_by(T * lanes) {
        let mut acc = [[zero; O]; T];
        for c in 0..cin {
            let plane = &planes[c * hp * stride..][..hp * stride];
            for ky in 0..k {
                let row = &plane[(y + ky) * stride + x0..][..k - 1 + T * lanes];
                let taps = &weight[(c * k + ky) * k * O..][..k * O];
                let (taps, _) = taps.as_chunks::<O>();
                for (kx, w) in taps.iter().enumerate() {
                    let mut inputs = [zero; T];
                    for (t, input) in inputs.iter_mut().enumerate() {
                        *input = load::<S>(&row[kx + t * lanes..]);
                    }
                    for o in 0..O {
                        let w = w[o].splat::<S>();
                        for t in 0..T {
                            acc[t][o] = w.mul_add(inputs[t], acc[t][o]);
                        }
                    }
                }
            }
        }
        for (t, strip) in acc.iter().enumerate() {
            let x = x0 + t * lanes;
            if x >= out_w {
                break;
            }
            let n = lanes.min(out_w - x);
            for ((out, &a), &b) in outputs.iter_mut().zip(strip).zip(bias) {
                store::<S>(&mut written, a);
                for (o, &v) in out[x..x + n].iter_mut().zip(&written) {
                    *o = if relu { (v + b).max(0.0) } else { v + b };
                }
            }
        }
    }
}

/// One output row of a group of output channels.
struct DirectRowArgs<'a, 'b> {
    /// One image's zero-padded input planes, [C_in, padded height, row stride].
    planes: &'a [f32],
    /// The group's weights, [C_in, k, k, O].
    weight: &'a [f32],
    input_channels: usize,
    kernel: usize,
    padded_height: usize,
    row_stride: usize,
    /// The output row.
    y: usize,
    out_w: usize,
    /// The row of each of the group's output channels.
    outputs: &'a mut [&'b mut [f32]],
    bias: &'a [f32],
    relu: bool,
}
struct DirectRow<'a, 'b, const O: usize, const T: usize>(DirectRowArgs<'a, 'b>);

impl<const O: usize, const T: usize> LaneKernel for DirectRow<'_, '_, O, T> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        direct_row::<S, O, T>(self.0)
    }
}

/// Kernel sizes [`weight_gradient`] computes (its loops are unrolled per size).
pub const WEIGHT_GRADIENT_KERNELS: [usize; 2] = [5, 7];

/// `∂L/∂W` [C_out, C_in, k, k] of a `k × k` stride-1 convolution with zero padding `pad`, from
/// its input `x` [b, C_in, h, w] and output gradient `dy` [b, C_out, h', w'], both NCHW
/// values. `k` is one of [`WEIGHT_GRADIENT_KERNELS`].
///
/// A task takes two output channels and one input channel and sums, for each of their `k²`
/// taps, a vector of pixels at a time: `k` shifted input vectors serve `2k` multiply-adds. The sum of a
/// row goes into the total once per row, which keeps f32's rounding that of a few hundred terms.
pub fn weight_gradient(
    x: &[f32],
    [batch, cin, h, w]: [usize; 4],
    dy: &[f32],
    cout: usize,
    k: usize,
    pad: usize,
) -> Vec<f32> {
    assert!(
        WEIGHT_GRADIENT_KERNELS.contains(&k),
        "a {k}×{k} kernel is not unrolled here"
    );
    let (out_h, out_w) = ((h + 2 * pad + 1).saturating_sub(k), (w + 2 * pad + 1).saturating_sub(k));
    assert_eq!(
        dy.len(),
        batch * cout * out_h * out_w,
        "output gradient of the stated shape"
    );
    let mut gradient = zeroed(cout * cin * k * k);
    if out_h == 0 || out_w == 0 || batch == 0 {
        return gradient;
    }
    let dy_stride = out_w.div_ceil(MAX_LANES) * MAX_LANES;
    let planes = Planes::from_nchw(x, [batch, cin, h, w], pad, dy_stride + k - 1);
    // The output gradient's rows padded with zeros to whole strips, plus one zero channel
    // to pair with the last when C_out is odd.
    let pairs = cout.div_ceil(2);
    let mut rows = zeroed(batch * 2 * pairs * out_h * dy_stride);
    rows.par_chunks_mut(out_h * dy_stride)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (b, o) = (plane / (2 * pairs), plane % (2 * pairs));
            if o < cout {
                let src = &dy[(b * cout + o) * out_h * out_w..][..out_h * out_w];
                for (d, s) in dst.chunks_exact_mut(dy_stride).zip(src.chunks_exact(out_w)) {
                    d[..out_w].copy_from_slice(s);
                }
            }
        });
    let taps = k * k;
    let sums: Vec<Vec<f32>> = (0..pairs * cin)
        .into_par_iter()
        .map(|task| {
            let (pair, i) = (task / cin, task % cin);
            let mut sums = vec![0.0f32; 2 * taps];
            let geometry = GradientGeometry {
                batch,
                input_channels: cin,
                row_channels: 2 * pairs,
                out_h,
                dy_stride,
                padded_height: planes.height,
                plane_stride: planes.stride,
            };
            let args = WeightGradientArgs {
                planes: &planes.data[..],
                rows: &rows[..],
                geometry,
                pair,
                input_channel: i,
                sums: &mut sums[..],
            };
            match k {
                5 => vectorized_lanes(WeightGradientTask::<5>(args)),
                _ => vectorized_lanes(WeightGradientTask::<7>(args)),
            }
            sums
        })
        .collect();
    for (task, sums) in sums.iter().enumerate() {
        let (pair, i) = (task / cin, task % cin);
        for (half, sums) in sums.chunks_exact(taps).enumerate() {
            let o = 2 * pair + half;
            if o < cout {
                gradient[(o * cin + i) * taps..][..taps].copy_from_slice(sums);
            }
        }
    }
    gradient
}

/// The shapes [`weight_gradient`]'s tasks read.
#[derive(Debug, Clone, Copy)]
struct GradientGeometry {
    batch: usize,
    input_channels: usize,
    /// Channels of the padded output gradient's rows (C_out rounded up to pairs).
    row_channels: usize,
    out_h: usize,
    /// The row stride of the output gradient's rows.
    dy_stride: usize,
    padded_height: usize,
    /// The row stride of the padded input planes.
    plane_stride: usize,
}

/// One task of [`weight_gradient`]: output channels `2 pair` and `2 pair + 1` against one
/// input channel.
struct WeightGradientArgs<'a> {
    /// The zero-padded input planes.
    planes: &'a [f32],
    /// The output gradient's rows, padded to whole strips.
    rows: &'a [f32],
    geometry: GradientGeometry,
    pair: usize,
    input_channel: usize,
    /// The `2 × K²` sums.
    sums: &'a mut [f32],
}
struct WeightGradientTask<'a, const K: usize>(WeightGradientArgs<'a>);

impl<const K: usize> LaneKernel for WeightGradientTask<'_, K> {
    #[inline(always)]
    fn run<S: Simd>(self) {
        weight_gradient_task::<S, K>(self.0)
    }
}

/// The `2 × K²` sums of output channels `2 pair`, `2 pair + 1` against input channel `i`.
#[inline(always)]
fn weight_gradient_task<S: Simd, const K: usize>(args: WeightGradientArgs) {
    let WeightGradientArgs {
        planes,
        rows,
        geometry,
        pair,
        input_channel: i,
        sums,
    } = args;
    let GradientGeometry {
        batch,
        input_channels: cin,
        row_channels,
        out_h,
        dy_stride,
        padded_height: hp,
        plane_stride: stride,
    } = geometry;
    let lanes = f32::lanes::<S>();
    // The rows are padded to whole strips of MAX_LANES, so of any vector's lanes.
    let strips = dy_stride / lanes;
    let zero = 0.0f32.splat::<S>();
    let mut total0 = [[zero; K]; K];
    let mut total1 = [[zero; K]; K];
    for b in 0..batch {
        let plane = &planes[(b * cin + i) * hp * stride..][..hp * stride];
        let first = &rows[(b * row_channels + 2 * pair) * out_h * dy_stride..][..out_h * dy_stride];
        let second = &rows[(b * row_channels + 2 * pair + 1) * out_h * dy_stride..][..out_h * dy_stride];
        for y in 0..out_h {
            let d0 = &first[y * dy_stride..][..dy_stride];
            let d1 = &second[y * dy_stride..][..dy_stride];
            for (ky, (total0, total1)) in total0.iter_mut().zip(total1.iter_mut()).enumerate() {
                let row = &plane[(y + ky) * stride..][..stride];
                let mut acc0 = [zero; K];
                let mut acc1 = [zero; K];
                for s in 0..strips {
                    let x0 = s * lanes;
                    let g0 = load::<S>(&d0[x0..]);
                    let g1 = load::<S>(&d1[x0..]);
                    for kx in 0..K {
                        let v = load::<S>(&row[x0 + kx..]);
                        acc0[kx] = g0.mul_add(v, acc0[kx]);
                        acc1[kx] = g1.mul_add(v, acc1[kx]);
                    }
                }
                for kx in 0..K {
                    total0[kx] += acc0[kx];
                    total1[kx] += acc1[kx];
                }
            }
        }
    }
    for (half, channel) in [total0, total1].iter().enumerate() {
        for (ky, taps) in channel.iter().enumerate() {
            for (kx, lanes) in taps.iter().enumerate() {
                sums[half * K * K + ky * K + kx] = lanes.reduce_add();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;

    use super::*;
    use crate::cpu::winograd::to_vec;
    use crate::test_support::uniform;

    /// Largest |ours − burn| over the largest |burn|.
    fn relative_error(ours: &[f32], expected: &[f32]) -> f32 {
        assert_eq!(ours.len(), expected.len());
        let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        ours.iter().zip(expected).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn direct_heads_match_burns_convolution() {
        // Channels in whole vectors are read channels-last (groups of 1 to 4 outputs, maps
        // narrower and shorter than the kernel, no output at all), the others from planes.
        for &(batch, cin, cout, h, w, k, pad) in &[
            (1, 64, 3, 20, 17, 7, 3),
            (2, 32, 5, 11, 9, 7, 3),
            (1, 48, 2, 4, 10, 7, 3),
            (1, 16, 40, 12, 12, 7, 0),
            (1, 16, 1, 5, 3, 7, 3),
            (1, 16, 2, 6, 5, 7, 0),
            (2, 35, 10, 16, 16, 7, 0),
            (1, 108, 1, 9, 12, 7, 3),
            (1, 5, 4, 6, 5, 3, 1),
        ] {
            let x = uniform([batch, cin, h, w], 1.0);
            let weight = uniform([cout, cin, k, k], (1.0 / (k * k * cin) as f64).sqrt());
            let bias = uniform([cout], 0.1);
            let options = ConvOptions::new([1, 1], [pad, pad], [1, 1], 1);
            let expected = to_vec(conv2d(x.clone(), weight.clone(), Some(bias.clone()), options));
            let conv = DirectConv::new(weight, Some(bias), pad);
            let dims = x.dims();
            let from_nchw = conv.forward_nchw(&to_vec(x.clone()), dims, &Device::flex());
            let ours = conv.forward(&Nhwc::from_tensor(x), &Device::flex());
            assert_eq!(ours.dims(), from_nchw.dims());
            let (ours, from_nchw) = (to_vec(ours), to_vec(from_nchw));
            for (layout, values) in [("channels-last", &ours), ("planar", &from_nchw)] {
                let error = relative_error(values, &expected);
                assert!(
                    error < 1e-5,
                    "{cin}→{cout} {k}×{k} {h}×{w} from {layout}: relative error {error}"
                );
            }
        }
    }

    /// The weight gradient against `Σ dy · x` summed in f64 straight from its definition.
    #[test]
    fn weight_gradient_matches_its_definition() {
        for &(batch, cin, cout, h, w, k, pad) in &[
            (1, 3, 8, 21, 19, 7, 3),
            (2, 5, 3, 16, 13, 7, 0),
            (1, 4, 1, 9, 12, 5, 2),
            (2, 2, 4, 7, 30, 7, 3),
        ] {
            let (out_h, out_w) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
            let x = to_vec(uniform([batch, cin, h, w], 1.0));
            let dy = to_vec(uniform([batch, cout, out_h, out_w], 1.0));
            let ours = weight_gradient(&x, [batch, cin, h, w], &dy, cout, k, pad);
            let mut expected = vec![0.0f32; cout * cin * k * k];
            for o in 0..cout {
                for i in 0..cin {
                    for ky in 0..k {
                        for kx in 0..k {
                            let mut sum = 0.0f64;
                            for b in 0..batch {
                                for y in 0..out_h {
                                    for xx in 0..out_w {
                                        let (sy, sx) =
                                            ((y + ky) as isize - pad as isize, (xx + kx) as isize - pad as isize);
                                        if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                            continue;
                                        }
                                        let input = x[((b * cin + i) * h + sy as usize) * w + sx as usize];
                                        sum += (dy[((b * cout + o) * out_h + y) * out_w + xx] * input) as f64;
                                    }
                                }
                            }
                            expected[((o * cin + i) * k + ky) * k + kx] = sum as f32;
                        }
                    }
                }
            }
            let error = relative_error(&ours, &expected);
            assert!(error < 1e-5, "{cin}→{cout} {k}×{k} pad {pad}: relative error {error}");
        }
    }
}
