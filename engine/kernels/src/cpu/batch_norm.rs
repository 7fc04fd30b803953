//! The training step's batch norm + ReLU on the CPU, as one autodiff operation: every FOMM
//! block applies `relu(BN(x))` with the batch's statistics,
//!
//! `y = max(0, z)`, `z = γ x̂ + β`, `x̂ = (x − μ_B) / √(σ²_B + ε)`,
//!
//! whose gradient is (with `dz = dy · [z > 0]`, N values per statistic)
//!
//! `∂L/∂β = Σ dz`, `∂L/∂γ = Σ dz x̂`, `∂L/∂x = γ / √(σ²_B + ε) · (dz − ∂L/∂β / N − x̂ ∂L/∂γ / N)`.
//!
//! TPSMM's blocks apply `relu(IN(x))`, the same with each image's channel normalised by its own
//! statistics ([`Statistic::PerPlane`]; `∂L/∂γ` and `∂L/∂β` then sum the planes' terms over the
//! batch); it has no running statistics, so it serves inference too.
//!
//! burn's `batch_norm_train` composes it of about ten tensor passes forward and fifteen
//! backward, and the ReLU adds its own, each on one thread; here the forward pass reads the
//! input twice and writes the output once, the backward pass reads the input and the output
//! gradient twice and writes once, a plane per task. A `DownBlock2d`'s 2×2 average pooling after
//! it is folded in too. The ReLU's mask is recomputed from the input, so the operation keeps no
//! output of its own. The sums are taken in f64.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::buffer::zeroed;
use super::flex::{AutodiffFlexOp, FlexPrimitive, on_autodiff_flex, primitive as flex_primitive, values};
use super::layout::planar_values;

/// `relu(batch_norm_train(x))` and the batch's mean and biased variance (detached), or `None`
/// when the tensors are not on flex with autodiff (the caller then composes burn's operations).
pub fn batch_norm_relu_train(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    on_autodiff_flex(&BatchNormReluCall {
        x,
        gamma,
        beta,
        epsilon,
        statistic: Statistic::PerChannel,
        pool: false,
    })
}

/// As [`batch_norm_relu_train`], followed by a 2×2 average pooling (a `DownBlock2d`): the
/// full-size output is never written, and the pooling's gradient is spread in the same pass.
pub fn batch_norm_relu_pool_train(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    on_autodiff_flex(&BatchNormReluCall {
        x,
        gamma,
        beta,
        epsilon,
        statistic: Statistic::PerChannel,
        pool: true,
    })
}

/// `relu(instance_norm(x))` (torch's `InstanceNorm2d(affine=True)`, TPSMM's blocks), recorded
/// for its backward pass on flex with autodiff, computed alone on plain flex; `None` on any other
/// device (the caller then composes burn's operations).
pub fn instance_norm_relu(x: &Tensor<4>, gamma: &Tensor<1>, beta: &Tensor<1>, epsilon: f64) -> Option<Tensor<4>> {
    instance_norm_relu_on(x, gamma, beta, epsilon, false)
}

/// As [`instance_norm_relu`], followed by a `DownBlock2d`'s 2×2 average pooling.
pub fn instance_norm_relu_pool(x: &Tensor<4>, gamma: &Tensor<1>, beta: &Tensor<1>, epsilon: f64) -> Option<Tensor<4>> {
    instance_norm_relu_on(x, gamma, beta, epsilon, true)
}

fn instance_norm_relu_on(
    x: &Tensor<4>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
    pool: bool,
) -> Option<Tensor<4>> {
    let call = BatchNormReluCall {
        x,
        gamma,
        beta,
        epsilon,
        statistic: Statistic::PerPlane,
        pool,
    };
    on_autodiff_flex(&call)
        .map(|(y, _, _)| y)
        .or_else(|| call.on_plain_flex())
}

/// Which values share one mean and variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statistic {
    /// A batch norm's: a channel over the whole batch.
    PerChannel,
    /// An instance norm's: one image's channel, a plane.
    PerPlane,
}

impl Statistic {
    /// How many statistics a `[batch, channels, h, w]` tensor has.
    fn groups(self, [batch, channels, _, _]: [usize; 4]) -> usize {
        match self {
            Self::PerChannel => channels,
            Self::PerPlane => batch * channels,
        }
    }

    /// The statistic plane `plane` (image-major) is normalised by.
    fn group_of(self, plane: usize, channels: usize) -> usize {
        match self {
            Self::PerChannel => plane % channels,
            Self::PerPlane => plane,
        }
    }

