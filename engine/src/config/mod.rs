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
use crate::train::config::{DatasetParams, LossWeights, PriorityCutParams, TrainParams, TransformParams, Variant};
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
        if let Some(dataset) = file.dataset_params {
            dataset.apply(&mut config)?;
        }
        if let Some(model) = file.model_params {
            model.apply(&mut config);
        }
        if let Some(train) = file.train_params {
            train.apply(&mut config.train);
        }
        if let Some(norm) = file.animate_params.and_then(|a| a.normalization_params) {
            overlay!(config.animate, norm; adapt_movement_scale, use_relative_movement, use_relative_jacobian);
        }
        if let Some(p) = file.prioritycut_params {
            let pc = &mut config.prioritycut;
            overlay!(pc, p; variant, background_threshold, k_min, k_max, cutmix_probability,
                fake_where_occluded, consistency_weight, decoder_weight, adversarial_weight, nan_patience);
        }
        config.validate()?;
        Ok(config)
    }

    /// The whole config in FOMM's YAML layout (with `prioritycut_params`), readable back by
    /// [`FommConfig::from_yaml_str`] and by FOMM's own code.
    pub fn to_yaml(&self) -> String {
        use serde_yaml_ng::{Mapping, Value};
        fn map(entries: Vec<(&str, Value)>) -> Value {
            let mut m = Mapping::new();
            for (key, value) in entries {
                m.insert(Value::String(key.to_string()), value);
            }
            Value::Mapping(m)
        }
        fn v(x: impl serde::Serialize) -> Value {
            serde_yaml_ng::to_value(x).unwrap_or(Value::Null)
        }
        let (kp, g, dm, d) = (
            &self.kp_detector,
            &self.generator,
            &self.generator.dense_motion,
            &self.discriminator,
        );
        let (ds, t, pc) = (&self.dataset, &self.train, &self.prioritycut);
        let w = &t.loss_weights;
        let doc = map(vec![
            (
                "dataset_params",
                map(vec![
                    ("frame_shape", v(self.frame_shape)),
                    ("id_sampling", v(ds.id_sampling)),
                    (
                        "augmentation_params",
                        map(vec![
                            (
                                "flip_param",
                                map(vec![
                                    ("horizontal_flip", v(ds.horizontal_flip)),
                                    ("time_flip", v(ds.time_flip)),
                                ]),
                            ),
                            (
                                "jitter_param",
                                map(vec![
                                    ("brightness", v(ds.brightness)),
                                    ("contrast", v(ds.contrast)),
                                    ("saturation", v(ds.saturation)),
                                    ("hue", v(ds.hue)),
                                ]),
                            ),
                        ]),
                    ),
                ]),
            ),
            (
                "model_params",
                map(vec![
                    (
                        "common_params",
                        map(vec![
                            ("num_kp", v(kp.num_kp)),
                            ("num_channels", v(kp.num_channels)),
                            ("estimate_jacobian", v(kp.estimate_jacobian)),
                        ]),
                    ),
                    (
                        "kp_detector_params",
                        map(vec![
                            ("temperature", v(kp.temperature)),
                            ("block_expansion", v(kp.block_expansion)),
                            ("max_features", v(kp.max_features)),
                            ("scale_factor", v(kp.scale_factor)),
                            ("num_blocks", v(kp.num_blocks)),
                            ("single_jacobian_map", v(kp.single_jacobian_map)),
                            ("pad", v(kp.pad)),
                        ]),
                    ),
                    (
                        "generator_params",
                        map(vec![
                            ("block_expansion", v(g.block_expansion)),
                            ("max_features", v(g.max_features)),
                            ("num_down_blocks", v(g.num_down_blocks)),
                            ("num_bottleneck_blocks", v(g.num_bottleneck_blocks)),
                            ("estimate_occlusion_map", v(g.estimate_occlusion_map)),
                            (
                                "dense_motion_params",
                                map(vec![
                                    ("block_expansion", v(dm.block_expansion)),
                                    ("max_features", v(dm.max_features)),
                                    ("num_blocks", v(dm.num_blocks)),
                                    ("scale_factor", v(dm.scale_factor)),
                                    ("kp_variance", v(dm.kp_variance)),
                                ]),
                            ),
                        ]),
                    ),
                    (
                        "discriminator_params",
                        map(vec![
                            ("scales", v(&d.scales)),
                            ("block_expansion", v(d.block_expansion)),
                            ("max_features", v(d.max_features)),
                            ("num_blocks", v(d.num_blocks)),
                            ("sn", v(d.sn)),
                            ("use_kp", v(d.use_kp)),
                            ("kp_variance", v(d.kp_variance)),
                        ]),
                    ),
                ]),
            ),
            (
                "train_params",
                map(vec![
                    ("num_epochs", v(t.num_epochs)),
                    ("num_repeats", v(t.num_repeats)),
                    ("epoch_milestones", v(&t.epoch_milestones)),
                    ("lr_generator", v(t.lr_generator)),
                    ("lr_discriminator", v(t.lr_discriminator)),
                    ("lr_kp_detector", v(t.lr_kp_detector)),
                    ("batch_size", v(t.batch_size)),
                    ("scales", v(&t.scales)),
                    ("checkpoint_freq", v(t.checkpoint_freq)),
                    (
                        "transform_params",
                        map(vec![
                            ("sigma_affine", v(t.transform_params.sigma_affine)),
                            ("sigma_tps", v(t.transform_params.sigma_tps)),
                            ("points_tps", v(t.transform_params.points_tps)),
                        ]),
                    ),
                    (
                        "loss_weights",
                        map(vec![
                            ("generator_gan", v(w.generator_gan)),
                            ("discriminator_gan", v(w.discriminator_gan)),
                            ("feature_matching", v(&w.feature_matching)),
                            ("perceptual", v(&w.perceptual)),
                            ("equivariance_value", v(w.equivariance_value)),
                            ("equivariance_jacobian", v(w.equivariance_jacobian)),
                        ]),
                    ),
                ]),
            ),
            (
                "animate_params",
                map(vec![(
                    "normalization_params",
                    map(vec![
                        ("adapt_movement_scale", v(self.animate.adapt_movement_scale)),
                        ("use_relative_movement", v(self.animate.use_relative_movement)),
                        ("use_relative_jacobian", v(self.animate.use_relative_jacobian)),
                    ]),
                )]),
            ),
            (
                "prioritycut_params",
                map(vec![
                    ("variant", v(pc.variant)),
                    ("background_threshold", v(pc.background_threshold)),
                    ("k_min", v(pc.k_min)),
                    ("k_max", v(pc.k_max)),
                    ("cutmix_probability", v(pc.cutmix_probability)),
                    ("fake_where_occluded", v(pc.fake_where_occluded)),
                    ("consistency_weight", v(pc.consistency_weight)),
                    ("decoder_weight", v(pc.decoder_weight)),
                    ("adversarial_weight", v(pc.adversarial_weight)),
                    ("nan_patience", v(pc.nan_patience)),
                ]),
            ),
        ]);
        serde_yaml_ng::to_string(&doc).unwrap_or_default()
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
    train_params: Option<YamlTrain>,
    animate_params: Option<YamlAnimate>,
    prioritycut_params: Option<YamlPriorityCut>,
}

