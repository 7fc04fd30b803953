//! FOMM's own YAML config files (`dataset_params`, `model_params`, `train_params`, ...) read into
//! the engine's `#[derive(Config)]` structs.
//!
//! Every key is optional: what a file leaves out keeps FOMM's `vox-256.yaml` value, which is the
//! default of each module's config. Keys this engine does not know are ignored, as FOMM ignores
//! them, so configs of other FOMM datasets (taichi, mgif, bair, ...) load as they are.

use std::path::Path;

use burn::config::Config;
use serde::Deserialize;

use crate::model::dense_motion::DenseMotionConfig;
use crate::model::discriminator::DiscriminatorConfig;
use crate::model::generator::GeneratorConfig;
use crate::model::keypoint_detector::KpDetectorConfig;
use crate::{EngineError, Result};

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
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        Self::from_yaml_str(&text).map_err(|message| EngineError::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the text of a FOMM YAML config.
    pub fn from_yaml_str(text: &str) -> std::result::Result<Self, String> {
        let file: YamlFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let mut config = Self::vox256();
        if let Some(shape) = file.dataset_params.and_then(|d| d.frame_shape) {
            config.frame_shape = match shape.as_slice() {
                [h, w] => [*h, *w, 3],
                [h, w, c] => [*h, *w, *c],
                _ => return Err(format!("dataset_params.frame_shape must be [h, w, c], got {shape:?}")),
            };
        }
        if let Some(model) = file.model_params {
            model.apply(&mut config);
        }
        if let Some(norm) = file.animate_params.and_then(|a| a.normalization_params) {
            overlay!(config.animate, norm; adapt_movement_scale, use_relative_movement, use_relative_jacobian);
        }
        config.validate()?;
        Ok(config)
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
        Ok(())
    }
}

/// Size of one side after FOMM's anti-aliased downsampling by `scale` (a strided convolution).
pub fn scaled(size: usize, scale: f64) -> usize {
    let step = (1.0 / scale).round() as usize;
    size.div_ceil(step)
}

/// Copies every field present in the YAML layer onto the config.
macro_rules! overlay {
    ($config:expr, $yaml:expr; $($field:ident),+ $(,)?) => {
        $(if let Some(value) = $yaml.$field { $config.$field = value; })+
    };
}
use overlay;

#[derive(Deserialize)]
struct YamlFile {
    dataset_params: Option<YamlDataset>,
    model_params: Option<YamlModel>,
    animate_params: Option<YamlAnimate>,
}

#[derive(Deserialize)]
struct YamlDataset {
    frame_shape: Option<Vec<usize>>,
}

#[derive(Deserialize)]
struct YamlAnimate {
    normalization_params: Option<YamlNormalization>,
}

#[derive(Deserialize)]
struct YamlNormalization {
    adapt_movement_scale: Option<bool>,
    use_relative_movement: Option<bool>,
    use_relative_jacobian: Option<bool>,
}

#[derive(Deserialize)]
struct YamlModel {
    common_params: Option<YamlCommon>,
    kp_detector_params: Option<YamlKpDetector>,
    generator_params: Option<YamlGenerator>,
    discriminator_params: Option<YamlDiscriminator>,
}

#[derive(Deserialize)]
struct YamlCommon {
    num_kp: Option<usize>,
    num_channels: Option<usize>,
    estimate_jacobian: Option<bool>,
}

#[derive(Deserialize)]
struct YamlKpDetector {
    temperature: Option<f64>,
    block_expansion: Option<usize>,
    max_features: Option<usize>,
    scale_factor: Option<f64>,
    num_blocks: Option<usize>,
    single_jacobian_map: Option<bool>,
    pad: Option<usize>,
}

#[derive(Deserialize)]
struct YamlGenerator {
    block_expansion: Option<usize>,
    max_features: Option<usize>,
    num_down_blocks: Option<usize>,
    num_bottleneck_blocks: Option<usize>,
    estimate_occlusion_map: Option<bool>,
    dense_motion_params: Option<YamlDenseMotion>,
}

#[derive(Deserialize)]
struct YamlDenseMotion {
    block_expansion: Option<usize>,
    max_features: Option<usize>,
    num_blocks: Option<usize>,
    scale_factor: Option<f64>,
    kp_variance: Option<f64>,
}

#[derive(Deserialize)]
struct YamlDiscriminator {
    scales: Option<Vec<f64>>,
    block_expansion: Option<usize>,
    max_features: Option<usize>,
    num_blocks: Option<usize>,
    sn: Option<bool>,
    use_kp: Option<bool>,
    kp_variance: Option<f64>,
}

impl YamlModel {
    fn apply(self, config: &mut FommConfig) {
        // common_params go to every network, as FOMM's `**common_params` does.
        if let Some(common) = self.common_params {
            let kp = &mut config.kp_detector;
            overlay!(kp, common; num_kp, num_channels, estimate_jacobian);
            let generator = &mut config.generator;
            overlay!(generator, common; num_kp, num_channels, estimate_jacobian);
            if let Some(n) = common.num_kp {
                config.generator.dense_motion.num_kp = n;
                config.discriminator.num_kp = n;
            }
            if let Some(c) = common.num_channels {
                config.generator.dense_motion.num_channels = c;
                config.discriminator.num_channels = c;
            }
        }
        if let Some(p) = self.kp_detector_params {
            let kp = &mut config.kp_detector;
            overlay!(kp, p; temperature, block_expansion, max_features, scale_factor, num_blocks, single_jacobian_map, pad);
        }
        if let Some(p) = self.generator_params {
            let generator = &mut config.generator;
            overlay!(generator, p; block_expansion, max_features, num_down_blocks, num_bottleneck_blocks, estimate_occlusion_map);
            config.generator.dense_motion.estimate_occlusion_map = config.generator.estimate_occlusion_map;
            if let Some(d) = p.dense_motion_params {
                let dm = &mut config.generator.dense_motion;
                overlay!(dm, d; block_expansion, max_features, num_blocks, scale_factor, kp_variance);
            }
        }
        if let Some(p) = self.discriminator_params {
            let disc = &mut config.discriminator;
            overlay!(disc, p; scales, block_expansion, max_features, num_blocks, sn, use_kp, kp_variance);
        }
    }
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
    fn impossible_sizes_are_refused() {
        let err = FommConfig::from_yaml_str("dataset_params: {frame_shape: [100, 100, 3]}\n")
            .expect_err("100 / 4 = 25 is not divisible by 32");
        assert!(err.contains("divisible"), "{err}");
        assert!(FommConfig::from_yaml_str("model_params: [1, 2]").is_err());
    }
}