    /// The planes of statistic `group`.
    fn planes(self, group: usize, [batch, channels, _, _]: [usize; 4]) -> impl Iterator<Item = usize> {
        let (count, stride) = match self {
            Self::PerChannel => (batch, channels),
            Self::PerPlane => (1, 1),
        };
        (0..count).map(move |i| group + i * stride)
    }

    /// Values per statistic.
    fn count(self, [batch, _, h, w]: [usize; 4]) -> usize {
        match self {
            Self::PerChannel => batch * h * w,
            Self::PerPlane => h * w,
        }
    }
}

/// One norm + ReLU's arguments, for [`on_autodiff_flex`].
struct BatchNormReluCall<'a> {
    x: &'a Tensor<4>,
    gamma: &'a Tensor<1>,
    beta: &'a Tensor<1>,
    epsilon: f64,
    statistic: Statistic,
    /// Followed by a `DownBlock2d`'s 2×2 average pooling.
    pool: bool,
}

impl BatchNormReluCall<'_> {
    /// The forward pass alone, where the tensors are on plain flex.
    fn on_plain_flex(&self) -> Option<Tensor<4>> {
        let x = self.x.clone().try_into_primitive::<Flex>().ok()?;
        let gamma = self.gamma.clone().try_into_primitive::<Flex>().ok()?;
        let beta = self.beta.clone().try_into_primitive::<Flex>().ok()?;
        let (_, _, output) = self.forward(&x, &gamma, &beta);
        Some(Tensor::from_data(output, &self.x.device()))
    }

    /// The forward pass on flex primitives: the statistics, the norm per statistic (the backward
    /// pass's ReLU mask), and the output.
    fn forward(
        &self,
        x: &FlexPrimitive,
        gamma: &FlexPrimitive,
        beta: &FlexPrimitive,
    ) -> (Statistics, Affine, TensorData) {
        let dims = self.x.dims();
        let x = planar_values(x);
        let statistics = Statistics::of(&x, dims, self.epsilon, self.statistic);
        let affine = statistics.affine(&values(gamma), &values(beta), self.statistic);
        let (output, output_dims) = affine.forward(&x, dims, self.pool);
        (statistics, affine, TensorData::new(output, output_dims))
    }
}

impl AutodiffFlexOp for BatchNormReluCall<'_> {
    type Output = (Tensor<4>, Tensor<1>, Tensor<1>);

    fn on_autodiff<C>(&self) -> Option<Self::Output>
    where
        C: CheckpointStrategy,
        DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
    {
        batch_norm_relu_on::<C>(self)
    }
}

