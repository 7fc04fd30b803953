//! The training step's batch norm + ReLU on the CPU, as one autodiff operation: every FOMM
//! block applies `relu(BN(x))` with the batch's statistics,
//!
//! `y = max(0, z)`, `z = γ x̂ + β`, `x̂ = (x − μ_B) / √(σ²_B + ε)`,
//!
//! whose gradient is (with `dz = dy · [z > 0]`, N values per channel)
//!
//! `∂L/∂β = Σ dz`, `∂L/∂γ = Σ dz x̂`, `∂L/∂x = γ / √(σ²_B + ε) · (dz − ∂L/∂β / N − x̂ ∂L/∂γ / N)`.
//!
//! burn's `batch_norm_train` composes it of about ten tensor passes forward and fifteen
//! backward, and the ReLU adds its own; here the forward pass reads the input twice and writes
//! the output once, the backward pass reads its three inputs twice and writes once. The sums
//! are taken in f64.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::training_conv::{primitive as flex_primitive, values};

type FlexPrimitive = FloatTensor<Flex>;

/// `relu(batch_norm_train(x))` and the batch's mean and biased variance (detached), or `None`
/// when the tensors are not on flex with autodiff (the caller then composes burn's operations).
pub fn batch_norm_relu_train(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    on_autodiff_flex::<NoCheckpointing>(x, gamma, beta, epsilon)
        .or_else(|| on_autodiff_flex::<BalancedCheckpointing>(x, gamma, beta, epsilon))
}

fn on_autodiff_flex<C>(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)>
where
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let device = x.device();
    let dims = x.dims();
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let gamma = gamma.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let beta = beta.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let gamma_values = values(gamma.primitive()).into_owned();
    let beta_values = values(beta.primitive());
    let statistics = Statistics::of(&values(x.primitive()), dims, epsilon);
    let output = statistics.forward(&values(x.primitive()), dims, &gamma_values, &beta_values);
    let output = flex_primitive(Tensor::<4>::from_data(TensorData::new(output, dims), &Device::flex()));
    let (mean, variance) = (statistics.mean_f32(), statistics.variance_f32());
    let y = match BatchNormReluBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = BatchNormState {
                x: x.primitive().clone(),
                y: output.clone(),
                gamma: gamma_values,
                statistics,
                dims,
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    let channels = dims[1];
    Some((
        Tensor::from_primitive::<Autodiff<Flex, C>>(y),
        Tensor::from_data(TensorData::new(mean, [channels]), &device),
        Tensor::from_data(TensorData::new(variance, [channels]), &device),
    ))
}

/// Per channel: the batch mean and `1 / √(σ² + ε)`, and the biased variance σ².
#[derive(Debug, Clone)]
struct Statistics {
    mean: Vec<f64>,
    variance: Vec<f64>,
    inverse_std: Vec<f64>,
}

impl Statistics {
    /// Two passes per channel (the mean, then the squared deviations), in f64.
    fn of(x: &[f32], [batch, channels, h, w]: [usize; 4], epsilon: f64) -> Self {
        let pixels = h * w;
        let count = (batch * pixels).max(1) as f64;
        let (mean, variance): (Vec<f64>, Vec<f64>) = (0..channels)
            .into_par_iter()
            .map(|c| {
                let planes = || (0..batch).map(move |b| &x[(b * channels + c) * pixels..][..pixels]);
                let mean = planes().map(sum).sum::<f64>() / count;
                let deviations = planes().map(|p| squared_deviations(p, mean as f32)).sum::<f64>();
                (mean, deviations / count)
            })
            .unzip();
        let inverse_std = variance.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect();
        Self {
            mean,
            variance,
            inverse_std,
        }
    }

    fn mean_f32(&self) -> Vec<f32> {
        self.mean.iter().map(|&m| m as f32).collect()
    }

    fn variance_f32(&self) -> Vec<f32> {
        self.variance.iter().map(|&v| v as f32).collect()
    }

