//! Training hyper-parameters: FOMM's `train_params` and `dataset_params.augmentation_params`
//! (defaults: `vox-256.yaml`), and PriorityCut's own `prioritycut_params`, where every choice
//! the paper leaves open is a named value with its default and the reason for it.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The five models of the paper's ablation (Tables 1–3), one switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// FOMM as published: perceptual + equivariance losses, no discriminator.
    Fomm,
    /// FOMM+: FOMM's multi-scale patch discriminator, LSGAN and feature matching.
    FommAdv,
    /// U-Net discriminator: global (encoder) and per-pixel (decoder) real/fake feedback.
    Unet,
    /// U-Net + vanilla rectangular CutMix with the consistency loss (the ablation).
    UnetCutmix,
    /// U-Net + CutMix with the PriorityCut mask: the paper's model.
    UnetPrioritycut,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Fomm,
        Variant::FommAdv,
        Variant::Unet,
        Variant::UnetCutmix,
        Variant::UnetPrioritycut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Fomm => "fomm",
            Variant::FommAdv => "fomm-adv",
            Variant::Unet => "unet",
            Variant::UnetCutmix => "unet-cutmix",
            Variant::UnetPrioritycut => "unet-prioritycut",
        }
    }

    /// The paper's name for the row of its tables.
    pub fn title(self) -> &'static str {
        match self {
            Variant::Fomm => "FOMM",
            Variant::FommAdv => "FOMM+",
            Variant::Unet => "U-Net",
            Variant::UnetCutmix => "U-Net+CutMix",
            Variant::UnetPrioritycut => "U-Net+PriorityCut",
        }
    }

    pub fn adversarial(self) -> bool {
        self != Variant::Fomm
    }

    pub fn unet(self) -> bool {
        matches!(self, Variant::Unet | Variant::UnetCutmix | Variant::UnetPrioritycut)
    }

    pub fn cutmix(self) -> bool {
        matches!(self, Variant::UnetCutmix | Variant::UnetPrioritycut)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == wanted || (wanted == "fomm+" && *v == Variant::FommAdv))
            .ok_or_else(|| {
                let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
                EngineError::Invalid(format!("unknown variant '{s}' (choose one of {})", names.join(", ")))
            })
    }
}

/// `train_params.transform_params`: the random TPS transform of the equivariance loss.
#[derive(Config, Debug)]
pub struct TransformParams {
    /// Std of the noise added to the identity affine part.
    #[config(default = 0.05)]
    pub sigma_affine: f64,
    /// Std of the thin-plate-spline control weights.
    #[config(default = 0.005)]
    pub sigma_tps: f64,
    /// Control points per side (`points_tps²` in all).
    #[config(default = 5)]
    pub points_tps: usize,
}

/// `train_params.loss_weights`.
#[derive(Config, Debug)]
pub struct LossWeights {
    /// Generator adversarial weight; 0 in `vox-256.yaml` (FOMM), 1 in `vox-adv-256.yaml`.
    #[config(default = 0.0)]
    pub generator_gan: f64,
    #[config(default = 1.0)]
    pub discriminator_gan: f64,
    /// One weight per discriminator feature map.
    #[config(default = "vec![10.0, 10.0, 10.0, 10.0]")]
    pub feature_matching: Vec<f64>,
    /// One weight per VGG19 layer (relu1_1 … relu5_1).
    #[config(default = "vec![10.0, 10.0, 10.0, 10.0, 10.0]")]
    pub perceptual: Vec<f64>,
    #[config(default = 10.0)]
    pub equivariance_value: f64,
    #[config(default = 10.0)]
    pub equivariance_jacobian: f64,
}

/// `train_params`. Defaults: FOMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct TrainParams {
    #[config(default = 100)]
    pub num_epochs: usize,
    /// Passes over the dataset per epoch (FOMM's `DatasetRepeater`).
    #[config(default = 75)]
    pub num_repeats: usize,
    /// Epochs after which every learning rate is multiplied by 0.1 (MultiStepLR).
    #[config(default = "vec![60, 90]")]
    pub epoch_milestones: Vec<usize>,
    #[config(default = 2e-4)]
    pub lr_generator: f64,
    #[config(default = 2e-4)]
    pub lr_discriminator: f64,
    #[config(default = 2e-4)]
    pub lr_kp_detector: f64,
    #[config(default = 40)]
    pub batch_size: usize,
    /// Image pyramid scales of the perceptual loss.
    #[config(default = "vec![1.0, 0.5, 0.25, 0.125]")]
    pub scales: Vec<f64>,
    /// FOMM saves every this many epochs; the engine checkpoints by steps (`TrainOptions`).
    #[config(default = 50)]
    pub checkpoint_freq: usize,
    #[config(default = "TransformParams::new()")]
    pub transform_params: TransformParams,
    #[config(default = "LossWeights::new()")]
    pub loss_weights: LossWeights,
}

/// `dataset_params`: how training pairs are drawn and augmented. Defaults: `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct DatasetParams {
    /// VoxCeleb's sampling: videos named `id#clip` are grouped by `id`, and each sample draws
    /// one identity, then one of its clips (a name without `#` is an identity of its own).
    #[config(default = true)]
    pub id_sampling: bool,
    #[config(default = true)]
    pub horizontal_flip: bool,
    /// Reverse the clip (swapping which frame is the source) half of the time.
    #[config(default = true)]
    pub time_flip: bool,
    #[config(default = 0.1)]
    pub brightness: f64,
    #[config(default = 0.1)]
    pub contrast: f64,
    #[config(default = 0.1)]
    pub saturation: f64,
    #[config(default = 0.1)]
    pub hue: f64,
}

