//! The perceptual loss's term `mean|a − b|` (`torch.abs(x_vgg[i] - y_vgg[i].detach()).mean()`)
//! as one autodiff operation on flex, `b` a constant:
//!
//! `L = Σ|a − b| / N`, `∂L/∂a = sign(a − b) · ∂L/∂L_out / N` (0 where they are equal, as torch's
//! `abs` backward gives).
//!
//! Composed of burn's operations it was a difference, an absolute value and a mean forward and
//! as many passes backward, each on one core, over VGG19's features of both frames (~8M values
//! at 256²): 60 ms of a vox-256 step's forward alone. Here one parallel pass reads both maps in
//! their storage (channels-last from VGG19's kernels) and keeps the signs (a byte each) for the
//! backward pass, which writes the gradient in one more. The sum is in f64, by fixed chunks in
//! order, so a step's loss is the same bits on every run.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::flex::{AutodiffFlexOp, on_autodiff_flex, primitive, values};
use super::layout::channels_last;
use super::winograd::Nhwc;

/// Values a task sums (and signs) at a time.
const CHUNK: usize = 1 << 15;

/// `mean|a − target|` as a 1-element tensor, `target` a constant (detached): on flex with
/// autodiff this module's operation, elsewhere burn's composition.
pub fn mean_absolute_difference(a: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let call = MeanAbsoluteCall { a: &a, target: &target };
    on_autodiff_flex(&call).unwrap_or_else(|| (a - target).abs().mean())
}

struct MeanAbsoluteCall<'a> {
    a: &'a Tensor<4>,
    target: &'a Tensor<4>,
}

impl AutodiffFlexOp for MeanAbsoluteCall<'_> {
    type Output = Tensor<1>;

    fn on_autodiff<C>(&self) -> Option<Tensor<1>>
    where
        C: CheckpointStrategy,
        DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
    {
        if self.a.dims() != self.target.dims() {
            return None;
        }
        let a = self.a.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
        let target = self.target.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
        let (maps, targets) = (channels_last(a.primitive()), channels_last(target.primitive()));
        let count = maps.data.len();
        let mean = |sum: f64| {
            primitive(Tensor::<1>::from_data(
                TensorData::new(vec![(sum / count as f64) as f32], [1]),
                &Device::flex(),
            ))
        };
        let loss = match MeanAbsoluteBackward.prepare::<C>([a.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let mut signs = vec![0i8; count];
                let sum = chunk_sums(&maps.data, &targets.data, Some(&mut signs));
                let state = SignState {
                    signs: signs.into(),
                    dims: [maps.batch, maps.height, maps.width, maps.channels],
                };
                prep.finish(state, mean(sum))
            }
            OpsKind::UnTracked(prep) => prep.finish(mean(chunk_sums(&maps.data, &targets.data, None))),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex, C>>(loss))
    }
}

/// `Σ|a − b|` in f64, by chunks summed in order; with `signs`, `sign(a − b)` of each value too.
fn chunk_sums(a: &[f32], b: &[f32], signs: Option<&mut [i8]>) -> f64 {
    let difference = |x: f32, y: f32| f64::from((x - y).abs());
    let sums: Vec<f64> = match signs {
        Some(signs) => a
            .par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .zip(signs.par_chunks_mut(CHUNK))
            .map(|((a, b), signs)| {
                let mut sum = 0.0;
                for ((&x, &y), sign) in a.iter().zip(b).zip(signs) {
                    *sign = match x - y {
                        d if d > 0.0 => 1,
                        d if d < 0.0 => -1,
                        _ => 0,
                    };
                    sum += difference(x, y);
                }
                sum
            })
            .collect(),
        None => a
            .par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .map(|(a, b)| a.iter().zip(b).map(|(&x, &y)| difference(x, y)).sum::<f64>())
            .collect(),
    };
    sums.into_iter().sum()
}

/// `sign(a − b)` of every value, channels-last, and the maps' channels-last shape.
#[derive(Clone)]
struct SignState {
    signs: Arc<[i8]>,
    dims: [usize; 4],
}

impl std::fmt::Debug for SignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignState")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct MeanAbsoluteBackward;

impl Backward<Flex, 1> for MeanAbsoluteBackward {
    type State = SignState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_a else {
            return;
        };
        let signs = &ops.state.signs;
        let scale = values(&grad)[0] / signs.len().max(1) as f32;
        // Written once by the pool: a zeroed buffer first was a memset on this thread alone
        // (`super::buffer`).
        let da: Vec<f32> = signs
            .par_iter()
            .with_min_len(CHUNK)
            .map(|&sign| f32::from(sign) * scale)
            .collect();
        let da = Nhwc::owned(da, ops.state.dims).into_tensor(&Device::flex());
        grads.register::<Flex>(node.id, primitive(da));
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::test_support::assert_close;

    /// Loss and gradient as burn's composition, for planar and channels-last maps, equal values
    /// (sign 0) included.
    #[test]
    fn matches_burns_composition() {
        let device = Device::flex().autodiff();
        for (batch, channels, height, width) in [(1, 3, 5, 7), (2, 64, 33, 31)] {
            let shape = [batch, channels, height, width];
            let a = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
            let mut b = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
            // A few values equal to `a`'s: their gradient is 0.
            b = b.slice_assign([0..1, 0..1, 0..2, 0..3], a.clone().slice([0..1, 0..1, 0..2, 0..3]));
            let planar_a = Tensor::<4>::from_data(a.to_data(), &device);
            let stored = Nhwc::owned(
                a.clone()
                    .permute([0, 2, 3, 1])
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec()
                    .expect("f32"),
                [batch, height, width, channels],
            )
            .into_tensor(&Device::flex());
            let channels_last_a = Tensor::<4>::from_data(stored.to_data(), &device);
            assert_eq!(channels_last_a.to_data(), planar_a.to_data());
            for (name, a) in [("planar", planar_a), ("channels-last", Tensor::<4>::from_inner(stored))] {
                let a = a.require_grad();
                let reference_a = Tensor::<4>::from_data(a.to_data(), &device).require_grad();
                let reference = (reference_a.clone() - b.clone().detach()).abs().mean();
                let ours = mean_absolute_difference(a.clone(), b.clone().detach());
                let what = format!("{name} {shape:?}");
                assert_close(
                    &format!("loss {what}"),
                    ours.clone().inner(),
                    reference.clone().inner(),
                    1e-6,
                );
                let ours_da = a.grad(&(ours * 3.0).backward()).expect("da");
                let reference_da = reference_a.grad(&(reference * 3.0).backward()).expect("da");
                assert_close(&format!("gradient {what}"), ours_da, reference_da, 1e-6);
                let zero = ours_da_at_equal(&a, &b);
                assert_eq!(zero, 0.0, "equal values take no gradient ({what})");
            }
        }
    }

    /// The gradient where `a` and `b` were made equal.
    fn ours_da_at_equal(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
        let da = a
            .grad(&mean_absolute_difference(a.clone(), b.clone().detach()).backward())
            .expect("da");
        da.slice([0..1, 0..1, 0..2, 0..3]).abs().sum().into_scalar()
    }

    /// The same bits on every run: the chunks' sums are added in order.
    #[test]
    fn the_loss_is_deterministic() {
        let device = Device::flex().autodiff();
        let shape = [1, 64, 64, 64];
        let a = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let b = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
        let loss = || -> f32 { mean_absolute_difference(a.clone(), b.clone()).into_scalar() };
        let first = loss();
        for _ in 0..5 {
            assert_eq!(loss().to_bits(), first.to_bits());
        }
    }
}
