//! The bilinear `grid_sample` on the CPU (zero padding; `align_corners=False`, torch's default
//! and FOMM's, or `True`, TPSMM's), as one autodiff operation in training and a parallel one in
//! inference. FOMM samples the source's 256 features at 64² by the dense motion, and the
//! downsampled source by each sparse motion; on `Autodiff<Flex>` burn composes the sampling of
//! slices, gathers and clamps (and their scatters backward), 140–160 ms for the features forward
//! and backward, and on plain flex its sampling runs on one core.
//!
//! Per output pixel, with `ix = (x + 1) W/2 − 1/2` (`(x + 1)(W − 1)/2` with aligned corners;
//! likewise `iy`) and its four neighbours:
//!
//! `out = Σ_corners w_corner · in[corner]`, `w_nw = (1 − fx)(1 − fy)`, … (`fx = ix − ⌊ix⌋`),
//!
//! `∂L/∂in[corner] += w_corner · ∂L/∂out`, and `∂L/∂x = ∂ix/∂x · Σ_c ∂L/∂out · ∂out/∂ix`
//! (likewise `y`), corners outside the image counting as zeros, as torch's kernel computes it.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::tensor::ops::GridSampleOptions;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::buffer::zeroed;
use super::flex::{AutodiffFlexOp, FlexPrimitive, on_autodiff_flex, primitive as flex_primitive, values};
use super::layout::planar_values;

/// `input.grid_sample_2d(grid, GridSampleOptions::default())`: input [b, c, H, W], grid
/// [b, h, w, 2] of (x, y) in [−1, 1] → [b, c, h, w]; by this operation on flex with autodiff.
pub fn grid_sample(input: Tensor<4>, grid: Tensor<4>) -> Tensor<4> {
    sample(input, grid, false)
}

/// [`grid_sample`] with `align_corners=True` (TPSMM's): −1 and 1 are the centres of the corner
/// pixels.
pub fn grid_sample_align_corners(input: Tensor<4>, grid: Tensor<4>) -> Tensor<4> {
    sample(input, grid, true)
}

fn sample(input: Tensor<4>, grid: Tensor<4>, align_corners: bool) -> Tensor<4> {
    let call = GridSampleCall {
        input: &input,
        grid: &grid,
        align_corners,
    };
    on_autodiff_flex(&call)
        .or_else(|| call.on_plain_flex())
        .unwrap_or_else(|| input.grid_sample_2d(grid, GridSampleOptions::default().with_align_corners(align_corners)))
}

/// One sampling's arguments, for [`on_autodiff_flex`].
struct GridSampleCall<'a> {
    input: &'a Tensor<4>,
    grid: &'a Tensor<4>,
    align_corners: bool,
}

impl GridSampleCall<'_> {
    /// The sampling alone, where the tensors are on plain flex (an animation's warps; flex's
    /// own `grid_sample` runs on one core).
    fn on_plain_flex(&self) -> Option<Tensor<4>> {
        let geometry = Geometry::of(self.input, self.grid, self.align_corners)?;
        let input = self.input.clone().try_into_primitive::<Flex>().ok()?;
        let grid = self.grid.clone().try_into_primitive::<Flex>().ok()?;
        let taps = Taps::new(&values(&grid), &geometry);
        let output = taps.sample(&planar_values(&input), &geometry);
        let [batch, channels, out_h, out_w] = geometry.output_dims();
        Some(Tensor::from_data(
            TensorData::new(output, [batch, channels, out_h, out_w]),
            &self.input.device(),
        ))
    }
}

impl AutodiffFlexOp for GridSampleCall<'_> {
    type Output = Tensor<4>;

    fn on_autodiff<C>(&self) -> Option<Tensor<4>>
    where
        C: CheckpointStrategy,
        DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
    {
        grid_sample_on::<C>(self.input, self.grid, self.align_corners)
    }
}

fn grid_sample_on<C>(input: &Tensor<4>, grid: &Tensor<4>, align_corners: bool) -> Option<Tensor<4>>
where
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let geometry = Geometry::of(input, grid, align_corners)?;
    let [batch, channels, out_h, out_w] = geometry.output_dims();
    let input = input.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let grid = grid.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let taps = Taps::new(&values(grid.primitive()), &geometry);
    let output = taps.sample(&planar_values(input.primitive()), &geometry);
    let output = flex_primitive(Tensor::<4>::from_data(
        TensorData::new(output, [batch, channels, out_h, out_w]),
        &Device::flex(),
    ));
    let y = match GridSampleBackward
        .prepare::<C>([input.node(), grid.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = GridSampleState {
                input: input.primitive().clone(),
                grid_dims: [batch, out_h, out_w, 2],
                taps,
                geometry,
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(y))
}

#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
    out_pixels: usize,
    align_corners: bool,
}

