//! The training losses: FOMM's (§3.3 of FOMM, `modules/model.py`) and the U-Net
//! discriminator's (PriorityCut §3.3, after Schönfeld et al. 2020).
//!
//! - Perceptual: `Σ_scales Σ_i w_i · mean|VGG_i(x̂_s) − VGG_i(x_s)|` over an anti-aliased image
//!   pyramid; without VGG19 weights, the same pyramid of raw pixels (loudly reported).
//! - Equivariance: `mean|kp_D − T(kp_T(D))|` and `mean|I − J_D⁻¹ · (∂T · J_T(D))|` under a
//!   random TPS transform T.
//! - Adversarial (LSGAN, as FOMM+): the generator wants `D(x̂) → 1`; the discriminator wants
//!   `D(x) → 1`, `D(x̂) → 0`. For the U-Net discriminator both its encoder and decoder terms.
//! - Feature matching (pix2pixHD): `Σ_i w_i · mean|D_i(x) − D_i(x̂)|`.
//! - CutMix on the U-Net decoder: `mean(D_dec(mix) − M)²` and the consistency loss
//!   `mean(D_dec(mix(x, x̂, M)) − mix(D_dec(x), D_dec(x̂), M))²`.

use burn::tensor::{Device, Tensor};

use crate::augment::{RandomTps, mix};
use crate::kernels::mean_absolute_difference;
use crate::model::blocks::AntiAliasInterpolation2d;
use crate::model::keypoints::inverse_2x2;
use crate::model::vgg19::Vgg19;

/// FOMM's `ImagePyramide`: the image at each scale, anti-aliased.
#[derive(Debug, Clone)]
pub struct ImagePyramid {
    levels: Vec<Option<AntiAliasInterpolation2d>>,
}

impl ImagePyramid {
    pub fn new(scales: &[f64], channels: usize, device: &Device) -> Self {
        Self {
            levels: scales
                .iter()
                .map(|&s| (s != 1.0).then(|| AntiAliasInterpolation2d::new(channels, s, device)))
                .collect(),
        }
    }

    /// One image per scale, in the order of `scales`.
    pub fn forward(&self, x: &Tensor<4>) -> Vec<Tensor<4>> {
        self.levels
            .iter()
            .map(|down| match down {
                Some(down) => down.forward(x.clone()),
                None => x.clone(),
            })
            .collect()
    }
}

/// What the perceptual loss compares.
#[derive(Debug, Clone)]
pub enum PerceptualFeatures {
    /// torchvision's VGG19; `weights` says where its weights came from (the file, or seeded
    /// random weights where only speed is measured).
    Vgg19 { net: Vgg19, weights: String },
    /// No VGG19 weights were given: the pyramid's pixels themselves (an L1 pyramid).
    PixelPyramid,
}

#[derive(Debug, Clone)]
pub struct PerceptualLoss {
    pyramid: ImagePyramid,
    features: PerceptualFeatures,
    /// One weight per VGG19 slice (relu1_1 … relu5_1).
    weights: Vec<f64>,
}

impl PerceptualLoss {
    pub fn new(features: PerceptualFeatures, scales: &[f64], weights: &[f64], device: &Device) -> Self {
        Self {
            pyramid: ImagePyramid::new(scales, 3, device),
            features,
            weights: weights.to_vec(),
        }
    }

    pub fn is_fallback(&self) -> bool {
        matches!(self.features, PerceptualFeatures::PixelPyramid)
    }

    /// One line for logs, the UI and the checkpoint.
    pub fn describe(&self) -> String {
        if !self.enabled() {
            return "none (no perceptual weights: AVD training, or all zero in the config)".to_string();
        }
        match &self.features {
            PerceptualFeatures::Vgg19 { weights, .. } => format!("VGG19 perceptual pyramid ({weights})"),
            PerceptualFeatures::PixelPyramid => {
                "pixel-pyramid L1 FALLBACK (no VGG19 weights given: pass --vgg19 vgg19-dcbb9e9d.pth for the published VGG19 loss)"
                    .to_string()
            }
        }
    }

    /// Whether the loss is on at all (`perceptual` weights not all zero).
    pub fn enabled(&self) -> bool {
        self.weights.iter().any(|&w| w != 0.0)
    }

