//! Adam's update (torch's rule, with its L2 weight decay) of one flattened parameter on flex, in
//! one parallel pass over the parameter, its gradient and its two moments. Composed of tensor
//! operations it is about twelve single-threaded passes (0.3 s of a vox-256 training step); it
//! works in place in the parameter's and the moments' buffers where nothing else holds them
//! (three fresh buffers per parameter were 1.5 GB of writes per step), and reads a shared
//! parameter where it is, writing the new one beside it. The arithmetic is the composition's,
//! operation for operation in f32, so both give the same bits (the engine's optimizer tests it).

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::buffer::zeroed;
use super::flex::{FlexPrimitive, values};

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
    // optimizer maps a clone of them) is read where it is and written anew: flex's copy of a
    // shared buffer runs on one core.
    let primitive = value
        .try_into_primitive::<Flex>()
        .unwrap_or_else(|e| unreachable!("checked to be on flex above: {e:?}"));
    let kept;
    let (source, mut param) = if primitive.is_unique() {
        (None, owned_values(primitive))
    } else {
        kept = primitive;
        (Some(values(&kept)), zeroed(n))
    };
    let [mut exp_avg, mut exp_avg_sq] = match moments {
        Some([m, v]) => [into_values(m), into_values(v)],
        None => [zeroed(n), zeroed(n)],
    };
    let (b1, b2) = (step.beta1, step.beta2);
    let (beta1, beta2, one_minus_b1, one_minus_b2) = (b1 as f32, b2 as f32, (1.0 - b1) as f32, (1.0 - b2) as f32);
    let (epsilon, step_size, bias2_sqrt) = (step.epsilon as f32, step.step_size as f32, step.bias2_sqrt as f32);
    let weight_decay = step.weight_decay as f32;
    // The new value of a parameter `p` with gradient `g`, its moments updated in place.
    let update = |p: f32, m: &mut f32, v: &mut f32, g: f32| -> f32 {
        let g = if weight_decay != 0.0 { g + p * weight_decay } else { g };
        (*m, *v) = if first {
            (g * one_minus_b1, g * g * one_minus_b2)
        } else {
            (*m * beta1 + g * one_minus_b1, *v * beta2 + g * g * one_minus_b2)
        };
        let denominator = v.sqrt() / bias2_sqrt + epsilon;
        p - (*m / denominator) * step_size
    };
    const CHUNK: usize = 1 << 14;
    let chunks = param
        .par_chunks_mut(CHUNK)
        .zip(exp_avg.par_chunks_mut(CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(CHUNK))
        .zip(grad.par_chunks(CHUNK))
        .enumerate();
    chunks.for_each(|(chunk, (((p, m), v), g))| {
        let before = source.as_deref().map(|s| &s[chunk * CHUNK..][..p.len()]);
        for (i, (((p, m), v), &g)) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g).enumerate() {
            let old = before.map_or(*p, |b| b[i]);
            *p = update(old, m, v, g);
        }
    });
    let tensor = |data: Vec<f32>| Tensor::<1>::from_data(TensorData::new(data, [n]), &device);
    Ok((tensor(param), [tensor(exp_avg), tensor(exp_avg_sq)]))
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
