//! Adam as FOMM uses it: `torch.optim.Adam(params, lr, betas=(0.5, 0.999))`, ε = 1e-8, no weight
//! decay; TPSMM's adds torch's L2 weight decay (`grad + λ·param`). Its state is keyed by parameter path (`generator.first.conv.weight`), saved as a
//! safetensors file beside the model, and loaded onto whatever device the run uses.
//!
//! burn's own `ModuleOptimizer` is not used because its `load_record` materializes the state on
//! `Device::default()` (wgpu in this build): resuming a run on a CPU-only machine would then need a
//! Vulkan driver. The update rule is torch's, step for step.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};

use crate::kernels::{AdamStep, adam_update};
use crate::{EngineError, Result};

/// First and second moments of one parameter, flattened, and how many steps it has taken.
#[derive(Debug, Clone)]
struct Moments {
    step: u64,
    exp_avg: Tensor<1>,
    exp_avg_sq: Tensor<1>,
}

#[derive(Debug, Clone)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// torch's `weight_decay`: `λ·param` added to the gradient before the moments.
    pub weight_decay: f64,
    state: BTreeMap<String, Moments>,
}

impl Adam {
    /// FOMM's optimizer: β = (0.5, 0.999), torch's ε = 1e-8.
    pub fn fomm() -> Self {
        Self {
            beta1: 0.5,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            state: BTreeMap::new(),
        }
    }

    /// TPSMM's optimizers: β = (0.5, 0.999), weight decay 1e-4 (`train.py`).
    pub fn tpsmm() -> Self {
        let (beta1, beta2) = crate::config::tpsmm::ADAM_BETAS;
        Self {
            beta1,
            beta2,
            weight_decay: crate::config::tpsmm::ADAM_WEIGHT_DECAY,
            ..Self::fomm()
        }
    }

    /// Number of parameters with a state (those that have received a gradient).
    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Paths of the parameters with a state, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.state.keys().cloned().collect()
    }

    /// One update of every parameter of `module` that has a gradient in `grads`.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: &mut GradientsParams) -> M {
        let mut mapper = AdamMapper {
            adam: self,
            grads,
            lr,
            path: Vec::new(),
        };
        module.map(&mut mapper)
    }

    /// Writes the state as safetensors (`<path>.exp_avg`, `<path>.exp_avg_sq`, and the step count
    /// in the metadata), readable by any safetensors tool.
    pub fn save(&self, file: &Path) -> Result<()> {
        let mut buffers: Vec<(String, Vec<u8>, usize)> = Vec::with_capacity(2 * self.state.len());
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("beta1".to_string(), self.beta1.to_string());
        metadata.insert("beta2".to_string(), self.beta2.to_string());
        metadata.insert("epsilon".to_string(), self.epsilon.to_string());
        metadata.insert("weight_decay".to_string(), self.weight_decay.to_string());
        for (path, moments) in &self.state {
            metadata.insert(format!("{path}.step"), moments.step.to_string());
            for (suffix, tensor) in [("exp_avg", &moments.exp_avg), ("exp_avg_sq", &moments.exp_avg_sq)] {
                let values = tensor
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| EngineError::Invalid(format!("optimizer state {path}: {e:?}")))?;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                buffers.push((format!("{path}.{suffix}"), bytes, values.len()));
            }
        }
        let views = buffers
            .iter()
            .map(|(name, bytes, len)| {
                TensorView::new(Dtype::F32, vec![*len], bytes)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| EngineError::Invalid(format!("optimizer state {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        crate::files::write_atomic_with(file, |temp| {
            safetensors::serialize_to_file(views, Some(metadata), temp)
                .map_err(|e| EngineError::checkpoint(file, format!("cannot write optimizer state ({e})")))
        })
    }

    /// Reads a state written by [`Adam::save`] onto `device`.
    pub fn load(file: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(file).map_err(|e| EngineError::io(file, e))?;
        let bad = |message: String| EngineError::checkpoint(file, message);
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not an optimizer state ({e})")))?;
        let tensors =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not an optimizer state ({e})")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let number = |key: &str| -> Result<f64> {
            metadata
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("missing '{key}'")))
        };
        let mut adam = Self {
            beta1: number("beta1")?,
            beta2: number("beta2")?,
            epsilon: number("epsilon")?,
            // States saved before weight decay existed had none.
            weight_decay: number("weight_decay").unwrap_or(0.0),
            state: BTreeMap::new(),
        };
        let read = |name: &str| -> Result<Tensor<1>> {
            let view = tensors.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("{name} is {:?}, expected f32", view.dtype())));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let len = values.len();
            Ok(Tensor::from_data(TensorData::new(values, [len]), device))
        };
        for (key, value) in &metadata {
            if let Some(path) = key.strip_suffix(".step") {
                let step = value.parse().map_err(|_| bad(format!("{key} is not a step count")))?;
                adam.state.insert(
                    path.to_string(),
                    Moments {
                        step,
                        exp_avg: read(&format!("{path}.exp_avg"))?,
                        exp_avg_sq: read(&format!("{path}.exp_avg_sq"))?,
                    },
                );
            }
        }
        Ok(adam)
    }
}