    /// `x̂ = scale · x + shift` per channel.
    fn normalization(&self, c: usize) -> (f32, f32) {
        let scale = self.inverse_std[c];
        (scale as f32, (-self.mean[c] * scale) as f32)
    }

    /// `max(0, γ x̂ + β)`, a plane per task.
    fn forward(&self, x: &[f32], [_, channels, h, w]: [usize; 4], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
        let pixels = (h * w).max(1);
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(pixels)
            .zip(x.par_chunks(pixels))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let c = plane % channels;
                let (norm_scale, norm_shift) = self.normalization(c);
                let (scale, shift) = (gamma[c] * norm_scale, gamma[c] * norm_shift + beta[c]);
                for (out, &v) in y.iter_mut().zip(x) {
                    *out = (v * scale + shift).max(0.0);
                }
            });
        y
    }
}

/// Σ in f64, by f32 blocks short enough to keep their rounding small.
fn sum(values: &[f32]) -> f64 {
    values.chunks(256).map(|block| block.iter().sum::<f32>() as f64).sum()
}

fn squared_deviations(values: &[f32], mean: f32) -> f64 {
    values
        .chunks(256)
        .map(|block| block.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() as f64)
        .sum()
}

/// What the backward step needs: the input and output (shared with the graph, not copied),
/// γ and the statistics.
#[derive(Debug, Clone)]
struct BatchNormState {
    x: FlexPrimitive,
    y: FlexPrimitive,
    gamma: Vec<f32>,
    statistics: Statistics,
    dims: [usize; 4],
}

#[derive(Debug)]
struct BatchNormReluBackward;

