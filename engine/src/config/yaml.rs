//! FOMM's YAML layout, one serde struct per section, used both to read a file and to write one.
//!
//! Every section lists its keys once, in [`section!`], next to the config struct they fill; the
//! macro writes the reading (`apply`: a key given replaces the default) and the writing (`of`).
//! The few keys that do not map one to one (`frame_shape`, `common_params`, FOMM's rule that a
//! present `augmentation_params` disables what it leaves out) are written out below by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use super::TrainingMode;
use super::tpsmm::{TpsmmAvdTrainParams, TpsmmConfigFile, TpsmmLossWeights, TpsmmTrainParams};
use super::{
    AnimateParams, ConfigFile, DatasetParams, FommConfig, LossWeights, PriorityCutParams, TrainParams, TransformParams,
    Variant,
};
use crate::model::dense_motion::DenseMotionConfig;
use crate::model::discriminator::DiscriminatorConfig;
use crate::model::generator::GeneratorConfig;
use crate::model::keypoint_detector::KpDetectorConfig;
use crate::model::tpsmm::{DenseMotionConfig as TpsmmDenseMotionConfig, InpaintingConfig, TpsmmConfig};

/// FOMM's keys that only its own scripts read (data paths, logging, the demo's output format):
/// known, not used by the engine, and not reported.
const FOMM_SCRIPT_KEYS: [&str; 6] = [
    "dataset_params.root_dir",
    "dataset_params.pairs_list",
    "reconstruction_params",
    "visualizer_params",
    "animate_params.num_pairs",
    "animate_params.format",
];

