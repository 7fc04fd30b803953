//! FOMM's multi-scale patch discriminator (pix2pix style, `modules/discriminator.py`), used by
//! FOMM+ for the adversarial and feature-matching losses. Spectral norm follows
//! `torch.nn.utils.spectral_norm`: the checkpoint keeps `weight_orig` and the power-iteration
//! vectors `u`, `v`; the weight used is `weight_orig / σ` with `σ = uᵀ · W · v`. In training (an
//! autodiff device) each forward first does one power iteration on `u`, `v`, as torch does.

use burn::config::Config;
use burn::module::{Module, Param, RunningState};
use burn::tensor::activation::leaky_relu;
use burn::tensor::module::{avg_pool2d, conv2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions};
use burn::tensor::{Device, Distribution, Tensor};

use super::keypoints::kp2gaussian;

/// `model_params.discriminator_params` (+ `common_params`). Defaults: FOMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct DiscriminatorConfig {
    /// Image scales the discriminators look at, one discriminator each.
    #[config(default = "vec![1.0]")]
    pub scales: Vec<f64>,
    #[config(default = 32)]
    pub block_expansion: usize,
    #[config(default = 512)]
    pub max_features: usize,
    #[config(default = 4)]
    pub num_blocks: usize,
    /// Spectral normalization of every convolution.
    #[config(default = true)]
    pub sn: bool,
    #[config(default = 3)]
    pub num_channels: usize,
    /// Concatenate the keypoint Gaussians to the input.
    #[config(default = false)]
    pub use_kp: bool,
    #[config(default = 10)]
    pub num_kp: usize,
    #[config(default = 0.01)]
    pub kp_variance: f64,
}

/// A convolution (stride 1, zero padding) whose weight may be spectrally normalized.
#[derive(Module, Debug)]
pub struct SpectralConv2d {
    /// `weight_orig` in a spectrally normalized torch checkpoint, `weight` otherwise.
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    /// Left singular vector estimate [out]; `None` without spectral norm.
    pub weight_u: Option<RunningState<Tensor<1>>>,
    /// Right singular vector estimate [in·kh·kw].
    pub weight_v: Option<RunningState<Tensor<1>>>,
    /// Zero padding on every side; 0 in FOMM's discriminator.
    pub padding: usize,
}

/// `v / max(‖v‖, 1e-12)`, torch's `F.normalize` as spectral norm uses it.
fn normalize(v: Tensor<1>) -> Tensor<1> {
    let norm = v.clone().square().sum().sqrt().clamp_min(1e-12);
    v / norm
}

impl SpectralConv2d {
    pub fn new(input: usize, output: usize, kernel: usize, spectral: bool, device: &Device) -> Self {
        // torch's default conv init: U(−1/√fan_in, 1/√fan_in) for weight and bias.
        let bound = 1.0 / ((input * kernel * kernel) as f64).sqrt();
        let uniform = Distribution::Uniform(-bound, bound);
        let normalized = |n: usize| {
            RunningState::new(normalize(Tensor::<1>::random(
                [n],
                Distribution::Normal(0.0, 1.0),
                device,
            )))
        };
        Self {
            weight: Param::from_tensor(Tensor::random([output, input, kernel, kernel], uniform, device)),
            bias: Param::from_tensor(Tensor::random([output], uniform, device)),
            weight_u: spectral.then(|| normalized(output)),
            weight_v: spectral.then(|| normalized(input * kernel * kernel)),
            padding: 0,
        }
    }

    pub fn with_padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// The weight the convolution uses: `weight_orig / σ` under spectral norm.
    pub fn effective_weight(&self) -> Tensor<4> {
        let weight = self.weight.val();
        match (&self.weight_u, &self.weight_v) {
            (Some(u_state), Some(v_state)) => {
                let device = weight.device();
                let [o, i, kh, kw] = weight.dims();
                let n = i * kh * kw;
                let matrix = weight.clone().reshape([o, n]);
                let training = device.is_autodiff();
                // Training updates u and v every step, so it must read the latest values.
                let (mut u, mut v) = if training {
                    (u_state.value_sync(), v_state.value_sync())
                } else {
                    (u_state.value(), v_state.value())
                };
                u = u.to_device(&device);
                v = v.to_device(&device);
                if training {
                    // One power iteration, outside the graph: v ← Wᵀu/‖·‖, u ← Wv/‖·‖. Detached
                    // results are fresh leaves: built on the previous u, the autodiff node depth
                    // would grow every step, reordering the backward tape (and its summation
                    // order) as training goes on, unlike after a reload.
                    let w = matrix.clone().detach();
                    v = normalize(w.clone().transpose().matmul(u.reshape([o, 1])).reshape([n])).detach();
                    u = normalize(w.matmul(v.clone().reshape([n, 1])).reshape([o])).detach();
                    u_state.update(u.clone());
                    v_state.update(v.clone());
                }
                let wv = matrix.matmul(v.reshape([n, 1]));
                let sigma = (u.reshape([o, 1]) * wv).sum();
                weight / sigma.reshape([1, 1, 1, 1])
            }
            _ => weight,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.effective_weight(),
            Some(self.bias.val()),
            ConvOptions::new([1, 1], [self.padding, self.padding], [1, 1], 1),
        )
    }
}

/// torch's `InstanceNorm2d(affine=True)`: per-image, per-channel normalization.
#[derive(Module, Debug)]
pub struct InstanceNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl InstanceNorm2d {
    const EPSILON: f64 = 1e-5;

