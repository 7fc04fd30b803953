//! VGG19's 2×2 max pooling (stride 2, odd edges dropped, as torch's `MaxPool2d(2, 2)`) on
//! channels-last maps, as one autodiff operation on flex, so that the perceptual loss's VGG19
//! stays stored channels-last ([`super::layout`]) from its first convolution to its last:
//!
//! `y[p] = max_{q ∈ window(p)} x[q]`, `∂L/∂x[q] = ∂L/∂y[p]` where `q` is the window's first
//! largest value, 0 elsewhere.
//!
//! The forward pass keeps which of the four won (a byte per output value), not the input.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

use super::buffer::zeroed;
use super::flex::{FlexPrimitive, FlexUnaryOp, on_flex, primitive};
use super::layout::channels_last;
use super::winograd::Nhwc;

/// `max_pool2d(x, 2, 2)`, `[b, c, h, w]` → `[b, c, h/2, w/2]`: on flex (with autodiff or
/// without) this module's kernel, its output stored channels-last; elsewhere burn's.
pub fn max_pool2(x: Tensor<4>) -> Tensor<4> {
    on_flex(&MaxPool2, &x).unwrap_or_else(|| max_pool2d(x, MaxPoolOptions::new([2, 2])))
}

struct MaxPool2;

impl FlexUnaryOp for MaxPool2 {
    fn record<C: CheckpointStrategy>(&self, x: FloatTensor<Autodiff<Flex, C>>) -> FloatTensor<Autodiff<Flex, C>> {
        let input = channels_last(x.primitive());
        match MaxPool2Backward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (output, winners) = pool(&input, true);
                let state = PoolState {
                    winners: winners.into(),
                    input_dims: [input.batch, input.height, input.width, input.channels],
                };
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(pool(&input, false).0),
        }
    }

    fn plain(&self, x: FlexPrimitive) -> FlexPrimitive {
        pool(&channels_last(&x), false).0
    }
}

/// The pooled maps and, if asked, the winner (0–3, row-major in its window) of every output value.
fn pool(maps: &Nhwc<'_>, keep_winners: bool) -> (FlexPrimitive, Vec<u8>) {
    let (x, batch, height, width, channels) = (&maps.data, maps.batch, maps.height, maps.width, maps.channels);
    let (out_h, out_w) = (height / 2, width / 2);
    let row = out_w * channels;
    let mut output = zeroed(batch * out_h * row);
    let mut winners = vec![0u8; if keep_winners { output.len() } else { 0 }];
    let input_row = width * channels;
    let pool_row = |r: usize, out: &mut [f32], winners: Option<&mut [u8]>| {
        let (b, y) = (r / out_h.max(1), r % out_h.max(1));
        let top = &x[(b * height + 2 * y) * input_row..][..input_row];
        let bottom = &x[(b * height + 2 * y + 1) * input_row..][..input_row];
        let mut winners = winners;
        for (ox, pixel) in out.chunks_exact_mut(channels).enumerate() {
            let (left, right) = (2 * ox * channels, (2 * ox + 1) * channels);
            for (k, value) in pixel.iter_mut().enumerate() {
                let window = [top[left + k], top[right + k], bottom[left + k], bottom[right + k]];
                let mut best = 0;
                for (i, &v) in window.iter().enumerate().skip(1) {
                    if v > window[best] {
                        best = i;
                    }
                }
                *value = window[best];
                if let Some(winners) = winners.as_deref_mut() {
                    winners[ox * channels + k] = best as u8;
                }
            }
        }
    };
    if row > 0 {
        if keep_winners {
            output
                .par_chunks_mut(row)
                .zip(winners.par_chunks_mut(row))
                .enumerate()
                .for_each(|(r, (out, winners))| pool_row(r, out, Some(winners)));
        } else {
            output
                .par_chunks_mut(row)
                .enumerate()
                .for_each(|(r, out)| pool_row(r, out, None));
        }
    }
    let output = Nhwc::owned(output, [batch, out_h, out_w, channels]).into_tensor(&Device::flex());
    (primitive(output), winners)
}

/// Which input value of its window each output value came from, and the input's shape.
#[derive(Clone)]
struct PoolState {
    winners: Arc<[u8]>,
    input_dims: [usize; 4],
}