struct AdamMapper<'a> {
    adam: &'a mut Adam,
    grads: &'a mut GradientsParams,
    lr: f64,
    path: Vec<String>,
}

impl ModuleMapper for AdamMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let path = self.path.join(".");
        let require_grad = tensor.is_require_grad();
        let value = tensor.inner();
        let device = value.device();
        let shape = value.shape();
        let n = shape.num_elements();
        let grad = grad.to_device(&device).reshape([n]);
        let previous = self.adam.state.remove(&path);
        let flat = value.reshape([n]);
        let (updated, moments) = update(flat, grad, previous, self.lr, self.adam);
        self.adam.state.insert(path, moments);
        let mut updated = Tensor::from_inner(updated.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// torch's `clip_grad_norm_(module.parameters(), max_norm, norm_type=inf)` on the gradients of
/// `module` in `grads`: the largest absolute gradient value over all of them is the norm, and
/// every gradient is scaled by `max_norm / (norm + 1e-6)` where that is below 1. Returns the norm.
pub fn clip_gradients_max_abs<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct Ids(Vec<(burn::module::ParamId, usize)>);
    impl burn::module::ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.id, D));
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    fn largest<const D: usize>(grads: &GradientsParams, id: burn::module::ParamId) -> Option<f64> {
        grads.get::<D>(id).map(largest_magnitude)
    }
    let norm = ids
        .0
        .iter()
        .filter_map(|&(id, dims)| match dims {
            1 => largest::<1>(grads, id),
            2 => largest::<2>(grads, id),
            3 => largest::<3>(grads, id),
            4 => largest::<4>(grads, id),
            _ => None,
        })
        .fold(0.0f64, f64::max);
    let coefficient = max_norm / (norm + 1e-6);
    if coefficient < 1.0 {
        fn scale<const D: usize>(grads: &mut GradientsParams, id: burn::module::ParamId, by: f64) {
            if let Some(g) = grads.remove::<D>(id) {
                grads.register(id, g * by);
            }
        }
        for &(id, dims) in &ids.0 {
            match dims {
                1 => scale::<1>(grads, id, coefficient),
                2 => scale::<2>(grads, id, coefficient),
                3 => scale::<3>(grads, id, coefficient),
                4 => scale::<4>(grads, id, coefficient),
                _ => {}
            }
        }
    }
    norm
}

/// The largest |value| of `tensor`, reduced one axis at a time in its own shape. Not flattened
/// first: on wgpu, burn 0.22.1's reduction along one axis longer than ~262 000 values returns a
/// wrong answer (Mesa's llvmpipe: the values past the first 65 535 workgroups' share are left
/// out), and a conv layer's gradient flattened is 2.4 M values.
pub fn largest_magnitude<const D: usize>(tensor: Tensor<D>) -> f64 {
    let mut reduced = tensor.abs();
    for axis in (0..D).rev() {
        reduced = reduced.max_dim(axis);
    }
    f64::from(reduced.reshape([1]).into_scalar::<f32>())
}