/// `prioritycut_params`: the variant, and the choices the paper (§3.2–3.3) leaves open.
#[derive(Config, Debug)]
pub struct PriorityCutParams {
    #[config(default = "Variant::UnetPrioritycut")]
    pub variant: Variant,
    /// M_bg ≥ this counts as confident background. 0.5: the background transform holds more
    /// than half of the pixel's motion mass, i.e. it dominates every keypoint's together.
    #[config(default = 0.5)]
    pub background_threshold: f64,
    /// k, in percent of the image, is drawn uniformly from [k_min, k_max] per sample. 0–100:
    /// "following Yun et al. (2019) we randomize k", whose CutMix draws the area from U(0, 1).
    #[config(default = 0.0)]
    pub k_min: f64,
    #[config(default = 100.0)]
    pub k_max: f64,
    /// Chance that a discriminator step also trains on a CutMix batch. 0.5: U-Net GAN's mixing
    /// rate (Schönfeld et al. 2020) after its warm-up.
    #[config(default = 0.5)]
    pub cutmix_probability: f64,
    /// Which side of the mix the PriorityCut mask marks. false: Eq. 2 as written,
    /// `M ⊙ x + (1 − M) ⊙ x̂` keeps the real pixels where M = 1. true: the reading of §3.2's
    /// "assigns the fake pixels to locations where there are large changes in motion".
    #[config(default = false)]
    pub fake_where_occluded: bool,
    /// Weight of the consistency loss. 1: U-Net GAN's.
    #[config(default = 1.0)]
    pub consistency_weight: f64,
    /// Weight of the U-Net decoder's (per-pixel) adversarial terms next to the encoder's. 1:
    /// U-Net GAN weighs the two equally.
    #[config(default = 1.0)]
    pub decoder_weight: f64,
    /// Generator adversarial weight used by the adversarial variants when `loss_weights.
    /// generator_gan` is 0 (FOMM's vox-256.yaml). 1: FOMM+'s `vox-adv-256.yaml`.
    #[config(default = 1.0)]
    pub adversarial_weight: f64,
    /// Consecutive non-finite steps tolerated (skipped) before rolling back to the last checkpoint.
    #[config(default = 3)]
    pub nan_patience: usize,
}

impl TrainParams {
    /// MultiStepLR(γ = 0.1): the factor on the base learning rates during `epoch`.
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        let passed = self.epoch_milestones.iter().filter(|&&m| m <= epoch).count();
        0.1f64.powi(passed as i32)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("train_params.batch_size must be at least 1".into());
        }
        if self.num_repeats == 0 {
            return Err("train_params.num_repeats must be at least 1".into());
        }
        if self
            .scales
            .iter()
            .any(|&s| !(s > 0.0 && s <= 1.0 && (1.0 / s).fract() == 0.0))
        {
            return Err(format!(
                "train_params.scales must be 1/n for whole n, got {:?}",
                self.scales
            ));
        }
        if self.loss_weights.perceptual.len() > 5 {
            return Err("loss_weights.perceptual has more than the 5 VGG19 layers".into());
        }
        Ok(())
    }
}

impl PriorityCutParams {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=100.0).contains(&self.k_min) || !(self.k_min..=100.0).contains(&self.k_max) {
            return Err(format!(
                "prioritycut_params: need 0 ≤ k_min ≤ k_max ≤ 100, got {} and {}",
                self.k_min, self.k_max
            ));
        }
        if !(0.0..=1.0).contains(&self.cutmix_probability) {
            return Err("prioritycut_params.cutmix_probability must be in [0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.background_threshold) {
            return Err("prioritycut_params.background_threshold must be in [0, 1]".into());
        }
        Ok(())
    }

    /// The generator adversarial weight for `variant`.
    pub fn generator_gan(&self, weights: &LossWeights) -> f64 {
        if !self.variant.adversarial() {
            0.0
        } else if weights.generator_gan > 0.0 {
            weights.generator_gan
        } else {
            self.adversarial_weight
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_and_print() {
        for v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>().ok(), Some(v));
        }
        assert_eq!("FOMM+".parse::<Variant>().ok(), Some(Variant::FommAdv));
        assert_eq!(
            "unet_prioritycut".parse::<Variant>().ok(),
            Some(Variant::UnetPrioritycut)
        );
        let err = "gan".parse::<Variant>().expect_err("unknown");
        assert!(err.to_string().contains("unet-prioritycut"));
    }

    #[test]
    fn multistep_lr_follows_the_milestones() {
        let p = TrainParams::new();
        assert_eq!(p.lr_factor(0), 1.0);
        assert_eq!(p.lr_factor(59), 1.0);
        assert!((p.lr_factor(60) - 0.1).abs() < 1e-12);
        assert!((p.lr_factor(95) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn fomm_variant_has_no_adversarial_weight() {
        let mut p = PriorityCutParams::new();
        let w = LossWeights::new();
        assert_eq!(p.generator_gan(&w), 1.0);
        p.variant = Variant::Fomm;
        assert_eq!(p.generator_gan(&w), 0.0);
    }
}
