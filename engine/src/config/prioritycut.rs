//! PriorityCut's own `prioritycut_params`: the variant of the paper's ablation, and every choice
//! the paper leaves open as a named value with its default and the reason for it.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::LossWeights;
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

    /// The generator adversarial weight for `variant` (FOMM's loss weights).
    pub fn generator_gan(&self, weights: &LossWeights) -> f64 {
        self.generator_gan_weight(weights.generator_gan)
    }

    /// The generator adversarial weight for `variant`, given the config's `generator_gan`.
    pub fn generator_gan_weight(&self, configured: f64) -> f64 {
        if !self.variant.adversarial() {
            0.0
        } else if configured > 0.0 {
            configured
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
    fn fomm_variant_has_no_adversarial_weight() {
        let mut p = PriorityCutParams::new();
        let w = LossWeights::new();
        assert_eq!(p.generator_gan(&w), 1.0);
        p.variant = Variant::Fomm;
        assert_eq!(p.generator_gan(&w), 0.0);
    }
}