/// torch's bias corrections at `step` (from 1): `p -= lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)`
/// takes `(1 − β1^t, √(1 − β2^t))`.
fn bias_corrections(adam: &Adam, step: u64) -> (f64, f64) {
    let t = step as i32;
    (1.0 - adam.beta1.powi(t), (1.0 - adam.beta2.powi(t)).sqrt())
}

/// One update of a flattened parameter by tensor operations (the weight decay's term joining
/// the gradient first), on any device.
fn composed_update(
    value: Tensor<1>,
    grad: Tensor<1>,
    previous: Option<Moments>,
    lr: f64,
    adam: &Adam,
) -> (Tensor<1>, Moments) {
    let device = value.device();
    let (b1, b2) = (adam.beta1, adam.beta2);
    let grad = if adam.weight_decay != 0.0 {
        grad + value.clone() * adam.weight_decay
    } else {
        grad
    };
    let moments = match previous {
        Some(m) => Moments {
            step: m.step + 1,
            exp_avg: m.exp_avg.to_device(&device) * b1 + grad.clone() * (1.0 - b1),
            exp_avg_sq: m.exp_avg_sq.to_device(&device) * b2 + grad.square() * (1.0 - b2),
        },
        None => Moments {
            step: 1,
            exp_avg: grad.clone() * (1.0 - b1),
            exp_avg_sq: grad.square() * (1.0 - b2),
        },
    };
    let (bias1, bias2_sqrt) = bias_corrections(adam, moments.step);
    let denominator = moments.exp_avg_sq.clone().sqrt() / bias2_sqrt + adam.epsilon;
    let update = (moments.exp_avg.clone() / denominator) * (lr / bias1);
    (value - update, moments)
}