    pub fn new(features: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([features], device)),
            bias: Param::from_tensor(Tensor::zeros([features], device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let flat = x.reshape([b, c, h * w]);
        let mean = flat.clone().mean_dim(2);
        let centered = flat - mean;
        let var = centered.clone().square().mean_dim(2);
        let normalized = centered / (var + Self::EPSILON).sqrt();
        let out = normalized * self.weight.val().reshape([1, c, 1]) + self.bias.val().reshape([1, c, 1]);
        out.reshape([b, c, h, w])
    }
}

/// Conv 4×4 (no padding), optional instance norm, LeakyReLU(0.2), optional 2×2 average pool.
#[derive(Module, Debug)]
pub struct DiscriminatorBlock {
    pub conv: SpectralConv2d,
    pub norm: Option<InstanceNorm2d>,
    pub pool: bool,
}

impl DiscriminatorBlock {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = self.conv.forward(x);
        if let Some(norm) = &self.norm {
            out = norm.forward(out);
        }
        out = leaky_relu(out, 0.2);
        if self.pool {
            out = avg_pool2d(out, AvgPoolOptions::new([2, 2]));
        }
        out
    }
}

/// One patch discriminator.
#[derive(Module, Debug)]
pub struct Discriminator {
    pub down_blocks: Vec<DiscriminatorBlock>,
    pub conv: SpectralConv2d,
    pub use_kp: bool,
    pub kp_variance: f64,
}

/// Feature maps of every block and the final patch prediction map.
#[derive(Debug, Clone)]
pub struct DiscriminatorOutput {
    pub feature_maps: Vec<Tensor<4>>,
    /// [b, 1, h', w'] real (→ 1) / fake (→ 0) per patch.
    pub prediction_map: Tensor<4>,
}

impl Discriminator {
    /// `image` [b, c, h, w]; `kp_value` [b, kp, 2] is used only when `use_kp`.
    pub fn forward(&self, image: Tensor<4>, kp_value: Option<&Tensor<3>>) -> DiscriminatorOutput {
        let mut out = image;
        if let (true, Some(kp)) = (self.use_kp, kp_value) {
            let [_, _, h, w] = out.dims();
            out = Tensor::cat(vec![out, kp2gaussian(kp, h, w, self.kp_variance)], 1);
        }
        let mut feature_maps = Vec::with_capacity(self.down_blocks.len());
        for block in &self.down_blocks {
            out = block.forward(out);
            feature_maps.push(out.clone());
        }
        DiscriminatorOutput {
            feature_maps,
            prediction_map: self.conv.forward(out),
        }
    }
}

/// One discriminator per image scale (FOMM's `discs` ModuleDict, keyed by scale; here in the
/// order of `scales`).
#[derive(Module, Debug)]
pub struct MultiScaleDiscriminator {
    pub discs: Vec<Discriminator>,
    pub scales: Vec<f64>,
}

impl DiscriminatorConfig {
    pub fn init(&self, device: &Device) -> MultiScaleDiscriminator {
        let ch = |level: usize| self.max_features.min(self.block_expansion << level);
        let disc = || {
            let down_blocks: Vec<_> = (0..self.num_blocks)
                .map(|i| {
                    let input = if i == 0 {
                        self.num_channels + if self.use_kp { self.num_kp } else { 0 }
                    } else {
                        ch(i)
                    };
                    DiscriminatorBlock {
                        conv: SpectralConv2d::new(input, ch(i + 1), 4, self.sn, device),
                        norm: (i != 0).then(|| InstanceNorm2d::new(ch(i + 1), device)),
                        pool: i != self.num_blocks - 1,
                    }
                })
                .collect();
            Discriminator {
                down_blocks,
                conv: SpectralConv2d::new(ch(self.num_blocks), 1, 1, self.sn, device),
                use_kp: self.use_kp,
                kp_variance: self.kp_variance,
            }
        };
        MultiScaleDiscriminator {
            discs: self.scales.iter().map(|_| disc()).collect(),
            scales: self.scales.clone(),
        }
    }
}

impl MultiScaleDiscriminator {
    /// FOMM's ModuleDict key of a scale: `str(scale).replace('.', '-')` ("1", "0-5", ...).
    pub fn scale_key(scale: f64) -> String {
        let text = if scale.fract() == 0.0 {
            format!("{}", scale as i64)
        } else {
            format!("{scale}")
        };
        text.replace('.', "-")
    }

    /// `pyramid[i]` is the image at `scales[i]`.
    pub fn forward(&self, pyramid: &[Tensor<4>], kp_value: Option<&Tensor<3>>) -> Vec<DiscriminatorOutput> {
        self.discs
            .iter()
            .zip(pyramid)
            .map(|(disc, image)| disc.forward(image.clone(), kp_value))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn spectral_norm_divides_by_the_largest_singular_value_after_power_iterations() {
        let device = Device::flex().autodiff();
        let mut conv = SpectralConv2d::new(2, 2, 1, true, &device);
        // W = diag(3, 1) as a 1x1 conv: σ_max = 3.
        conv.weight = Param::from_data(TensorData::new(vec![3.0f32, 0.0, 0.0, 1.0], [2, 2, 1, 1]), &device);
        for _ in 0..20 {
            conv.effective_weight();
        }
        let w = conv.effective_weight().into_data().try_to_vec::<f32>().expect("f32");
        assert!((w[0] - 1.0).abs() < 1e-4 && (w[3] - 1.0 / 3.0).abs() < 1e-4, "{w:?}");

        // Without autodiff (inference) u and v stay as loaded.
        let eval = SpectralConv2d::new(2, 2, 1, true, &Device::flex());
        let before = eval.weight_u.as_ref().map(|u| u.value().into_data());
        eval.effective_weight();
        assert_eq!(before, eval.weight_u.as_ref().map(|u| u.value().into_data()));
    }
}