impl std::fmt::Debug for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolState")
            .field("input_dims", &self.input_dims)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct MaxPool2Backward;

impl Backward<Flex, 1> for MaxPool2Backward {
    type State = PoolState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let [batch, height, width, channels] = ops.state.input_dims;
        let (out_h, out_w) = (height / 2, width / 2);
        let dy = channels_last(&grad);
        let dy = &dy.data;
        let winners = &ops.state.winners;
        let (input_row, row) = (width * channels, out_w * channels);
        let mut dx = zeroed(batch * height * input_row);
        if row > 0 {
            // Each output row spreads into its own two input rows (an odd last row stays zero).
            for (b, image) in dx.chunks_mut(height * input_row).enumerate() {
                image
                    .par_chunks_mut(2 * input_row)
                    .take(out_h)
                    .enumerate()
                    .for_each(|(y, rows)| {
                        let at = (b * out_h + y) * row;
                        let (dy, winners) = (&dy[at..][..row], &winners[at..][..row]);
                        let (top, bottom) = rows.split_at_mut(input_row);
                        for (i, (&g, &w)) in dy.iter().zip(winners.iter()).enumerate() {
                            let (ox, k) = (i / channels, i % channels);
                            let column = (2 * ox + usize::from(w & 1)) * channels + k;
                            if w < 2 {
                                top[column] = g;
                            } else {
                                bottom[column] = g;
                            }
                        }
                    });
            }
        }
        let dx = Nhwc::owned(dx, ops.state.input_dims).into_tensor(&Device::flex());
        grads.register::<Flex>(node.id, primitive(dx));
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use burn::tensor::module::max_pool2d;
    use burn::tensor::ops::MaxPoolOptions;

    use super::*;
    use crate::test_support::assert_close;

    /// Output and input gradient as burn's max pooling of the NCHW maps, odd sizes included;
    /// a map with ties (ReLU's zeros) routes each window's gradient to one value only.
    #[test]
    fn matches_burns_max_pool_on_channels_last_maps() {
        let device = Device::flex().autodiff();
        for (batch, channels, height, width) in [(1, 3, 8, 8), (2, 16, 9, 7), (1, 64, 32, 33)] {
            let x = Tensor::<4>::random(
                [batch, channels, height, width],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let weighting = Tensor::<4>::random(
                [batch, channels, height / 2, width / 2],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let shape = format!("{batch}×{channels} at {height}×{width}");

            let reference_x = Tensor::<4>::from_data(x.to_data(), &device).require_grad();
            let reference = max_pool2d(reference_x.clone(), MaxPoolOptions::new([2, 2]));
            let reference_dx = reference_x
                .grad(&(reference.clone() * weighting.clone()).sum().backward())
                .expect("dx");

            let ours_x = Tensor::<4>::from_data(x.to_data(), &device).require_grad();
            let ours = max_pool2(ours_x.clone());
            let ours_dx = ours_x.grad(&(ours.clone() * weighting).sum().backward()).expect("dx");
            assert_close(&format!("output {shape}"), ours.inner(), reference.inner(), 0.0);
            assert_close(&format!("input gradient {shape}"), ours_dx, reference_dx, 0.0);
        }

        let ties = Tensor::<4>::zeros([1, 4, 6, 6], &device).require_grad();
        let pooled = max_pool2(ties.clone());
        let dx = ties.grad(&pooled.sum().backward()).expect("dx");
        let total: f32 = dx.sum().into_scalar();
        assert_eq!(total, 36.0, "one value per window takes the gradient");
    }

    /// Without autodiff it pools too, a channels-last input read in place.
    #[test]
    fn plain_flex_pools() {
        // Channels-last values [1, 2, 2, 2]: channel 0 is 1, 3, −1, 4; channel 1 is 5, 2, 0, 7.
        let values = vec![1.0, 5.0, 3.0, 2.0, -1.0, 0.0, 4.0, 7.0];
        let x = Nhwc::owned(values, [1, 2, 2, 2]).into_tensor(&Device::flex());
        let pooled = max_pool2(x);
        assert_eq!(pooled.dims(), [1, 2, 1, 1]);
        assert_eq!(
            pooled.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32"),
            vec![4.0, 7.0]
        );
    }
}