/// The operation recorded on `Autodiff<Flex, C>`, and its statistics' means and biased
/// variances (one per [`Statistic`] group).
fn batch_norm_relu_on<C>(call: &BatchNormReluCall<'_>) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)>
where
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let BatchNormReluCall {
        x,
        gamma,
        beta,
        statistic,
        pool,
        ..
    } = *call;
    let device = x.device();
    let dims = x.dims();
    let x = x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let gamma = gamma.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let beta = beta.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
    let (statistics, affine, output) = call.forward(x.primitive(), gamma.primitive(), beta.primitive());
    let output = flex_primitive(Tensor::<4>::from_data(output, &Device::flex()));
    let (mean, variance) = (statistics.mean_f32(), statistics.variance_f32());
    let y = match BatchNormReluBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = BatchNormState {
                x: x.primitive().clone(),
                gamma: values(gamma.primitive()).into_owned(),
                affine,
                statistics,
                dims,
                pool,
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    let groups = statistic.groups(dims);
    Some((
        Tensor::from_primitive::<Autodiff<Flex, C>>(y),
        Tensor::from_data(TensorData::new(mean, [groups]), &device),
        Tensor::from_data(TensorData::new(variance, [groups]), &device),
    ))
}

/// Per statistic: the mean and `1 / √(σ² + ε)`, and the biased variance σ².
#[derive(Debug, Clone)]
struct Statistics {
    mean: Vec<f64>,
    variance: Vec<f64>,
    inverse_std: Vec<f64>,
}

impl Statistics {
    /// Two passes per statistic (the mean, then the squared deviations), in f64.
    fn of(x: &[f32], dims: [usize; 4], epsilon: f64, statistic: Statistic) -> Self {
        let pixels = dims[2] * dims[3];
        let count = statistic.count(dims).max(1) as f64;
        let (mean, variance): (Vec<f64>, Vec<f64>) = (0..statistic.groups(dims))
            .into_par_iter()
            .map(|group| {
                let planes = || {
                    statistic
                        .planes(group, dims)
                        .map(|plane| &x[plane * pixels..][..pixels])
                };
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

    /// `x̂ = (x − mean) · inverse_std` of a statistic's values: the mean and `1 / √(σ² + ε)`
    /// in f32. (Not folded into one multiply-add: when σ² ≈ 0 the factor is ~1/√ε and would
    /// scale the rounding of `x · scale` and `mean · scale` up with it.)
    fn normalization(&self, group: usize) -> Normalization {
        Normalization {
            mean: self.mean[group] as f32,
            inverse_std: self.inverse_std[group] as f32,
        }
    }

    /// `z = γ x̂ + β` per statistic, γ and β of its channel.
    fn affine(&self, gamma: &[f32], beta: &[f32], statistic: Statistic) -> Affine {
        let channels = gamma.len();
        let groups = (0..self.mean.len())
            .map(|group| ChannelBatchNorm {
                normalization: self.normalization(group),
                gamma: gamma[group % channels],
                beta: beta[group % channels],
            })
            .collect();
        Affine {
            groups,
            statistic,
            channels,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Normalization {
    mean: f32,
    inverse_std: f32,
}

impl Normalization {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        (x - self.mean) * self.inverse_std
    }
}

/// One statistic of a training norm (kept for the backward pass) and its channel's affine
/// parameters. (The inference form's folded norm is `winograd::ChannelAffine`.)
#[derive(Debug, Clone, Copy)]
struct ChannelBatchNorm {
    normalization: Normalization,
    gamma: f32,
    beta: f32,
}

impl ChannelBatchNorm {
    /// `z = γ x̂ + β`.
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        self.gamma * self.normalization.apply(x) + self.beta
    }
}

/// The norm per statistic; the forward pass and the backward pass's ReLU mask both compute
/// `z` by it, so that they agree on every sign.
#[derive(Debug, Clone)]
struct Affine {
    groups: Vec<ChannelBatchNorm>,
    statistic: Statistic,
    channels: usize,
}

impl Affine {
    /// The norm of plane `plane` (image-major).
    fn of_plane(&self, plane: usize) -> ChannelBatchNorm {
        self.groups[self.statistic.group_of(plane, self.channels)]
    }

    /// `max(0, z)` — pooled 2×2 when `pool` — a plane per task, and the output's dims.
    fn forward(&self, x: &[f32], [batch, channels, h, w]: [usize; 4], pool: bool) -> (Vec<f32>, [usize; 4]) {
        let pixels = h * w;
        let (out_h, out_w) = if pool { (h / 2, w / 2) } else { (h, w) };
        let mut y = zeroed(batch * channels * out_h * out_w);
        if y.is_empty() {
            return (y, [batch, channels, out_h, out_w]);
        }
        y.par_chunks_mut(out_h * out_w).enumerate().for_each(|(plane, y)| {
            let affine = self.of_plane(plane);
            let x = &x[plane * pixels..][..pixels];
            let z = |v: f32| affine.apply(v).max(0.0);
            if !pool {
                for (out, &v) in y.iter_mut().zip(x) {
                    *out = z(v);
                }
                return;
            }
            for (oy, row) in y.chunks_exact_mut(out_w).enumerate() {
                let (top, bottom) = (&x[2 * oy * w..][..w], &x[(2 * oy + 1) * w..][..w]);
                for (ox, out) in row.iter_mut().enumerate() {
                    let sum = z(top[2 * ox]) + z(top[2 * ox + 1]) + z(bottom[2 * ox]) + z(bottom[2 * ox + 1]);
                    *out = sum / 4.0;
                }
            }
        });
        (y, [batch, channels, out_h, out_w])
    }
}

/// Σ in f64, by f32 blocks short enough to keep their rounding small (the convolutions' bias
/// gradients sum so too).
pub(super) fn sum(values: &[f32]) -> f64 {
    values.chunks(256).map(|block| block.iter().sum::<f32>() as f64).sum()
}

fn squared_deviations(values: &[f32], mean: f32) -> f64 {
    values
        .chunks(256)
        .map(|block| block.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() as f64)
        .sum()
}

/// What the backward step needs: the input (shared with the graph, not copied), γ, the
/// per-channel affine and the statistics.
#[derive(Debug, Clone)]
struct BatchNormState {
    x: FlexPrimitive,
    gamma: Vec<f32>,
    affine: Affine,
    statistics: Statistics,
    dims: [usize; 4],
    pool: bool,
}

impl BatchNormState {
    /// `dz = ∂L/∂z` of one input plane: the output gradient (spread over its 2×2 block when
    /// pooled), zero where the ReLU was off.
    fn plane_gradient(&self, plane: usize, x: &[f32], dy: &[f32], out: &mut [f32]) {
        let [_, _, h, w] = self.dims;
        let affine = self.affine.of_plane(plane);
        let on = |v: f32| affine.apply(v) > 0.0;
        if !self.pool {
            let dy = &dy[plane * h * w..][..h * w];
            for ((out, &v), &g) in out.iter_mut().zip(x).zip(dy) {
                *out = if on(v) { g } else { 0.0 };
            }
            return;
        }
        let (out_h, out_w) = (h / 2, w / 2);
        let dy = &dy[plane * out_h * out_w..][..out_h * out_w];
        for (y, (row, x_row)) in out.chunks_exact_mut(w).zip(x.chunks_exact(w)).enumerate() {
            let pooled = (y / 2 < out_h).then(|| &dy[(y / 2) * out_w..][..out_w]);
            for (xx, (out, &v)) in row.iter_mut().zip(x_row).enumerate() {
                let g = match pooled {
                    Some(pooled) if xx / 2 < out_w => pooled[xx / 2] / 4.0,
                    _ => 0.0,
                };
                *out = if on(v) { g } else { 0.0 };
            }
        }
    }
}

#[derive(Debug)]
struct BatchNormReluBackward;

impl Backward<Flex, 3> for BatchNormReluBackward {
    type State = BatchNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let state = ops.state;
        let dims = state.dims;
        let [_, channels, h, w] = dims;
        let pixels = h * w;
        let statistic = state.affine.statistic;
        let (x, dy) = (planar_values(&state.x), planar_values(&grad));
        let stats = &state.statistics;
        // dz, a plane per task; then Σ dz and Σ dz x̂ per statistic.
        let mut dz = zeroed(x.len());
        dz.par_chunks_mut(pixels.max(1)).enumerate().for_each(|(plane, out)| {
            state.plane_gradient(plane, &x[plane * pixels..][..pixels], &dy, out);
        });
        let (beta_grad, gamma_grad): (Vec<f64>, Vec<f64>) = (0..statistic.groups(dims))
            .into_par_iter()
            .map(|group| {
                let normalization = stats.normalization(group);
                let (mut d_beta, mut d_gamma) = (0.0f64, 0.0f64);
                for plane in statistic.planes(group, dims) {
                    let at = plane * pixels;
                    let (x, dz) = (&x[at..][..pixels], &dz[at..][..pixels]);
                    for (x, dz) in x.chunks(256).zip(dz.chunks(256)) {
                        let (mut block_beta, mut block_gamma) = (0.0f32, 0.0f32);
                        for (&x, &dz) in x.iter().zip(dz) {
                            block_beta += dz;
                            block_gamma += dz * normalization.apply(x);
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
            let count = statistic.count(dims) as f64;
            // ∂L/∂x overwrites dz in place.
            dz.par_chunks_mut(pixels.max(1)).enumerate().for_each(|(plane, dz)| {
                let group = statistic.group_of(plane, channels);
                let normalization = stats.normalization(group);
                let factor = (state.gamma[plane % channels] as f64 * stats.inverse_std[group]) as f32;
                let (mean_beta, mean_gamma) = ((beta_grad[group] / count) as f32, (gamma_grad[group] / count) as f32);
                let x = &x[plane * pixels..][..pixels];
                for (out, &x) in dz.iter_mut().zip(x) {
                    *out = factor * (*out - mean_beta - normalization.apply(x) * mean_gamma);
                }
            });
            let dx = Tensor::<4>::from_data(TensorData::new(dz, state.dims), &device);
            grads.register::<Flex>(node.id, flex_primitive(dx));
        }
        // The parameters' gradients: each channel's terms summed over its statistics.
        let per_channel = |v: Vec<f64>| {
            let v: Vec<f32> = (0..channels)
                .map(|c| v.iter().skip(c).step_by(channels).sum::<f64>() as f32)
                .collect();
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
    use burn::tensor::activation::relu;
    use burn::tensor::module::{avg_pool2d, batch_norm_train};
    use burn::tensor::ops::AvgPoolOptions;

    use super::*;
    use crate::test_support::{SeededDraws, assert_close};

    /// A batch x ~ N(0.3, 2) with γ ~ U(−1.5, 1.5) and β ~ U(−0.5, 0.5) per channel, the same
    /// on every run: with fresh draws, one value in a million lands within rounding of the
    /// ReLU's edge (`z ≈ 0`), where the fused and the composed forms may decide it differently
    /// and the input gradient differs by γ/σ there.
    fn inputs(
        [batch, channels, h, w]: [usize; 4],
        draws: &mut SeededDraws,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        inputs_off_the_edge([batch, channels, h, w], draws, device, |x, gamma, beta| {
            batch_norm_train(x, gamma, beta, 1e-5).output
        })
    }

    /// [`inputs`] kept off the ReLU's edge of `norm` (the composed norm the test compares with).
    fn inputs_off_the_edge(
        [batch, channels, h, w]: [usize; 4],
        draws: &mut SeededDraws,
        device: &Device,
        norm: fn(Tensor<4>, Tensor<1>, Tensor<1>) -> Tensor<4>,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        let (x, gamma, beta) = (
            draws.normal([batch, channels, h, w], 0.3, 2.0, device),
            draws.uniform([channels], -1.5, 1.5, device),
            draws.uniform([channels], -0.5, 0.5, device),
        );
        let edge: f32 = norm(x.clone(), gamma.clone(), beta.clone()).abs().min().into_scalar();
        assert!(
            edge > 1e-6,
            "a drawn value sits on the ReLU's edge ({edge}): draw another seed"
        );
        (x, gamma, beta)
    }

    /// A fresh leaf of the same values that records its gradient, so each run has its own graph.
    fn leaf<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
        Tensor::from_data(t.to_data(), &t.device()).require_grad()
    }

    /// An output and its three gradients: [y, ∂/∂x, ∂/∂γ, ∂/∂β].
    type Outputs = (Tensor<4>, Tensor<4>, Tensor<1>, Tensor<1>);

    /// `y` and the gradients of `Σ y ⊙ weighting` with respect to `x`, `γ` and `β`.
    fn with_gradients(
        y: Tensor<4>,
        weighting: &Tensor<4>,
        x: &Tensor<4>,
        gamma: &Tensor<1>,
        beta: &Tensor<1>,
    ) -> Outputs {
        let grads = (y.clone() * weighting.clone()).sum().backward();
        (
            y.inner(),
            x.grad(&grads).expect("dx"),
            gamma.grad(&grads).expect("dγ"),
            beta.grad(&grads).expect("dβ"),
        )
    }

    /// The fused operation's outputs against the composition's, shape first.
    fn assert_outputs_close(shape: &str, (y, dx, dgamma, dbeta): Outputs, reference: Outputs) {
        let (y_ref, dx_ref, dgamma_ref, dbeta_ref) = reference;
        assert_eq!(y.dims(), y_ref.dims(), "{shape}");
        assert_close(&format!("output {shape}"), y, y_ref, 1e-4);
        assert_close(&format!("input gradient {shape}"), dx, dx_ref, 1e-4);
        assert_close(&format!("γ gradient {shape}"), dgamma, dgamma_ref, 1e-4);
        assert_close(&format!("β gradient {shape}"), dbeta, dbeta_ref, 1e-4);
    }

    /// Output, statistics and the three gradients against burn's `batch_norm_train` + `relu`.
    #[test]
    fn fused_batch_norm_relu_matches_burns_composition() {
        let device = Device::flex().autodiff();
        let mut draws = SeededDraws::new(7);
        for [batch, channels, h, w] in [[1, 8, 17, 19], [2, 64, 32, 32], [3, 5, 4, 300], [1, 16, 1, 1]] {
            let (x, gamma, beta) = inputs([batch, channels, h, w], &mut draws, &device);
            let weighting = draws.uniform([batch, channels, h, w], -1.0, 1.0, &device);
            let run = |fused: bool| {
                let (x, gamma, beta) = (leaf(&x), leaf(&gamma), leaf(&beta));
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
            assert_close(&format!("output {shape}"), y, y_ref, 1e-4);
            assert_close(&format!("input gradient {shape}"), dx, dx_ref, 1e-4);
            assert_close(&format!("mean {shape}"), mean, mean_ref, 1e-4);
            assert_close(&format!("variance {shape}"), variance, variance_ref, 1e-4);
            assert_close(&format!("γ gradient {shape}"), dgamma, dgamma_ref, 1e-4);
            assert_close(&format!("β gradient {shape}"), dbeta, dbeta_ref, 1e-4);
        }
    }

    /// With the 2×2 average pooling folded in, against burn's batch norm, ReLU and pooling;
    /// odd sizes leave the last row and column out of the pooling but not out of the statistics.
    #[test]
    fn fused_batch_norm_relu_pool_matches_burns_composition() {
        let device = Device::flex().autodiff();
        let mut draws = SeededDraws::new(11);
        for [batch, channels, h, w] in [[1, 8, 16, 18], [2, 4, 9, 7]] {
            let (x, gamma, beta) = inputs([batch, channels, h, w], &mut draws, &device);
            let weighting = draws.uniform([batch, channels, h / 2, w / 2], -1.0, 1.0, &device);
            let run = |fused: bool| {
                let (x, gamma, beta) = (leaf(&x), leaf(&gamma), leaf(&beta));
                let y = if fused {
                    batch_norm_relu_pool_train(&x, &gamma, &beta, 1e-5)
                        .expect("on flex with autodiff")
                        .0
                } else {
                    let result = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
                    avg_pool2d(relu(result.output), AvgPoolOptions::new([2, 2]))
                };
                with_gradients(y, &weighting, &x, &gamma, &beta)
            };
            assert_outputs_close(&format!("{batch}×{channels}×{h}×{w}"), run(true), run(false));
        }
    }

    /// torch's `InstanceNorm2d(affine=True)` composed of burn's operations.
    fn composed_instance_norm(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let pixels = x.reshape([b, c, h * w]);
        let centred = pixels.clone() - pixels.mean_dim(2);
        let variance = centred.clone().square().mean_dim(2);
        let normalised = centred / (variance + 1e-5).sqrt();
        (normalised * gamma.reshape([1, c, 1]) + beta.reshape([1, c, 1])).reshape([b, c, h, w])
    }

    /// Per image and channel statistics, with and without the pooling, on flex with autodiff
    /// (output and the three gradients) and on plain flex (output), against the composition.
    #[test]
    fn fused_instance_norm_relu_matches_burns_composition() {
        let device = Device::flex().autodiff();
        let mut draws = SeededDraws::new(5);
        for ([batch, channels, h, w], pool) in [
            ([1, 8, 17, 19], false),
            ([3, 5, 4, 30], false),
            ([2, 4, 9, 7], true),
            ([1, 6, 16, 16], true),
        ] {
            let (x, gamma, beta) =
                inputs_off_the_edge([batch, channels, h, w], &mut draws, &device, composed_instance_norm);
            let (out_h, out_w) = if pool { (h / 2, w / 2) } else { (h, w) };
            let weighting = draws.uniform([batch, channels, out_h, out_w], -1.0, 1.0, &device);
            let run = |fused: bool| {
                let (x, gamma, beta) = (leaf(&x), leaf(&gamma), leaf(&beta));
                let y = match (fused, pool) {
                    (true, false) => instance_norm_relu(&x, &gamma, &beta, 1e-5).expect("on flex"),
                    (true, true) => instance_norm_relu_pool(&x, &gamma, &beta, 1e-5).expect("on flex"),
                    (false, _) => {
                        let y = relu(composed_instance_norm(x.clone(), gamma.clone(), beta.clone()));
                        if pool {
                            avg_pool2d(y, AvgPoolOptions::new([2, 2]))
                        } else {
                            y
                        }
                    }
                };
                with_gradients(y, &weighting, &x, &gamma, &beta)
            };
            let reference = run(false);
            let shape = format!("{batch}×{channels}×{h}×{w}, pooled {pool}");
            let plain = if pool {
                instance_norm_relu_pool(&x.clone().inner(), &gamma.clone().inner(), &beta.clone().inner(), 1e-5)
            } else {
                instance_norm_relu(&x.clone().inner(), &gamma.clone().inner(), &beta.clone().inner(), 1e-5)
            };
            assert_close(
                &format!("plain output {shape}"),
                plain.expect("on plain flex"),
                reference.0.clone(),
                1e-4,
            );
            assert_outputs_close(&shape, run(true), reference);
        }
    }

    #[test]
    fn off_flex_autodiff_it_declines() {
        let device = Device::flex();
        let x = Tensor::<4>::zeros([1, 2, 3, 3], &device);
        let gamma = Tensor::<1>::ones([2], &device);
        assert!(batch_norm_relu_train(&x, &gamma, &gamma.clone().zeros_like(), 1e-5).is_none());
        assert!(batch_norm_relu_pool_train(&x, &gamma, &gamma.clone().zeros_like(), 1e-5).is_none());
    }
}