/// A section: its keys (each the name of a field of `$target` too), optionally followed by
/// nested sections and keys read by hand, and a catch-all for keys the engine does not know.
macro_rules! section {
    ($(#[$doc:meta])* $name:ident => $target:ty { $($field:ident: $ty:ty),* $(,)? }
        $(nested { $($sub:ident: $sub_ty:ty),* $(,)? })?
        $(by_hand { $($own:ident: $own_ty:ty),* $(,)? })?) => {
        $(#[$doc])*
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct $name {
            $(#[serde(default, skip_serializing_if = "Option::is_none")]
            $field: Option<$ty>,)*
            $($(#[serde(default, skip_serializing_if = "Option::is_none")]
            $sub: Option<$sub_ty>,)*)?
            $($(#[serde(default, skip_serializing_if = "Option::is_none")]
            $own: Option<$own_ty>,)*)?
            #[serde(flatten)]
            unknown: BTreeMap<String, Value>,
        }

        // Sections that only nest others use neither half.
        #[allow(dead_code, unused_variables)]
        impl $name {
            /// Every key of `target`; nested sections are left to the caller.
            #[allow(clippy::needless_update)]
            fn of(target: &$target) -> Self {
                Self {
                    $($field: Some(target.$field.clone()),)*
                    ..Self::default()
                }
            }

            /// Copies every key the file gives onto `target`.
            fn apply(&mut self, target: &mut $target) {
                $(if let Some(value) = self.$field.take() {
                    target.$field = value;
                })*
            }

            /// The keys under `prefix` that no section knows, nested sections included.
            fn collect_unknown(&self, prefix: &str, out: &mut Vec<String>) {
                let path = |key: &str| if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                out.extend(self.unknown.keys().map(|key| path(key)));
                $($(if let Some(section) = &self.$sub {
                    section.collect_unknown(&path(stringify!($sub)), out);
                })*)?
            }
        }
    };
}

section! {
    /// The whole file.
    FileSection => FommConfig {}
    nested {
        dataset_params: DatasetSection,
        model_params: ModelSection,
        train_params: TrainSection,
        animate_params: AnimateSection,
        prioritycut_params: PriorityCutSection,
    }
}

section! {
    /// `dataset_params`; `frame_shape` is [h, w] or [h, w, c] and fills `FommConfig`.
    DatasetSection => DatasetParams { id_sampling: bool }
    nested { augmentation_params: AugmentationSection }
    by_hand { frame_shape: Vec<usize> }
}

section! {
    /// `dataset_params.augmentation_params`.
    AugmentationSection => DatasetParams {}
    nested { flip_param: FlipSection, jitter_param: JitterSection }
}

section! {
    FlipSection => DatasetParams { horizontal_flip: bool, time_flip: bool }
}

section! {
    JitterSection => DatasetParams { brightness: f64, contrast: f64, saturation: f64, hue: f64 }
}

section! {
    /// `model_params`.
    ModelSection => FommConfig {}
    nested {
        common_params: CommonSection,
        kp_detector_params: KpDetectorSection,
        generator_params: GeneratorSection,
        discriminator_params: DiscriminatorSection,
    }
}

section! {
    /// `model_params.common_params`: given to every network, as FOMM's `**common_params` does.
    CommonSection => KpDetectorConfig { num_kp: usize, num_channels: usize, estimate_jacobian: bool }
}

section! {
    KpDetectorSection => KpDetectorConfig {
        temperature: f64,
        block_expansion: usize,
        max_features: usize,
        scale_factor: f64,
        num_blocks: usize,
        single_jacobian_map: bool,
        pad: usize,
    }
}

section! {
    GeneratorSection => GeneratorConfig {
        block_expansion: usize,
        max_features: usize,
        num_down_blocks: usize,
        num_bottleneck_blocks: usize,
        estimate_occlusion_map: bool,
    }
    nested { dense_motion_params: DenseMotionSection }
}

section! {
    DenseMotionSection => DenseMotionConfig {
        block_expansion: usize,
        max_features: usize,
        num_blocks: usize,
        scale_factor: f64,
        kp_variance: f64,
    }
}

section! {
    DiscriminatorSection => DiscriminatorConfig {
        scales: Vec<f64>,
        block_expansion: usize,
        max_features: usize,
        num_blocks: usize,
        sn: bool,
        use_kp: bool,
        kp_variance: f64,
    }
}

section! {
    /// `train_params`.
    TrainSection => TrainParams {
        num_epochs: usize,
        num_repeats: usize,
        epoch_milestones: Vec<usize>,
        lr_generator: f64,
        lr_discriminator: f64,
        lr_kp_detector: f64,
        batch_size: usize,
        scales: Vec<f64>,
        checkpoint_freq: usize,
    }
    nested { transform_params: TransformSection, loss_weights: LossWeightsSection }
}

section! {
    TransformSection => TransformParams { sigma_affine: f64, sigma_tps: f64, points_tps: usize }
}

section! {
    LossWeightsSection => LossWeights {
        generator_gan: f64,
        discriminator_gan: f64,
        feature_matching: Vec<f64>,
        perceptual: Vec<f64>,
        equivariance_value: f64,
        equivariance_jacobian: f64,
    }
}

section! {
    /// `animate_params`.
    AnimateSection => AnimateParams {}
    nested { normalization_params: NormalizationSection }
}

section! {
    NormalizationSection => AnimateParams {
        adapt_movement_scale: bool,
        use_relative_movement: bool,
        use_relative_jacobian: bool,
    }
}

section! {
    /// `prioritycut_params`: the variant and PriorityCut's own choices.
    PriorityCutSection => PriorityCutParams {
        variant: Variant,
        background_threshold: f64,
        k_min: f64,
        k_max: f64,
        cutmix_probability: f64,
        fake_where_occluded: bool,
        consistency_weight: f64,
        decoder_weight: f64,
        adversarial_weight: f64,
        nan_patience: usize,
    }
}

section! {
    /// A TPSMM file (its repository's `config/*.yaml`): FOMM's layout, other model sections.
    TpsmmFileSection => TpsmmConfig {}
    nested {
        dataset_params: DatasetSection,
        model_params: TrainingModelSection,
        train_params: TpsmmTrainSection,
        train_avd_params: TpsmmAvdTrainSection,
        prioritycut_params: PriorityCutSection,
    }
    by_hand { mode: TrainingMode }
}

section! {
    /// TPSMM's `model_params`, with two keys of ours for widths its code hard-codes, and the
    /// U-Net variants' `discriminator_params` (ours, FOMM's section).
    TrainingModelSection => TpsmmConfig { resnet_width: usize, avd_hidden: Vec<usize> }
    nested {
        common_params: TpsmmCommonSection,
        generator_params: InpaintingSection,
        dense_motion_params: TpsmmDenseMotionSection,
        avd_network_params: AvdSection,
        discriminator_params: DiscriminatorSection,
    }
}

section! {
    /// TPSMM's `train_params`.
    TpsmmTrainSection => TpsmmTrainParams {
        num_epochs: usize,
        num_repeats: usize,
        epoch_milestones: Vec<usize>,
        lr_generator: f64,
        lr_discriminator: f64,
        batch_size: usize,
        scales: Vec<f64>,
        checkpoint_freq: usize,
        dropout_epoch: usize,
        dropout_maxp: f64,
        dropout_startp: f64,
        dropout_inc_epoch: usize,
        bg_start: usize,
    }
    nested { transform_params: TransformSection, loss_weights: TpsmmLossWeightsSection }
}

section! {
    /// TPSMM's `train_avd_params`.
    TpsmmAvdTrainSection => TpsmmAvdTrainParams {
        num_epochs: usize,
        num_repeats: usize,
        batch_size: usize,
        checkpoint_freq: usize,
        epoch_milestones: Vec<usize>,
        lr: f64,
        lambda_shift: f64,
        random_scale: f64,
    }
}

section! {
    TpsmmLossWeightsSection => TpsmmLossWeights {
        perceptual: Vec<f64>,
        equivariance_value: f64,
        warp_loss: f64,
        bg: f64,
        generator_gan: f64,
        discriminator_gan: f64,
        feature_matching: Vec<f64>,
    }
}

section! {
    TpsmmCommonSection => TpsmmConfig { num_tps: usize, num_channels: usize, bg: bool, multi_mask: bool }
}

section! {
    InpaintingSection => InpaintingConfig { block_expansion: usize, max_features: usize, num_down_blocks: usize }
}

section! {
    TpsmmDenseMotionSection => TpsmmDenseMotionConfig {
        block_expansion: usize,
        max_features: usize,
        num_blocks: usize,
        scale_factor: f64,
        kp_variance: f64,
    }
}

section! {
    AvdSection => TpsmmConfig { id_bottle_size: usize, pose_bottle_size: usize }
}

/// TPSMM's keys only its own scripts read: logging, the data loaders.
const TPSMM_SCRIPT_KEYS: [&str; 4] = [
    "visualizer_params",
    "reconstruction_params",
    "train_params.dataloader_workers",
    "train_avd_params.dataloader_workers",
];

/// Reads a TPSMM config: its `vox-256.yaml` where the file is silent (not yet validated), and
/// the keys left unread.
pub(super) fn parse_tpsmm(text: &str) -> Result<TpsmmConfigFile, String> {
    let mut file: TpsmmFileSection = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut ignored = Vec::new();
    file.collect_unknown("", &mut ignored);
    let mut config = TpsmmConfig::new();
    let mut dataset = DatasetParams::new();
    let mut discriminator = DiscriminatorConfig::new();
    if let Some(mut section) = file.dataset_params.take() {
        section.read_into(&mut config.frame_shape, &mut dataset)?;
    }
    if let Some(mut model) = file.model_params.take() {
        model.apply(&mut config);
        if let Some(mut common) = model.common_params.take() {
            common.apply(&mut config);
        }
        if let Some(mut generator) = model.generator_params.take() {
            generator.apply(&mut config.inpainting);
        }
        if let Some(mut dense_motion) = model.dense_motion_params.take() {
            dense_motion.apply(&mut config.dense_motion);
        }
        if let Some(mut avd) = model.avd_network_params.take() {
            avd.apply(&mut config);
        }
        if let Some(mut section) = model.discriminator_params.take() {
            section.apply(&mut discriminator);
        }
    }
    discriminator.num_channels = config.num_channels;
    let mut train = TpsmmTrainParams::new();
    if let Some(mut section) = file.train_params.take() {
        section.apply(&mut train);
        if let Some(mut transform) = section.transform_params.take() {
            transform.apply(&mut train.transform_params);
        }
        if let Some(mut weights) = section.loss_weights.take() {
            weights.apply(&mut train.loss_weights);
        }
    }
    let mut train_avd = TpsmmAvdTrainParams::new();
    if let Some(mut section) = file.train_avd_params.take() {
        section.apply(&mut train_avd);
    }
    let mut prioritycut = PriorityCutParams::new();
    if let Some(mut section) = file.prioritycut_params.take() {
        section.apply(&mut prioritycut);
    }
    ignored.retain(|key| {
        let known = FOMM_SCRIPT_KEYS.iter().chain(&TPSMM_SCRIPT_KEYS);
        !known.clone().any(|k| key == k || key.starts_with(&format!("{k}.")))
    });
    Ok(TpsmmConfigFile {
        config: config.with_common(),
        dataset,
        train,
        discriminator,
        prioritycut,
        train_avd,
        mode: file.mode.unwrap_or_default(),
        ignored_keys: ignored,
    })
}

/// Writes every value of a TPSMM config, in TPSMM's layout.
pub(super) fn write_tpsmm(file: &TpsmmConfigFile) -> String {
    let config = &file.config;
    let (dataset, train) = (&file.dataset, &file.train);
    let out = TpsmmFileSection {
        dataset_params: Some(DatasetSection {
            frame_shape: Some(config.frame_shape.to_vec()),
            augmentation_params: Some(AugmentationSection {
                flip_param: Some(FlipSection::of(dataset)),
                jitter_param: Some(JitterSection::of(dataset)),
                ..AugmentationSection::default()
            }),
            ..DatasetSection::of(dataset)
        }),
        model_params: Some(TrainingModelSection {
            common_params: Some(TpsmmCommonSection::of(config)),
            generator_params: Some(InpaintingSection::of(&config.inpainting)),
            dense_motion_params: Some(TpsmmDenseMotionSection::of(&config.dense_motion)),
            avd_network_params: Some(AvdSection::of(config)),
            discriminator_params: Some(DiscriminatorSection::of(&file.discriminator)),
            ..TrainingModelSection::of(config)
        }),
        train_params: Some(TpsmmTrainSection {
            transform_params: Some(TransformSection::of(&train.transform_params)),
            loss_weights: Some(TpsmmLossWeightsSection::of(&train.loss_weights)),
            ..TpsmmTrainSection::of(train)
        }),
        train_avd_params: Some(TpsmmAvdTrainSection::of(&file.train_avd)),
        prioritycut_params: Some(PriorityCutSection::of(&file.prioritycut)),
        mode: Some(file.mode),
        ..TpsmmFileSection::default()
    };
    // Every value here is a plain number, string, bool or list: serializing cannot fail.
    serde_yaml_ng::to_string(&out).unwrap_or_default()
}

/// Reads a config: FOMM's `vox-256.yaml` where the file is silent, then validated.
pub(super) fn parse(text: &str) -> Result<ConfigFile, String> {
    let mut file: FileSection = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut ignored = Vec::new();
    file.collect_unknown("", &mut ignored);
    let mut config = FommConfig::vox256();
    if let Some(mut dataset) = file.dataset_params.take() {
        dataset.read_into(&mut config.frame_shape, &mut config.dataset)?;
    }
    if let Some(mut model) = file.model_params.take() {
        model.read_into(&mut config);
    }
    if let Some(mut train) = file.train_params.take() {
        train.apply(&mut config.train);
        if let Some(mut transform) = train.transform_params {
            transform.apply(&mut config.train.transform_params);
        }
        if let Some(mut weights) = train.loss_weights {
            weights.apply(&mut config.train.loss_weights);
        }
    }
    if let Some(mut normalization) = file.animate_params.and_then(|a| a.normalization_params) {
        normalization.apply(&mut config.animate);
    }
    if let Some(mut prioritycut) = file.prioritycut_params {
        prioritycut.apply(&mut config.prioritycut);
    }
    config.validate()?;
    ignored.retain(|key| !FOMM_SCRIPT_KEYS.iter().any(|known| key == known));
    Ok(ConfigFile {
        config,
        ignored_keys: ignored,
    })
}

/// Writes every value of `config`, in FOMM's layout.
pub(super) fn write(config: &FommConfig) -> String {
    let generator = &config.generator;
    let train = &config.train;
    let dataset = &config.dataset;
    let file = FileSection {
        dataset_params: Some(DatasetSection {
            frame_shape: Some(config.frame_shape.to_vec()),
            augmentation_params: Some(AugmentationSection {
                flip_param: Some(FlipSection::of(dataset)),
                jitter_param: Some(JitterSection::of(dataset)),
                ..AugmentationSection::default()
            }),
            ..DatasetSection::of(dataset)
        }),
        model_params: Some(ModelSection {
            common_params: Some(CommonSection::of(&config.kp_detector)),
            kp_detector_params: Some(KpDetectorSection::of(&config.kp_detector)),
            generator_params: Some(GeneratorSection {
                dense_motion_params: Some(DenseMotionSection::of(&generator.dense_motion)),
                ..GeneratorSection::of(generator)
            }),
            discriminator_params: Some(DiscriminatorSection::of(&config.discriminator)),
            ..ModelSection::default()
        }),
        train_params: Some(TrainSection {
            transform_params: Some(TransformSection::of(&train.transform_params)),
            loss_weights: Some(LossWeightsSection::of(&train.loss_weights)),
            ..TrainSection::of(train)
        }),
        animate_params: Some(AnimateSection {
            normalization_params: Some(NormalizationSection::of(&config.animate)),
            ..AnimateSection::default()
        }),
        prioritycut_params: Some(PriorityCutSection::of(&config.prioritycut)),
        ..FileSection::default()
    };
    // Every value here is a plain number, string, bool or list: serializing cannot fail.
    serde_yaml_ng::to_string(&file).unwrap_or_default()
}

impl DatasetSection {
    fn read_into(&mut self, frame_shape: &mut [usize; 3], dataset: &mut DatasetParams) -> Result<(), String> {
        if let Some(shape) = self.frame_shape.take() {
            *frame_shape = match shape.as_slice() {
                [h, w] => [*h, *w, 3],
                [h, w, c] => [*h, *w, *c],
                _ => return Err(format!("dataset_params.frame_shape must be [h, w, c], got {shape:?}")),
            };
        }
        self.apply(dataset);
        if let Some(augmentation) = self.augmentation_params.take() {
            // A section that is present but leaves a transform out disables it, as in FOMM.
            dataset.horizontal_flip = false;
            dataset.time_flip = false;
            dataset.brightness = 0.0;
            dataset.contrast = 0.0;
            dataset.saturation = 0.0;
            dataset.hue = 0.0;
            if let Some(mut flip) = augmentation.flip_param {
                flip.apply(dataset);
            }
            if let Some(mut jitter) = augmentation.jitter_param {
                jitter.apply(dataset);
            }
        }
        Ok(())
    }
}

impl ModelSection {
    fn read_into(&mut self, config: &mut FommConfig) {
        if let Some(mut common) = self.common_params.take() {
            let (num_kp, num_channels, estimate_jacobian) =
                (common.num_kp, common.num_channels, common.estimate_jacobian);
            common.apply(&mut config.kp_detector);
            let generator = &mut config.generator;
            if let Some(n) = num_kp {
                generator.num_kp = n;
                generator.dense_motion.num_kp = n;
                config.discriminator.num_kp = n;
            }
            if let Some(c) = num_channels {
                generator.num_channels = c;
                generator.dense_motion.num_channels = c;
                config.discriminator.num_channels = c;
            }
            if let Some(jacobian) = estimate_jacobian {
                generator.estimate_jacobian = jacobian;
            }
        }
        if let Some(mut kp) = self.kp_detector_params.take() {
            kp.apply(&mut config.kp_detector);
        }
        if let Some(mut generator) = self.generator_params.take() {
            generator.apply(&mut config.generator);
            config.generator.dense_motion.estimate_occlusion_map = config.generator.estimate_occlusion_map;
            if let Some(mut dense_motion) = generator.dense_motion_params {
                dense_motion.apply(&mut config.generator.dense_motion);
            }
        }
        if let Some(mut discriminator) = self.discriminator_params.take() {
            discriminator.apply(&mut config.discriminator);
        }
    }
}