impl Geometry {
    /// The sampling of `input` [b, c, H, W] at `grid` [b, h, w, 2]; `None` for other shapes
    /// (burn's operation then answers them).
    fn of(input: &Tensor<4>, grid: &Tensor<4>, align_corners: bool) -> Option<Self> {
        let [batch, channels, height, width] = input.dims();
        let [grid_batch, out_h, out_w, two] = grid.dims();
        (grid_batch == batch && two == 2).then_some(Self {
            batch,
            channels,
            height,
            width,
            out_h,
            out_w,
            out_pixels: out_h * out_w,
            align_corners,
        })
    }

    /// [b, c, h, w] of the output.
    fn output_dims(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out_h, self.out_w]
    }

    /// `∂ix/∂x` and `∂iy/∂y`: pixel units per grid unit.
    fn scale(&self) -> (f32, f32) {
        let span = |n: usize| if self.align_corners { n as f32 - 1.0 } else { n as f32 };
        (span(self.width) / 2.0, span(self.height) / 2.0)
    }
}

/// Per (image, output pixel): the four neighbours' flat indices in the input plane (`None`
/// outside it), their bilinear weights, and the fractional offsets the gradients need.
#[derive(Debug, Clone)]
struct Taps {
    /// [b · pixels] × (x0 y0, x0 y1, x1 y0, x1 y1), `x0 = ⌊ix⌋`, `x1 = x0 + 1`
    index: Vec<[Option<u32>; 4]>,
    weight: Vec<[f32; 4]>,
    /// `ix − ⌊ix⌋`, `iy − ⌊iy⌋`
    fraction: Vec<[f32; 2]>,
}

impl Taps {
    fn new(grid: &[f32], g: &Geometry) -> Self {
        let (w, h) = (g.width as f32, g.height as f32);
        let (scale_x, scale_y) = g.scale();
        // Without aligned corners, −1 is the outer edge of the first pixel, half a pixel out.
        let offset = if g.align_corners { 0.0 } else { 0.5 };
        let ((index, weight), fraction) = grid
            .par_chunks_exact(2)
            .map(|xy| {
                // torch's unnormalisation.
                let ix = (xy[0] + 1.0) * scale_x - offset;
                let iy = (xy[1] + 1.0) * scale_y - offset;
                let (x0, y0) = (ix.floor(), iy.floor());
                let (fx, fy) = (ix - x0, iy - y0);
                let at = |x: f32, y: f32| {
                    let inside = x >= 0.0 && y >= 0.0 && x < w && y < h;
                    inside.then(|| (y as usize * g.width + x as usize) as u32)
                };
                // Corners in the order burn's composed grid_sample sums them, so that the
                // forward pass rounds exactly as that one did (FOMM's feature-matching
                // gradients are L1 signs, and the parity fixtures see a last-bit change).
                let index = [at(x0, y0), at(x0, y0 + 1.0), at(x0 + 1.0, y0), at(x0 + 1.0, y0 + 1.0)];
                let weight = [(1.0 - fx) * (1.0 - fy), (1.0 - fx) * fy, fx * (1.0 - fy), fx * fy];
                ((index, weight), [fx, fy])
            })
            .unzip();
        Self {
            index,
            weight,
            fraction,
        }
    }

    /// The output, a plane per task.
    fn sample(&self, input: &[f32], g: &Geometry) -> Vec<f32> {
        let plane = g.height * g.width;
        let mut out = zeroed(g.batch * g.channels * g.out_pixels);
        out.par_chunks_mut(g.out_pixels.max(1))
            .enumerate()
            .for_each(|(task, out)| {
                let b = task / g.channels;
                let source = &input[task * plane..][..plane];
                let pixels = b * g.out_pixels..(b + 1) * g.out_pixels;
                for ((out, index), weight) in out
                    .iter_mut()
                    .zip(&self.index[pixels.clone()])
                    .zip(&self.weight[pixels])
                {
                    *out = index
                        .iter()
                        .zip(weight)
                        .map(|(i, w)| i.map_or(0.0, |i| source[i as usize]) * w)
                        .sum();
                }
            });
        out
    }
}

#[derive(Debug, Clone)]
struct GridSampleState {
    input: FlexPrimitive,
    grid_dims: [usize; 4],
    taps: Taps,
    geometry: Geometry,
}

#[derive(Debug)]
struct GridSampleBackward;

