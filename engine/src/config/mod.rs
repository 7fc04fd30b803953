//! FOMM's own YAML config files (`dataset_params`, `model_params`, `train_params`, ...) read into
//! the engine's `#[derive(Config)]` structs.
//!
//! Every key is optional: what a file leaves out keeps FOMM's `vox-256.yaml` value, which is the
//! default of each module's config. Keys this engine does not know are ignored, as FOMM ignores
//! them, so configs of other FOMM datasets (taichi, mgif, bair, ...) load as they are; they are
//! listed in [`ConfigFile::ignored_keys`] so that a typo does not pass unseen.
//!
//! Layer: below everything but the networks (`model/`), whose own configs it gathers.

use std::path::Path;

use burn::config::Config;

use crate::model::dense_motion::DenseMotionConfig;
use crate::model::discriminator::DiscriminatorConfig;
use crate::model::generator::GeneratorConfig;
use crate::model::keypoint_detector::KpDetectorConfig;
use crate::{EngineError, Result};

mod prioritycut;
pub mod tpsmm;
mod train;
mod yaml;

pub use prioritycut::{PriorityCutParams, Variant};
pub use train::{DatasetParams, LossWeights, TrainParams, TrainingMode, TransformParams};

/// A config as read from its file, with what the engine left unread.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub config: FommConfig,
    /// Keys of the file (`section.key`) that this engine does not use: a typo, or a FOMM
    /// option that is not implemented. FOMM's keys that only its own scripts read are left out.
    pub ignored_keys: Vec<String>,
}

/// A whole FOMM experiment config: the models and the frame size they run at.
#[derive(Config, Debug)]
pub struct FommConfig {
    /// `dataset_params.frame_shape`: [height, width, channels].
    #[config(default = "[256, 256, 3]")]
    pub frame_shape: [usize; 3],
    pub kp_detector: KpDetectorConfig,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
    /// `animate_params.normalization_params`.
    pub animate: AnimateParams,
    /// `dataset_params` other than the frame shape: sampling and augmentation.
    #[config(default = "DatasetParams::new()")]
    pub dataset: DatasetParams,
    /// `train_params`.
    #[config(default = "TrainParams::new()")]
    pub train: TrainParams,
    /// `prioritycut_params`: the variant and PriorityCut's own choices.
    #[config(default = "PriorityCutParams::new()")]
    pub prioritycut: PriorityCutParams,
}

/// How driving keypoints are transferred to the source (`animate_params.normalization_params`).
#[derive(Config, Debug)]
pub struct AnimateParams {
    #[config(default = false)]
    pub adapt_movement_scale: bool,
    #[config(default = true)]
    pub use_relative_movement: bool,
    #[config(default = true)]
    pub use_relative_jacobian: bool,
}

impl Default for FommConfig {
    /// FOMM's `vox-256.yaml`.
    fn default() -> Self {
        Self::vox256()
    }
}

impl FommConfig {
    /// FOMM's `vox-256.yaml` model, the defaults of every module config.
    pub fn vox256() -> Self {
        Self::new(
            KpDetectorConfig::new(),
            GeneratorConfig::new(DenseMotionConfig::new()),
            DiscriminatorConfig::new(),
            AnimateParams::new(),
        )
    }