/// One update of a flattened parameter: the kernels crate's single pass where it serves the
/// device (flex), else composed of tensor operations. Both give the same bits.
fn update(value: Tensor<1>, grad: Tensor<1>, previous: Option<Moments>, lr: f64, adam: &Adam) -> (Tensor<1>, Moments) {
    let step = previous.as_ref().map_or(1, |m| m.step + 1);
    let (bias1, bias2_sqrt) = bias_corrections(adam, step);
    let coefficients = AdamStep {
        beta1: adam.beta1,
        beta2: adam.beta2,
        epsilon: adam.epsilon,
        step_size: lr / bias1,
        bias2_sqrt,
        weight_decay: adam.weight_decay,
    };
    // The moments are handed over, not cloned, so that the kernel updates their buffers in place.
    let step_count = previous.as_ref().map(|m| m.step);
    let moments = previous.map(|m| [m.exp_avg, m.exp_avg_sq]);
    match adam_update(value, &grad, moments, &coefficients) {
        Ok((updated, [exp_avg, exp_avg_sq])) => (
            updated,
            Moments {
                step,
                exp_avg,
                exp_avg_sq,
            },
        ),
        Err(declined) => {
            let (value, moments) = *declined;
            let previous = moments.zip(step_count).map(|([exp_avg, exp_avg_sq], step)| Moments {
                step,
                exp_avg,
                exp_avg_sq,
            });
            composed_update(value, grad, previous, lr, adam)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Tiny {
        layer: Linear,
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
    }

    /// Two steps of torch.optim.Adam(lr=0.1, betas=(0.5, 0.999)) on w = [[1, 2]], loss = Σ w², by
    /// hand: the first step moves each weight by lr exactly (m̂/√v̂ = sign(g)); the second by
    /// lr · m̂₂/√v̂₂ with m₂ = 0.5·m₁ + 0.5·g₂, v₂ = 0.999·v₁ + 0.001·g₂².
    #[test]
    fn matches_torch_adam_by_hand() {
        let device = Device::flex().autodiff();
        let mut model = Tiny {
            layer: LinearConfig::new(2, 1).with_bias(false).init(&device),
        };
        model.layer.weight = Param::from_data(TensorData::new(vec![1.0f32, 2.0], [2, 1]), &device);
        let mut adam = Adam::fomm();
        let mut expected = [1.0f64, 2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            let loss = model.layer.weight.val().square().sum();
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            model = adam.step(0.1, model, &mut grads);
            for i in 0..2 {
                let g = 2.0 * expected[i];
                m[i] = 0.5 * m[i] + 0.5 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let m_hat = m[i] / (1.0 - 0.5f64.powi(t));
                let v_hat = v[i] / (1.0 - 0.999f64.powi(t));
                expected[i] -= 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
            }
        }
        let got = values(model.layer.weight.val());
        for (g, e) in got.iter().zip(expected) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
        assert!(model.layer.weight.val().is_require_grad());
    }

    /// TPSMM's weight decay: torch adds `λ·w` to the gradient before the moments, so with a
    /// large λ a weight moves against its own sign even where the loss pulls the other way.
    #[test]
    fn weight_decay_joins_the_gradient_as_torch_adds_it() {
        let device = Device::flex().autodiff();
        let mut model = Tiny {
            layer: LinearConfig::new(2, 1).with_bias(false).init(&device),
        };
        model.layer.weight = Param::from_data(TensorData::new(vec![1.0f32, -2.0], [2, 1]), &device);
        let mut adam = Adam::tpsmm();
        adam.weight_decay = 10.0;
        // loss = −0.5·w₀ + 0.5·w₁: g = (−0.5, 0.5); g + 10·w = (9.5, −19.5): both move toward 0.
        let w = model.layer.weight.val();
        let loss = (w.clone().narrow(0, 0, 1) * -0.5 + w.narrow(0, 1, 1) * 0.5).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        model = adam.step(0.1, model, &mut grads);
        let got = values(model.layer.weight.val());
        assert!((got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6, "{got:?}");
    }

    /// torch's `clip_grad_norm_(norm_type=inf)`: every gradient scaled by 10 / (max |g| + 1e-6)
    /// when that is below 1; untouched otherwise.
    #[test]
    fn clipping_by_the_largest_gradient_value() {
        let device = Device::flex().autodiff();
        let mut model = Tiny {
            layer: LinearConfig::new(2, 1).with_bias(true).init(&device),
        };
        model.layer.weight = Param::from_data(TensorData::new(vec![1.0f32, 1.0], [2, 1]), &device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![40.0f32, -8.0], [1, 2]), &device);
        let grads_of =
            |model: &Tiny| GradientsParams::from_grads(model.layer.forward(x.clone()).sum().backward(), model);
        let mut grads = grads_of(&model);
        let norm = clip_gradients_max_abs(&model, &mut grads, 10.0);
        assert!((norm - 40.0).abs() < 1e-9);
        let weight: Tensor<2> = grads.get(model.layer.weight.id).expect("weight gradient");
        let bias: Tensor<1> = grads
            .get(model.layer.bias.as_ref().expect("bias").id)
            .expect("bias gradient");
        let scale = 10.0 / (40.0 + 1e-6);
        let w = values(weight);
        assert!(
            (w[0] as f64 - 40.0 * scale).abs() < 1e-5 && (w[1] as f64 + 8.0 * scale).abs() < 1e-5,
            "{w:?}"
        );
        let b = bias.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        assert!((b[0] as f64 - scale).abs() < 1e-6, "{b:?}");
        let mut small = grads_of(&model);
        assert!((clip_gradients_max_abs(&model, &mut small, 100.0) - 40.0).abs() < 1e-9);
        let w: Tensor<2> = small.get(model.layer.weight.id).expect("weight gradient");
        assert_eq!(values(w), vec![40.0, -8.0]);
    }

    /// The kernels crate's single pass on flex and the composed update agree to the last bit,
    /// first step and later, with and without weight decay, on a parameter held only by the
    /// update (updated in place) and on one also held elsewhere (written anew).
    #[test]
    fn the_fused_update_equals_the_composed_one() {
        for adam in [Adam::fomm(), Adam::tpsmm()] {
            for shared in [false, true] {
                fused_equals_composed(&adam, shared);
            }
        }
    }

    fn fused_equals_composed(adam: &Adam, shared: bool) {
        let device = Device::flex();
        let random = |seed: f64| {
            let values: Vec<f32> = (0..40_000)
                .map(|i| ((i as f64 * 0.37 + seed).sin() * 0.01) as f32)
                .collect();
            Tensor::<1>::from_data(TensorData::new(values, [40_000]), &device)
        };
        let (param, grad) = (random(1.0), random(2.0));
        // Two chains of moments, each held only by its own update: the fused one then works in
        // place in its buffers (the parameter, made afresh per step, too).
        let (mut fused_previous, mut composed_previous): (Option<Moments>, Option<Moments>) = (None, None);
        for _ in 0..3 {
            let fresh_param = Tensor::<1>::from_data(param.to_data(), &device);
            let holder = shared.then(|| fresh_param.clone());
            let (fused, fused_moments) = update(fresh_param, grad.clone(), fused_previous.take(), 2e-4, adam);
            if let Some(holder) = holder {
                assert_eq!(
                    holder.to_data(),
                    param.to_data(),
                    "a shared parameter is left as it was"
                );
            }
            let (composed, composed_moments) =
                composed_update(param.clone(), grad.clone(), composed_previous.take(), 2e-4, adam);
            let bits = |t: &Tensor<1>| t.to_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
            assert_eq!(bits(&fused), bits(&composed), "parameters");
            assert_eq!(
                bits(&fused_moments.exp_avg),
                bits(&composed_moments.exp_avg),
                "first moments"
            );
            assert_eq!(
                bits(&fused_moments.exp_avg_sq),
                bits(&composed_moments.exp_avg_sq),
                "second moments"
            );
            assert_eq!(fused_moments.step, composed_moments.step);
            (fused_previous, composed_previous) = (Some(fused_moments), Some(composed_moments));
        }
    }

    #[test]
    fn saved_state_continues_exactly() {
        let device = Device::flex().autodiff();
        let init = || {
            let mut model = Tiny {
                layer: LinearConfig::new(3, 2).init(&device),
            };
            model.layer.weight = Param::from_data(
                TensorData::new(vec![0.5f32, -1.0, 2.0, 0.1, 0.3, -0.7], [3, 2]),
                &device,
            );
            model.layer.bias = Some(Param::from_data(TensorData::new(vec![0.2f32, -0.1], [2]), &device));
            model
        };
        let train = |mut model: Tiny, adam: &mut Adam, steps: usize| {
            for _ in 0..steps {
                let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5], [1, 3]), &device);
                let loss = (model.layer.forward(x) * 3.0).sin().sum();
                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                model = adam.step(0.05, model, &mut grads);
            }
            model
        };
        let mut straight = Adam::fomm();
        let reference = values(train(init(), &mut straight, 4).layer.weight.val());

        let mut first = Adam::fomm();
        let half = train(init(), &mut first, 2);
        let dir = crate::test_support::temp_dir("adam");
        let file = dir.join("adam.safetensors");
        first.save(&file).expect("save");
        let mut loaded = Adam::load(&file, &Device::flex()).expect("load");
        assert_eq!(loaded.len(), 2, "weight and bias");
        let resumed = values(train(half, &mut loaded, 2).layer.weight.val());
        assert_eq!(reference, resumed);

        std::fs::write(&file, b"nope").expect("write");
        assert!(Adam::load(&file, &Device::flex()).is_err());
    }
}