impl Backward<Flex, 3> for BatchNormReluBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let state = ops.state;
        let [batch, channels, h, w] = state.dims;
        let pixels = (h * w).max(1);
        let (x, y, dy) = (values(&state.x), values(&state.y), values(&grad));
        let stats = &state.statistics;
        // ∂L/∂β and ∂L/∂γ per channel.
        let (beta_grad, gamma_grad): (Vec<f64>, Vec<f64>) = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (scale, shift) = stats.normalization(c);
                let (mut d_beta, mut d_gamma) = (0.0f64, 0.0f64);
                for b in 0..batch {
                    let at = (b * channels + c) * pixels;
                    let (x, y, dy) = (&x[at..][..pixels], &y[at..][..pixels], &dy[at..][..pixels]);
                    for ((x, y), dy) in x.chunks(256).zip(y.chunks(256)).zip(dy.chunks(256)) {
                        let (mut block_beta, mut block_gamma) = (0.0f32, 0.0f32);
                        for ((&x, &y), &dy) in x.iter().zip(y).zip(dy) {
                            let dz = if y > 0.0 { dy } else { 0.0 };
                            block_beta += dz;
                            block_gamma += dz * (x * scale + shift);
                        }
                        d_beta += block_beta as f64;
                        d_gamma += block_gamma as f64;
                    }
                }
                (d_beta, d_gamma)
            })
            .unzip();
        let device = Device::flex();
        if let Some(node) = node_x {
            let count = (batch * pixels) as f64;
            let mut dx = vec![0.0f32; x.len()];
            dx.par_chunks_mut(pixels).enumerate().for_each(|(plane, dx)| {
                let c = plane % channels;
                let (scale, shift) = stats.normalization(c);
                let factor = (state.gamma[c] as f64 * stats.inverse_std[c]) as f32;
                let (mean_beta, mean_gamma) = ((beta_grad[c] / count) as f32, (gamma_grad[c] / count) as f32);
                let at = plane * pixels;
                let (x, y, dy) = (&x[at..][..pixels], &y[at..][..pixels], &dy[at..][..pixels]);
                for (((out, &x), &y), &dy) in dx.iter_mut().zip(x).zip(y).zip(dy) {
                    let dz = if y > 0.0 { dy } else { 0.0 };
                    *out = factor * (dz - mean_beta - (x * scale + shift) * mean_gamma);
                }
            });
            let dx = Tensor::<4>::from_data(TensorData::new(dx, state.dims), &device);
            grads.register::<Flex>(node.id, flex_primitive(dx));
        }
        let per_channel = |v: Vec<f64>| {
            let v: Vec<f32> = v.into_iter().map(|v| v as f32).collect();
            flex_primitive(Tensor::<1>::from_data(TensorData::new(v, [channels]), &device))
        };
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, per_channel(gamma_grad));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, per_channel(beta_grad));
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use burn::tensor::activation::relu;
    use burn::tensor::module::batch_norm_train;

    use super::*;

    fn largest_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> (f32, f32) {
        let scale = b.clone().abs().max().into_scalar();
        ((a - b).abs().max().into_scalar(), scale)
    }

    /// Output, statistics and the three gradients against burn's `batch_norm_train` + `relu`.
    #[test]
    fn fused_batch_norm_relu_matches_burns_composition() {
        let device = Device::flex().autodiff();
        for [batch, channels, h, w] in [[1, 8, 17, 19], [2, 64, 32, 32], [3, 5, 4, 300], [1, 16, 1, 1]] {
            let x = Tensor::<4>::random([batch, channels, h, w], Distribution::Normal(0.3, 2.0), &device);
            let gamma = Tensor::<1>::random([channels], Distribution::Uniform(-1.5, 1.5), &device);
            let beta = Tensor::<1>::random([channels], Distribution::Uniform(-0.5, 0.5), &device);
            let weighting = Tensor::<4>::random([batch, channels, h, w], Distribution::Uniform(-1.0, 1.0), &device);
            let run = |fused: bool| {
                let leaf = |t: &Tensor<1>| Tensor::<1>::from_data(t.to_data(), &device).require_grad();
                let (x, gamma, beta) = (
                    Tensor::<4>::from_data(x.to_data(), &device).require_grad(),
                    leaf(&gamma),
                    leaf(&beta),
                );
                let (y, mean, variance) = if fused {
                    batch_norm_relu_train(&x, &gamma, &beta, 1e-5).expect("on flex with autodiff")
                } else {
                    let result = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
                    (relu(result.output), result.mean, result.variance)
                };
                let grads = (y.clone() * weighting.clone()).sum().backward();
                let dx = x.grad(&grads).expect("dx");
                let dgamma = gamma.grad(&grads).expect("dγ");
                let dbeta = beta.grad(&grads).expect("dβ");
                (y.inner(), mean.inner(), variance.inner(), dx, dgamma, dbeta)
            };
            let (y, mean, variance, dx, dgamma, dbeta) = run(true);
            let (y_ref, mean_ref, variance_ref, dx_ref, dgamma_ref, dbeta_ref) = run(false);
            let shape = format!("{batch}×{channels}×{h}×{w}");
            for (name, (difference, scale)) in [
                ("output", largest_difference(y, y_ref)),
                ("input gradient", largest_difference(dx, dx_ref)),
            ] {
                assert!(
                    difference <= 1e-4 * scale.max(1.0),
                    "{name} {shape}: {difference} of {scale}"
                );
            }
            for (name, (difference, scale)) in [
                ("mean", largest_difference(mean, mean_ref)),
                ("variance", largest_difference(variance, variance_ref)),
                ("γ gradient", largest_difference(dgamma, dgamma_ref)),
                ("β gradient", largest_difference(dbeta, dbeta_ref)),
            ] {
                assert!(
                    difference <= 1e-4 * scale.max(1.0),
                    "{name} {shape}: {difference} of {scale}"
                );
            }
        }
    }

    #[test]
    fn off_flex_autodiff_it_declines() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 2, 3, 3], &device);
        let gamma = Tensor::<1>::ones([2], &device);
        assert!(batch_norm_relu_train(&x, &gamma, &gamma.clone().zeros_like(), 1e-5).is_none());
    }
}