    /// Reads a FOMM YAML config file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::read_yaml_file(path).map(|file| file.config)
    }

    /// Reads a FOMM YAML config file, with the keys it holds that the engine does not use.
    pub fn read_yaml_file(path: impl AsRef<Path>) -> Result<ConfigFile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        yaml::parse(&text).map_err(|message| EngineError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the text of a FOMM YAML config.
    pub fn from_yaml_str(text: &str) -> std::result::Result<Self, String> {
        yaml::parse(text).map(|file| file.config)
    }

    /// The whole config in FOMM's YAML layout (with `prioritycut_params`), readable back by
    /// [`FommConfig::from_yaml_str`] and by FOMM's own code.
    pub fn to_yaml(&self) -> String {
        yaml::write(self)
    }

    /// Rejects values the networks cannot be built with, before any tensor is made.
    fn validate(&self) -> std::result::Result<(), String> {
        let [h, w, c] = self.frame_shape;
        if h == 0 || w == 0 || c == 0 {
            return Err(format!("frame_shape {:?} has a zero dimension", self.frame_shape));
        }
        let kp = &self.kp_detector;
        let dm = &self.generator.dense_motion;
        if kp.num_kp == 0 {
            return Err("num_kp must be at least 1".into());
        }
        for (name, scale) in [
            ("kp_detector_params", kp.scale_factor),
            ("dense_motion_params", dm.scale_factor),
        ] {
            if !(scale > 0.0 && scale <= 1.0) || (1.0 / scale).fract() != 0.0 {
                return Err(format!("{name}.scale_factor must be 1/n for a whole n, got {scale}"));
            }
        }
        // Each hourglass halves the map num_blocks times and must come back to the same size.
        for (name, scale, blocks) in [
            ("kp_detector_params", kp.scale_factor, kp.num_blocks),
            ("dense_motion_params", dm.scale_factor, dm.num_blocks),
        ] {
            let factor = 1usize << blocks;
            let (sh, sw) = (scaled(h, scale), scaled(w, scale));
            if sh % factor != 0 || sw % factor != 0 {
                return Err(format!(
                    "{name}: frame {h}x{w} at scale {scale} is {sh}x{sw}, not divisible by 2^num_blocks = {factor}"
                ));
            }
        }
        let kp_map = scaled(h, kp.scale_factor).min(scaled(w, kp.scale_factor));
        if kp_map + 2 * kp.pad < 7 {
            return Err(format!(
                "kp_detector: a {kp_map}-pixel map is too small for the 7x7 keypoint head"
            ));
        }
        let factor = 1usize << self.generator.num_down_blocks;
        if h % factor != 0 || w % factor != 0 {
            return Err(format!(
                "generator: frame {h}x{w} is not divisible by 2^num_down_blocks = {factor}"
            ));
        }
        if self.discriminator.scales.is_empty() {
            return Err("discriminator_params.scales is empty".into());
        }
        self.train.validate()?;
        self.prioritycut.validate()?;
        Ok(())
    }
}