#[derive(Deserialize)]
struct YamlDataset {
    frame_shape: Option<Vec<usize>>,
    id_sampling: Option<bool>,
    augmentation_params: Option<YamlAugmentation>,
}

#[derive(Deserialize)]
struct YamlAugmentation {
    flip_param: Option<YamlFlip>,
    jitter_param: Option<YamlJitter>,
}

#[derive(Deserialize)]
struct YamlFlip {
    horizontal_flip: Option<bool>,
    time_flip: Option<bool>,
}

#[derive(Deserialize)]
struct YamlJitter {
    brightness: Option<f64>,
    contrast: Option<f64>,
    saturation: Option<f64>,
    hue: Option<f64>,
}

impl YamlDataset {
    fn apply(self, config: &mut FommConfig) -> std::result::Result<(), String> {
        if let Some(shape) = self.frame_shape {
            config.frame_shape = match shape.as_slice() {
                [h, w] => [*h, *w, 3],
                [h, w, c] => [*h, *w, *c],
                _ => return Err(format!("dataset_params.frame_shape must be [h, w, c], got {shape:?}")),
            };
        }
        let dataset = &mut config.dataset;
        overlay!(dataset, self; id_sampling);
        if let Some(augmentation) = self.augmentation_params {
            // A section that is present but leaves a transform out disables it, as in FOMM.
            match augmentation.flip_param {
                Some(flip) => {
                    dataset.horizontal_flip = flip.horizontal_flip.unwrap_or(false);
                    dataset.time_flip = flip.time_flip.unwrap_or(false);
                }
                None => {
                    dataset.horizontal_flip = false;
                    dataset.time_flip = false;
                }
            }
            let jitter = augmentation.jitter_param.unwrap_or(YamlJitter {
                brightness: None,
                contrast: None,
                saturation: None,
                hue: None,
            });
            dataset.brightness = jitter.brightness.unwrap_or(0.0);
            dataset.contrast = jitter.contrast.unwrap_or(0.0);
            dataset.saturation = jitter.saturation.unwrap_or(0.0);
            dataset.hue = jitter.hue.unwrap_or(0.0);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct YamlTrain {
    num_epochs: Option<usize>,
    num_repeats: Option<usize>,
    epoch_milestones: Option<Vec<usize>>,
    lr_generator: Option<f64>,
    lr_discriminator: Option<f64>,
    lr_kp_detector: Option<f64>,
    batch_size: Option<usize>,
    scales: Option<Vec<f64>>,
    checkpoint_freq: Option<usize>,
    transform_params: Option<YamlTransform>,
    loss_weights: Option<YamlLossWeights>,
}

#[derive(Deserialize)]
struct YamlTransform {
    sigma_affine: Option<f64>,
    sigma_tps: Option<f64>,
    points_tps: Option<usize>,
}

#[derive(Deserialize)]
struct YamlLossWeights {
    generator_gan: Option<f64>,
    discriminator_gan: Option<f64>,
    feature_matching: Option<Vec<f64>>,
    perceptual: Option<Vec<f64>>,
    equivariance_value: Option<f64>,
    equivariance_jacobian: Option<f64>,
}

impl YamlTrain {
    fn apply(self, train: &mut TrainParams) {
        overlay!(train, self; num_epochs, num_repeats, epoch_milestones, lr_generator, lr_discriminator,
            lr_kp_detector, batch_size, scales, checkpoint_freq);
        if let Some(t) = self.transform_params {
            // FOMM only builds the TPS part when both of its keys are given.
            let transform: &mut TransformParams = &mut train.transform_params;
            overlay!(transform, t; sigma_affine, sigma_tps, points_tps);
        }
        if let Some(w) = self.loss_weights {
            let weights: &mut LossWeights = &mut train.loss_weights;
            overlay!(weights, w; generator_gan, discriminator_gan, feature_matching, perceptual,
                equivariance_value, equivariance_jacobian);
        }
    }
}

#[derive(Deserialize)]
struct YamlPriorityCut {
    variant: Option<Variant>,
    background_threshold: Option<f64>,
    k_min: Option<f64>,
    k_max: Option<f64>,
    cutmix_probability: Option<f64>,
    fake_where_occluded: Option<bool>,
    consistency_weight: Option<f64>,
    decoder_weight: Option<f64>,
    adversarial_weight: Option<f64>,
    nan_patience: Option<usize>,
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
    fn impossible_sizes_are_refused() {
        let err = FommConfig::from_yaml_str("dataset_params: {frame_shape: [100, 100, 3]}\n")
            .expect_err("100 / 4 = 25 is not divisible by 32");
        assert!(err.contains("divisible"), "{err}");
        assert!(FommConfig::from_yaml_str("model_params: [1, 2]").is_err());
    }
}
