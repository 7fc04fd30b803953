//! Adam's update (torch's rule, with its L2 weight decay) of one flattened parameter on flex, in
//! one parallel pass over the parameter, its gradient and its two moments. Composed of tensor
//! operations it is about twelve single-threaded passes (0.3 s of a vox-256 training step); it
//! works in place in the parameter's and the moments' buffers where nothing else holds them
//! (three fresh buffers per parameter were 1.5 GB of writes per step), and copies a shared
//! parameter in parallel first. The arithmetic is the composition's,
//! operation for operation in f32, so both give the same bits (the engine's optimizer tests it).

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::buffer::zeroed;
use super::flex::{FlexPrimitive, values};
use super::simd::{VectorKernel, vectorized};

/// One step's coefficients: `m = β1·m + (1 − β1)·g`, `v = β2·v + (1 − β2)·g²`,
/// `p −= step_size · m / (√v / bias2_sqrt + ε)`, with torch's bias corrections folded into
/// `step_size = lr / (1 − β1^t)` and `bias2_sqrt = √(1 − β2^t)`.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub step_size: f64,
    pub bias2_sqrt: f64,
    /// torch's (L2) weight decay: the gradient is `g + weight_decay · p` first.
    pub weight_decay: f64,
}

/// A parameter and its moments `[exp_avg, exp_avg_sq]` (`None` before the first step).
pub type AdamState = (Tensor<1>, Option<[Tensor<1>; 2]>);

/// The step for `value` and `grad` on flex, from `moments` (`None` on the first step: its
/// moments are the gradient's terms alone, as in the composition): the new parameter and
/// moments. Everything is handed back untouched (`Err`) for tensors on any other device, for
/// the caller to compose the step from burn's operations.
pub fn adam_update(
    value: Tensor<1>,
    grad: &Tensor<1>,
    moments: Option<[Tensor<1>; 2]>,
    step: &AdamStep,
) -> Result<(Tensor<1>, [Tensor<1>; 2]), Box<AdamState>> {
    let Ok(grad) = grad.clone().try_into_primitive::<Flex>() else {
        return Err(Box::new((value, moments)));
    };
    // The check's clone is dropped before the values are taken, so they stay unshared.
    if value.clone().try_into_primitive::<Flex>().is_err() {
        return Err(Box::new((value, moments)));
    }
    let device = value.device();
    let grad = values(&grad);
    let first = moments.is_none();
    let n = grad.len();
    // A parameter that its module still holds elsewhere (the learner's networks while the
    // optimizer maps a clone of them) is copied by the pool's threads, then updated in place:
    // flex's own copy of a shared buffer runs on one core.
    let primitive = value
        .try_into_primitive::<Flex>()
        .unwrap_or_else(|e| unreachable!("checked to be on flex above: {e:?}"));
    let mut param = if primitive.is_unique() {
        owned_values(primitive)
    } else {
        let mut copy = Vec::with_capacity(n);
        copy.par_extend(values(&primitive).par_iter().copied());
        copy
    };
    let [mut exp_avg, mut exp_avg_sq] = match moments {
        Some([m, v]) => [into_values(m), into_values(v)],
        None => [zeroed(n), zeroed(n)],
    };
    let coefficients = Coefficients::of(step);
    const CHUNK: usize = 1 << 14;
    let chunks = param
        .par_chunks_mut(CHUNK)
        .zip(exp_avg.par_chunks_mut(CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK));
    chunks.for_each(|(((param, exp_avg), exp_avg_sq), grad)| {
        let chunk = Chunk {
            param,
            exp_avg,
            exp_avg_sq,
            grad,
            coefficients,
        };
        match (first, coefficients.weight_decay != 0.0) {
            (true, false) => vectorized(AdamChunk::<true, false>(chunk)),
            (true, true) => vectorized(AdamChunk::<true, true>(chunk)),
            (false, false) => vectorized(AdamChunk::<false, false>(chunk)),
            (false, true) => vectorized(AdamChunk::<false, true>(chunk)),
        }
    });
    let tensor = |data: Vec<f32>| Tensor::<1>::from_data(TensorData::new(data, [n]), &device);
    Ok((tensor(param), [tensor(exp_avg), tensor(exp_avg_sq)]))
}

/// [`AdamStep`] in f32, as the composition computes it.
#[derive(Debug, Clone, Copy)]
struct Coefficients {
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    epsilon: f32,
    step_size: f32,
    bias2_sqrt: f32,
    weight_decay: f32,
}

impl Coefficients {
    fn of(step: &AdamStep) -> Self {
        Self {
            beta1: step.beta1 as f32,
            beta2: step.beta2 as f32,
            one_minus_beta1: (1.0 - step.beta1) as f32,
            one_minus_beta2: (1.0 - step.beta2) as f32,
            epsilon: step.epsilon as f32,
            step_size: step.step_size as f32,
            bias2_sqrt: step.bias2_sqrt as f32,
            weight_decay: step.weight_decay as f32,
        }
    }
}

/// A chunk of a parameter, its moments (updated in place) and its gradient.
struct Chunk<'a> {
    param: &'a mut [f32],
    exp_avg: &'a mut [f32],
    exp_avg_sq: &'a mut [f32],
    grad: &'a [f32],
    coefficients: Coefficients,
}

/// One chunk's update, its two cases (the first step, weight decay) fixed at compile time: with
/// them tested per value the loop stayed scalar, its square roots and divisions one value at a
/// time (the vox-256 generator's update took 175 ms on a Zen 4, 35–39 ms so).
struct AdamChunk<'a, const FIRST: bool, const DECAY: bool>(Chunk<'a>);

impl<const FIRST: bool, const DECAY: bool> VectorKernel for AdamChunk<'_, FIRST, DECAY> {
    #[inline(always)]
    fn run(self) {
        update_chunk::<FIRST, DECAY>(self.0)
    }
}

/// `m = β1·m + (1 − β1)·g`, `v = β2·v + (1 − β2)·g²`, `p −= step_size · m / (√v / bias2_sqrt + ε)`
/// with `g + λ·p` for `g` under weight decay, and `m`, `v` the gradient's terms alone on the first
/// step: operation for operation the composition's, in f32.
#[inline(always)]
fn update_chunk<const FIRST: bool, const DECAY: bool>(chunk: Chunk) {
    let Chunk {
        param,
        exp_avg,
        exp_avg_sq,
        grad,
        coefficients: c,
    } = chunk;
    let values = param
        .iter_mut()
        .zip(exp_avg.iter_mut())
        .zip(exp_avg_sq.iter_mut())
        .zip(grad);
    for (((p, m), v), &g) in values {
        let g = if DECAY { g + *p * c.weight_decay } else { g };
        (*m, *v) = if FIRST {
            (g * c.one_minus_beta1, g * g * c.one_minus_beta2)
        } else {
            (
                *m * c.beta1 + g * c.one_minus_beta1,
                *v * c.beta2 + g * g * c.one_minus_beta2,
            )
        };
        let denominator = v.sqrt() / c.bias2_sqrt + c.epsilon;
        *p -= (*m / denominator) * c.step_size;
    }
}

/// A tensor's values as an owned vector: its own buffer where nothing else holds it (flex hands
/// it over without a copy), a copy otherwise.
fn into_values(tensor: Tensor<1>) -> Vec<f32> {
    data_values(tensor.into_data())
}

/// [`into_values`] of a flex primitive.
fn owned_values(primitive: FlexPrimitive) -> Vec<f32> {
    data_values(primitive.into_data())
}

fn data_values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| unreachable!("converted to f32: {e:?}"))
}