    /// The loss of `prediction` against `real` (the target, not differentiated), [1].
    pub fn forward(&self, prediction: &Tensor<4>, real: &Tensor<4>) -> Tensor<1> {
        let device = prediction.device();
        let mut total = Tensor::<1>::zeros([1], &device);
        let real = real.clone().detach();
        for (p, r) in self
            .pyramid
            .forward(prediction)
            .into_iter()
            .zip(self.pyramid.forward(&real))
        {
            match &self.features {
                PerceptualFeatures::Vgg19 { net, .. } => {
                    for ((a, b), &w) in net.forward(p).into_iter().zip(net.forward(r)).zip(&self.weights) {
                        if w != 0.0 {
                            total = total + mean_absolute_difference(a, b.detach()) * w;
                        }
                    }
                }
                PerceptualFeatures::PixelPyramid => {
                    let w: f64 = self.weights.iter().sum();
                    total = total + (p - r).abs().mean() * w;
                }
            }
        }
        total
    }
}

/// `mean|kp_D − T(kp_T(D))|`: keypoints of the transformed frame, mapped back, land on the
/// keypoints of the frame. `kp_driving`, `kp_transformed` [b, kp, 2].
pub fn equivariance_value(kp_driving: &Tensor<3>, transform: &RandomTps, kp_transformed: &Tensor<3>) -> Tensor<1> {
    (kp_driving.clone() - transform.warp_coordinates(kp_transformed.clone()))
        .abs()
        .mean()
}

/// `mean|I − J_D⁻¹ · (∂T(kp_T(D)) · J_T(D))|`: the local affine frames agree too.
/// `jacobian_driving`, `jacobian_transformed` [b, kp, 2, 2]; `kp_transformed` [b, kp, 2].
pub fn equivariance_jacobian(
    jacobian_driving: &Tensor<4>,
    transform: &RandomTps,
    kp_transformed: &Tensor<3>,
    jacobian_transformed: &Tensor<4>,
) -> Tensor<1> {
    let transformed = transform
        .jacobian(kp_transformed.clone())
        .matmul(jacobian_transformed.clone());
    let value = inverse_2x2(jacobian_driving.clone()).matmul(transformed);
    let [b, k, _, _] = value.dims();
    let eye = Tensor::<2>::eye(2, &value.device())
        .reshape([1, 1, 2, 2])
        .repeat_dim(0, b)
        .repeat_dim(1, k);
    (eye - value).abs().mean()
}

/// LSGAN towards "real": `mean((1 − D)²)`.
pub fn lsgan_real<const D: usize>(prediction: Tensor<D>) -> Tensor<1> {
    (prediction.ones_like() - prediction).square().mean()
}

/// LSGAN towards "fake": `mean(D²)`.
pub fn lsgan_fake<const D: usize>(prediction: Tensor<D>) -> Tensor<1> {
    prediction.square().mean()
}

/// `Σ_i w_i · mean|real_i − fake_i|` over the discriminator's feature maps; zero weights skip.
pub fn feature_matching(real: &[Tensor<4>], fake: &[Tensor<4>], weights: &[f64], device: &Device) -> Tensor<1> {
    let mut total = Tensor::<1>::zeros([1], device);
    for ((a, b), &w) in real.iter().zip(fake).zip(weights) {
        if w != 0.0 {
            total = total + (a.clone() - b.clone()).abs().mean() * w;
        }
    }
    total
}

/// The decoder on a CutMix image should find the mask: `mean((D_dec(mix) − M)²)` (real = 1).
pub fn decoder_on_mixed(decoder_mixed: Tensor<4>, mask: Tensor<4>) -> Tensor<1> {
    (decoder_mixed - mask).square().mean()
}