/// Size of one side after FOMM's anti-aliased downsampling by `scale` (a strided convolution).
pub fn scaled(size: usize, scale: f64) -> usize {
    let step = (1.0 / scale).round() as usize;
    size.div_ceil(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_vox256() {
        let c = FommConfig::vox256();
        assert_eq!(c.frame_shape, [256, 256, 3]);
        assert_eq!(c.kp_detector.block_expansion, 32);
        assert_eq!(c.kp_detector.max_features, 1024);
        assert_eq!(c.kp_detector.num_blocks, 5);
        assert_eq!(c.generator.block_expansion, 64);
        assert_eq!(c.generator.num_bottleneck_blocks, 6);
        assert_eq!(c.generator.dense_motion.max_features, 1024);
        assert_eq!(c.discriminator.block_expansion, 32);
        assert!(c.discriminator.sn);
        assert_eq!(c.train.batch_size, 40);
        assert_eq!(c.train.epoch_milestones, vec![60, 90]);
        assert_eq!(c.train.loss_weights.perceptual, vec![10.0; 5]);
        assert_eq!(c.train.loss_weights.generator_gan, 0.0);
        assert!(c.dataset.horizontal_flip && c.dataset.time_flip);
        assert_eq!(c.dataset.hue, 0.1);
        assert_eq!(c.prioritycut.variant, Variant::UnetPrioritycut);
    }

    #[test]
    fn train_and_prioritycut_sections_are_read() {
        let c = FommConfig::from_yaml_str(
            "dataset_params:\n  frame_shape: [128, 128, 3]\n  augmentation_params:\n    flip_param: {horizontal_flip: True}\n\
             train_params:\n  batch_size: 4\n  epoch_milestones: []\n  transform_params: {sigma_affine: 0.1}\n  \
             loss_weights: {generator_gan: 1, perceptual: [1, 2]}\n\
             prioritycut_params: {variant: unet-cutmix, k_max: 30}\n",
        )
        .expect("valid yaml");
        assert!(c.dataset.horizontal_flip && !c.dataset.time_flip);
        assert_eq!(c.dataset.brightness, 0.0, "a jitter_param left out disables jitter");
        assert_eq!(c.train.batch_size, 4);
        assert!(c.train.epoch_milestones.is_empty());
        assert_eq!(c.train.transform_params.sigma_affine, 0.1);
        assert_eq!(c.train.transform_params.points_tps, 5);
        assert_eq!(c.train.loss_weights.perceptual, vec![1.0, 2.0]);
        assert_eq!(c.prioritycut.variant, Variant::UnetCutmix);
        assert_eq!(c.prioritycut.k_max, 30.0);
        let err = FommConfig::from_yaml_str("prioritycut_params: {variant: gan}\n").expect_err("bad variant");
        assert!(err.contains("unknown variant"), "{err}");
        let err = FommConfig::from_yaml_str("prioritycut_params: {k_min: 50, k_max: 10}\n").expect_err("bad k");
        assert!(err.contains("k_min"), "{err}");
    }

    #[test]
    fn yaml_overrides_only_what_it_names() {
        let c = FommConfig::from_yaml_str(
            "dataset_params: {frame_shape: [64, 64, 3], root_dir: x}\n\
             model_params:\n  common_params: {num_kp: 5}\n  kp_detector_params: {block_expansion: 8, num_blocks: 3}\n  \
             generator_params: {dense_motion_params: {num_blocks: 2}}\n\
             unknown_section: 1\n",
        )
        .expect("valid yaml");
        assert_eq!(c.frame_shape, [64, 64, 3]);
        assert_eq!(c.kp_detector.num_kp, 5);
        assert_eq!(c.generator.dense_motion.num_kp, 5);
        assert_eq!(c.kp_detector.block_expansion, 8);
        assert_eq!(c.kp_detector.max_features, 1024);
        assert_eq!(c.generator.block_expansion, 64);
        assert_eq!(c.generator.dense_motion.num_blocks, 2);
        assert_eq!(c.generator.dense_motion.max_features, 1024);
    }

    #[test]
    fn yaml_round_trip_keeps_every_value() {
        let mut c = FommConfig::from_yaml_str(
            "dataset_params: {frame_shape: [128, 128, 3]}\nmodel_params: {common_params: {num_kp: 5}}\n\
             train_params: {batch_size: 3, scales: [1, 0.5]}\nprioritycut_params: {variant: fomm-adv, k_max: 40}\n",
        )
        .expect("config");
        c.dataset.hue = 0.05;
        c.generator.dense_motion.kp_variance = 0.02;
        let text = c.to_yaml();
        let back = FommConfig::from_yaml_str(&text).expect("reads back");
        assert_eq!(back.to_yaml(), text);
        assert_eq!(back.kp_detector.num_kp, 5);
        assert_eq!(back.generator.dense_motion.num_kp, 5);
        assert_eq!(back.train.scales, vec![1.0, 0.5]);
        assert_eq!(back.prioritycut.variant, Variant::FommAdv);
        assert_eq!(back.dataset.hue, 0.05);
        assert_eq!(back.generator.dense_motion.kp_variance, 0.02);
    }

    #[test]
    fn unknown_keys_are_reported_and_fomm_script_keys_are_not() {
        let file = yaml::parse(
            "dataset_params:\n  root_dir: data/vox\n  frame_shape: [128, 128, 3]\n  \
             augmentation_params: {flip_param: {horizontal_flip: True, tiem_flip: True}}\n\
             model_params: {kp_detector_params: {temprature: 0.5, num_blocks: 3}}\n\
             visualizer_params: {kp_size: 5}\nlogger: 1\n",
        )
        .expect("valid yaml");
        assert_eq!(
            file.ignored_keys,
            vec![
                "logger",
                "dataset_params.augmentation_params.flip_param.tiem_flip",
                "model_params.kp_detector_params.temprature",
            ]
        );
        assert!(file.config.dataset.horizontal_flip && !file.config.dataset.time_flip);
        assert_eq!(file.config.kp_detector.temperature, 0.1);
        assert_eq!(file.config.kp_detector.num_blocks, 3);
    }

    #[test]
    fn the_bundled_configs_use_every_key() {
        for path in [
            "../assets/configs/vox-256.yaml",
            "../assets/configs/synthetic-64.yaml",
            "../assets/models/figures-64/config.yaml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            let file = FommConfig::read_yaml_file(&path).expect("bundled config");
            assert!(
                file.ignored_keys.is_empty(),
                "{}: {:?}",
                path.display(),
                file.ignored_keys
            );
        }
    }

    #[test]
    fn impossible_sizes_are_refused() {
        let err = FommConfig::from_yaml_str("dataset_params: {frame_shape: [100, 100, 3]}\n")
            .expect_err("100 / 4 = 25 is not divisible by 32");
        assert!(err.contains("divisible"), "{err}");
        assert!(FommConfig::from_yaml_str("model_params: [1, 2]").is_err());
    }
}