impl Backward<Flex, 2> for GridSampleBackward {
    type State = GridSampleState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_input, node_grid] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let GridSampleState {
            input,
            grid_dims,
            taps,
            geometry: g,
        } = ops.state;
        let dy = planar_values(&grad);
        let device = Device::flex();
        let plane = g.height * g.width;
        if let Some(node) = node_input {
            // Each plane's gradient is scattered by its own task: no two tasks write one value.
            let mut dx = zeroed(g.batch * g.channels * plane);
            dx.par_chunks_mut(plane.max(1)).enumerate().for_each(|(task, dx)| {
                let b = task / g.channels;
                let dy = &dy[task * g.out_pixels..][..g.out_pixels];
                let pixels = b * g.out_pixels..(b + 1) * g.out_pixels;
                for ((&dy, index), weight) in dy.iter().zip(&taps.index[pixels.clone()]).zip(&taps.weight[pixels]) {
                    for (i, w) in index.iter().zip(weight) {
                        if let Some(i) = i {
                            dx[*i as usize] += w * dy;
                        }
                    }
                }
            });
            let dims = [g.batch, g.channels, g.height, g.width];
            let dx = Tensor::<4>::from_data(TensorData::new(dx, dims), &device);
            grads.register::<Flex>(node.id, flex_primitive(dx));
        }
        if let Some(node) = node_grid {
            let input = planar_values(&input);
            let (scale_x, scale_y) = g.scale();
            // A pixel per item, summing over the channels.
            let mut dgrid = zeroed(g.batch * g.out_pixels * 2);
            dgrid.par_chunks_mut(2).enumerate().for_each(|(pixel, out)| {
                let (b, p) = (pixel / g.out_pixels.max(1), pixel % g.out_pixels.max(1));
                let index = taps.index[pixel];
                let [fx, fy] = taps.fraction[pixel];
                let (mut gx, mut gy) = (0.0f32, 0.0f32);
                for c in 0..g.channels {
                    let source = &input[(b * g.channels + c) * plane..][..plane];
                    let value = |k: usize| index[k].map_or(0.0, |i| source[i as usize]);
                    let (nw, sw, ne, se) = (value(0), value(1), value(2), value(3));
                    let dy = dy[(b * g.channels + c) * g.out_pixels + p];
                    gx += dy * ((ne - nw) * (1.0 - fy) + (se - sw) * fy);
                    gy += dy * ((sw - nw) * (1.0 - fx) + (se - ne) * fx);
                }
                out[0] = gx * scale_x;
                out[1] = gy * scale_y;
            });
            let dgrid = Tensor::<4>::from_data(TensorData::new(dgrid, grid_dims), &device);
            grads.register::<Flex>(node.id, flex_primitive(dgrid));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::test_support::assert_close;

    /// Output and both gradients against burn's composed `grid_sample_2d`, with grids that
    /// reach past the image (zero padding) and an output of another size than the input.
    #[test]
    fn grid_sample_matches_burns_with_gradients() {
        let device = Device::flex().autodiff();
        for (align_corners, [batch, channels, h, w], [out_h, out_w]) in [
            (false, [1, 3, 16, 16], [16, 16]),
            (false, [2, 5, 9, 13], [11, 7]),
            (false, [3, 1, 4, 4], [6, 6]),
            (true, [2, 5, 9, 13], [11, 7]),
            (true, [1, 2, 16, 16], [16, 16]),
        ] {
            let input = Tensor::<4>::random([batch, channels, h, w], Distribution::Uniform(-1.0, 1.0), &device);
            let grid = Tensor::<4>::random([batch, out_h, out_w, 2], Distribution::Uniform(-1.2, 1.2), &device);
            let weighting = Tensor::<4>::random(
                [batch, channels, out_h, out_w],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let run = |ours: bool| {
                let input = Tensor::<4>::from_data(input.to_data(), &device).require_grad();
                let grid = Tensor::<4>::from_data(grid.to_data(), &device).require_grad();
                let y = match (ours, align_corners) {
                    (true, false) => grid_sample(input.clone(), grid.clone()),
                    (true, true) => grid_sample_align_corners(input.clone(), grid.clone()),
                    (false, _) => input.clone().grid_sample_2d(
                        grid.clone(),
                        GridSampleOptions::default().with_align_corners(align_corners),
                    ),
                };
                let grads = (y.clone() * weighting.clone()).sum().backward();
                (
                    y.inner(),
                    input.grad(&grads).expect("d input"),
                    grid.grad(&grads).expect("d grid"),
                )
            };
            let ((y, d_input, d_grid), (y_ref, d_input_ref, d_grid_ref)) = (run(true), run(false));
            let shape = format!("{batch}×{channels}×{h}×{w} align_corners={align_corners}");
            assert_close(&format!("output {shape}"), y, y_ref.clone(), 1e-4);
            assert_close(&format!("input gradient {shape}"), d_input, d_input_ref, 1e-4);
            assert_close(&format!("grid gradient {shape}"), d_grid, d_grid_ref, 1e-4);
            // Without autodiff (an animation's warps), planar and stored channels-last alike.
            let (plain_input, plain_grid) = (input.inner(), grid.inner());
            let channels_last =
                crate::cpu::winograd::Nhwc::from_tensor(plain_input.clone()).into_tensor(&Device::flex());
            for (storage, input) in [("planar", plain_input), ("channels-last", channels_last)] {
                let plain = if align_corners {
                    grid_sample_align_corners(input, plain_grid.clone())
                } else {
                    grid_sample(input, plain_grid.clone())
                };
                assert_close(&format!("plain output {shape}, {storage}"), plain, y_ref.clone(), 1e-4);
            }
        }
    }
}