/// The consistency loss: the decoder's output on the mixed image against the same mix of its
/// outputs on the real and the fake image, `mean((D_dec(mix(x, x̂, M)) − mix(D_dec(x), D_dec(x̂), M))²)`.
pub fn consistency(
    decoder_mixed: Tensor<4>,
    decoder_real: Tensor<4>,
    decoder_fake: Tensor<4>,
    mask: Tensor<4>,
) -> Tensor<1> {
    (decoder_mixed - mix(decoder_real, decoder_fake, mask)).square().mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransformParams;
    use crate::rng::Rng;
    use burn::tensor::{Distribution, TensorData};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar()
    }

    /// A decoder that is linear in its input pixel by pixel commutes with the mix: the
    /// consistency loss vanishes for any mask; a decoder that mixes pixels does not.
    #[test]
    fn consistency_is_zero_for_a_pixelwise_linear_decoder() {
        let device = Device::flex();
        let real = Tensor::<4>::random([2, 1, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
        let fake = Tensor::<4>::random([2, 1, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
        let mut rng = Rng::seed(4);
        let mask = crate::augment::cutmix_mask(8, 8, &[0.3, 0.6], &mut rng, &device);
        let linear = |x: Tensor<4>| x * 2.5 - 0.75;
        let mixed = mix(real.clone(), fake.clone(), mask.clone());
        let loss = consistency(
            linear(mixed.clone()),
            linear(real.clone()),
            linear(fake.clone()),
            mask.clone(),
        );
        assert!(scalar(loss) < 1e-12);
        let blur = |x: Tensor<4>| {
            let shifted = x.clone().slice([0..2, 0..1, 0..8, 1..8]);
            Tensor::cat(vec![shifted, x.clone().slice([0..2, 0..1, 0..8, 7..8])], 3) + x
        };
        let loss = consistency(blur(mixed), blur(real), blur(fake), mask);
        assert!(scalar(loss) > 1e-3);
    }

    #[test]
    fn lsgan_and_feature_matching_values() {
        let device = Device::flex();
        let d = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 0.5], [1, 1, 2, 2]), &device);
        // (1 + 0 + 1 + 0.25) / 4 and (0 + 1 + 4 + 0.25) / 4
        assert!((scalar(lsgan_real(d.clone())) - 0.5625).abs() < 1e-7);
        assert!((scalar(lsgan_fake(d.clone())) - 1.3125).abs() < 1e-7);
        let fm = feature_matching(
            &[d.clone(), d.clone()],
            &[d.zeros_like(), d.clone()],
            &[10.0, 10.0],
            &device,
        );
        assert!((scalar(fm) - 8.75).abs() < 1e-6);
    }

    #[test]
    fn equivariance_vanishes_for_consistent_keypoints() {
        let device = Device::flex();
        let mut rng = Rng::seed(9);
        let transform = RandomTps::sample(1, &TransformParams::new(), &mut rng);
        // Keypoints of T(D) are T⁻¹(kp_D): pick them, then derive kp_D = T(kp_T).
        let kp_t = Tensor::<3>::from_data(TensorData::new(vec![0.1f32, 0.2, -0.4, 0.3], [1, 2, 2]), &device);
        let kp_d = transform.warp_coordinates(kp_t.clone());
        assert!(scalar(equivariance_value(&kp_d, &transform, &kp_t)) < 1e-7);
        // J_D = ∂T · J_T makes the Jacobian term vanish.
        let j_t = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 0.2, -0.1, 0.9, 1.1, 0.0, 0.3, 0.8], [1, 2, 2, 2]),
            &device,
        );
        let j_d = transform.jacobian(kp_t.clone()).matmul(j_t.clone());
        assert!(scalar(equivariance_jacobian(&j_d, &transform, &kp_t, &j_t)) < 1e-6);
        let wrong = j_t.clone();
        assert!(scalar(equivariance_jacobian(&wrong, &transform, &kp_t, &j_t)) > 1e-3);
    }

    #[test]
    fn pixel_fallback_is_the_weighted_l1_pyramid() {
        let device = Device::flex();
        let loss = PerceptualLoss::new(PerceptualFeatures::PixelPyramid, &[1.0], &[1.0, 2.0], &device);
        let a = Tensor::<4>::zeros([1, 3, 8, 8], &device);
        let b = Tensor::<4>::ones([1, 3, 8, 8], &device) * 0.5;
        assert!((scalar(loss.forward(&a, &b)) - 1.5).abs() < 1e-6);
        assert!(loss.describe().contains("FALLBACK"));
    }
}
