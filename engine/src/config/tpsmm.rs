//! TPSMM's YAML layout (`config/vox-256.yaml` of its repository) read into [`TpsmmConfig`]:
//! `dataset_params.frame_shape` and `model_params` (`common_params`, `generator_params`,
//! `dense_motion_params`, `avd_network_params`) and its training (`train_params`, TPSMM's
//! `train.py`; `train_avd_params`, its `train_avd.py`). Every key is optional (TPSMM's
//! `vox-256.yaml` where the file is silent). Two sections are ours, for the paper's variants on
//! TPSMM: `model_params.discriminator_params` (FOMM's keys: the U-Net discriminator's widths)
//! and `prioritycut_params` (FOMM's); and one key, `mode`: what a run trains, as TPSMM's
//! `run.py --mode` says it (`train`, `train_avd`), so that a run's `config.yaml` says it too.

use std::path::Path;

use burn::config::Config;
use serde_yaml_ng::Value;

use super::train::{multistep_lr_factor, validate_batches_and_pyramid};
use super::{DatasetParams, PriorityCutParams, TrainingMode, TransformParams};
use crate::model::discriminator::DiscriminatorConfig;
use crate::model::tpsmm::TpsmmConfig;
use crate::{EngineError, Result};

/// A TPSMM config as read from its file, with the keys the engine left unread.
#[derive(Debug, Clone)]
pub struct TpsmmConfigFile {
    pub config: TpsmmConfig,
    /// `dataset_params` (FOMM's layout) other than the frame shape.
    pub dataset: DatasetParams,
    /// `train_params`.
    pub train: TpsmmTrainParams,
    /// `model_params.discriminator_params` (ours): the U-Net variants' discriminator.
    pub discriminator: DiscriminatorConfig,
    /// `prioritycut_params` (ours): the variant and PriorityCut's choices.
    pub prioritycut: PriorityCutParams,
    /// `train_avd_params`: the AVD network's training.
    pub train_avd: TpsmmAvdTrainParams,
    /// `mode` (ours): the networks or the AVD network.
    pub mode: TrainingMode,
    pub ignored_keys: Vec<String>,
}

/// TPSMM's `train_avd_params` (its `train_avd.py`). Defaults: TPSMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct TpsmmAvdTrainParams {
    #[config(default = 200)]
    pub num_epochs: usize,
    #[config(default = 300)]
    pub num_repeats: usize,
    /// The AVD network's batch norms take the batch's statistics: at least 2.
    #[config(default = 256)]
    pub batch_size: usize,
    /// TPSMM saves every this many epochs; the engine checkpoints by steps (`TrainOptions`).
    #[config(default = 50)]
    pub checkpoint_freq: usize,
    /// MultiStepLR(γ = 0.1) milestones, stepped with the epoch at each epoch's end.
    #[config(default = "vec![140, 180]")]
    pub epoch_milestones: Vec<usize>,
    #[config(default = 1e-3)]
    pub lr: f64,
    /// The weight of the keypoints' L1 reconstruction (`rec_kp`).
    #[config(default = 1.0)]
    pub lambda_shift: f64,
    /// The driving keypoints are scaled by a factor in [1 − s, 1 + s] per axis and image.
    #[config(default = 0.25)]
    pub random_scale: f64,
}

impl TpsmmAvdTrainParams {
    /// The factor on the learning rate during `epoch`: `train_avd.py` calls
    /// `scheduler.step(epoch)` after each epoch, so epoch `e ≥ 1` runs at MultiStepLR's rate
    /// for `e − 1` (a milestone takes effect one epoch after it).
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        match epoch.checked_sub(1) {
            Some(previous) => multistep_lr_factor(&self.epoch_milestones, previous),
            None => 1.0,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.batch_size < 2 {
            return Err(format!(
                "train_avd_params.batch_size is {}: the AVD network's batch norms need at least 2 images a batch",
                self.batch_size
            ));
        }
        if self.num_repeats == 0 {
            return Err("train_avd_params.num_repeats must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.random_scale) {
            return Err("train_avd_params.random_scale must be in [0, 1)".into());
        }
        Ok(())
    }
}

/// TPSMM's `train_params.loss_weights`, and the adversarial weights of the paper's variants
/// (ours, FOMM's keys and `vox-adv-256.yaml`'s values; TPSMM trains without a discriminator).
#[derive(Config, Debug)]
pub struct TpsmmLossWeights {
    /// One weight per VGG19 layer (relu1_1 … relu5_1).
    #[config(default = "vec![10.0, 10.0, 10.0, 10.0, 10.0]")]
    pub perceptual: Vec<f64>,
    #[config(default = 10.0)]
    pub equivariance_value: f64,
    /// The warped source encoder levels against the driving frame's own (TPSMM §3.4).
    #[config(default = 10.0)]
    pub warp_loss: f64,
    /// `|I − A_bg(S→D) · A_bg(D→S)|`: the background motions there and back cancel.
    #[config(default = 10.0)]
    pub bg: f64,
    /// Ours: 0 takes `prioritycut_params.adversarial_weight` in the adversarial variants.
    #[config(default = 0.0)]
    pub generator_gan: f64,
    /// Ours.
    #[config(default = 1.0)]
    pub discriminator_gan: f64,
    /// Ours: one weight per U-Net discriminator encoder feature map.
    #[config(default = "vec![10.0, 10.0, 10.0, 10.0]")]
    pub feature_matching: Vec<f64>,
}

/// TPSMM's `train_params` (its `train.py`). Defaults: TPSMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct TpsmmTrainParams {
    #[config(default = 100)]
    pub num_epochs: usize,
    #[config(default = 75)]
    pub num_repeats: usize,
    /// Epochs after which the learning rate is multiplied by 0.1 (MultiStepLR).
    #[config(default = "vec![70, 90]")]
    pub epoch_milestones: Vec<usize>,
    /// One learning rate for the keypoint detector, dense motion, inpainting and background
    /// networks (TPSMM's two Adams share it).
    #[config(default = 2e-4)]
    pub lr_generator: f64,
    /// Ours: the U-Net discriminator's (FOMM's value).
    #[config(default = 2e-4)]
    pub lr_discriminator: f64,
    #[config(default = 28)]
    pub batch_size: usize,
    /// Image pyramid scales of the perceptual loss.
    #[config(default = "vec![1.0, 0.5, 0.25, 0.125]")]
    pub scales: Vec<f64>,
    /// TPSMM saves every this many epochs; the engine checkpoints by steps (`TrainOptions`).
    #[config(default = 50)]
    pub checkpoint_freq: usize,
    /// Transformations are dropped (Eq. 7–8) before this epoch.
    #[config(default = 35)]
    pub dropout_epoch: usize,
    #[config(default = 0.3)]
    pub dropout_maxp: f64,
    #[config(default = 0.1)]
    pub dropout_startp: f64,
    /// Epochs over which the dropout probability climbs from `dropout_startp` to `dropout_maxp`.
    #[config(default = 10)]
    pub dropout_inc_epoch: usize,
    /// The background motion predictor (and its loss) join from this epoch.
    #[config(default = 10)]
    pub bg_start: usize,
    #[config(default = "TransformParams::new()")]
    pub transform_params: TransformParams,
    #[config(default = "TpsmmLossWeights::new()")]
    pub loss_weights: TpsmmLossWeights,
}

/// Adam's β as TPSMM's `train.py` sets them, and its L2 weight decay.
pub const ADAM_BETAS: (f64, f64) = (0.5, 0.999);
pub const ADAM_WEIGHT_DECAY: f64 = 1e-4;
/// `clip_grad_norm_(…, max_norm=10, norm_type=inf)` on the keypoint detector, the dense motion
/// network and the background predictor (not the inpainting network).
pub const GRADIENT_CLIP: f64 = 10.0;

impl TpsmmTrainParams {
    /// MultiStepLR(γ = 0.1): the factor on the learning rates during `epoch`.
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        multistep_lr_factor(&self.epoch_milestones, epoch)
    }

    /// The transformation dropout's probability during `epoch` (`GeneratorFullModel.forward`):
    /// rising linearly from `dropout_startp` by `dropout_maxp` per `dropout_inc_epoch` epochs,
    /// capped at `dropout_maxp`; none from `dropout_epoch` on.
    pub fn dropout_probability(&self, epoch: usize) -> Option<f64> {
        (epoch < self.dropout_epoch).then(|| {
            let rise = epoch as f64 / self.dropout_inc_epoch.max(1) as f64 * self.dropout_maxp;
            (rise + self.dropout_startp).min(self.dropout_maxp)
        })
    }

    /// Whether the background motion predictor runs during `epoch`.
    pub fn background_motion(&self, epoch: usize) -> bool {
        epoch >= self.bg_start
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        validate_batches_and_pyramid(
            self.batch_size,
            self.num_repeats,
            &self.scales,
            &self.loss_weights.perceptual,
        )?;
        if !(0.0..1.0).contains(&self.dropout_maxp) || !(0.0..1.0).contains(&self.dropout_startp) {
            return Err("train_params.dropout_maxp and dropout_startp must be in [0, 1)".into());
        }
        Ok(())
    }
}

impl TpsmmConfigFile {
    /// Whether a run of this config trains the AVD network (`mode: train_avd`).
    pub fn trains_avd(&self) -> bool {
        self.mode == TrainingMode::TrainAvd
    }

    /// Every value, in TPSMM's layout (a training run's `config.yaml`).
    pub fn to_yaml(&self) -> String {
        super::yaml::write_tpsmm(self)
    }
}

impl TpsmmConfigFile {
    /// Reads a TPSMM YAML config file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        parse(&text).map_err(|message| EngineError::Config {
            path: path.to_path_buf(),
            message,
        })
    }
}

/// Whether the YAML config file at `path` is TPSMM's ([`is_tpsmm`]).
pub fn is_tpsmm_file(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let root: Value = serde_yaml_ng::from_str(&text).map_err(|e| EngineError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(is_tpsmm(&root))
}

/// Whether a parsed YAML file is TPSMM's (its `common_params` name `num_tps`) rather than
/// FOMM's (`num_kp`).
pub fn is_tpsmm(root: &Value) -> bool {
    root.get("model_params")
        .and_then(|m| m.get("common_params"))
        .and_then(|c| c.get("num_tps"))
        .is_some()
}

/// Reads TPSMM's YAML text: its `vox-256.yaml` where the file is silent, then validated.
pub fn parse(text: &str) -> std::result::Result<TpsmmConfigFile, String> {
    let file = super::yaml::parse_tpsmm(text)?;
    file.config.validate()?;
    file.train.validate()?;
    file.train_avd.validate()?;
    file.prioritycut.validate()?;
    Ok(file)
}

/// `config` as a TPSMM YAML file (the frame shape, every model key, training's defaults).
pub fn to_yaml(config: &TpsmmConfig) -> String {
    TpsmmConfigFile {
        config: config.clone(),
        dataset: DatasetParams::new(),
        train: TpsmmTrainParams::new(),
        discriminator: DiscriminatorConfig::new(),
        prioritycut: PriorityCutParams::new(),
        train_avd: TpsmmAvdTrainParams::new(),
        mode: TrainingMode::Train,
        ignored_keys: Vec::new(),
    }
    .to_yaml()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPSMM's own `config/vox-256.yaml`, its model part.
    const VOX: &str = "
dataset_params:
  root_dir: ../vox
  frame_shape: null
model_params:
  common_params:
    num_tps: 10
    num_channels: 3
    bg: True
    multi_mask: True
  generator_params:
    block_expansion: 64
    max_features: 512
    num_down_blocks: 3
  dense_motion_params:
    block_expansion: 64
    max_features: 1024
    num_blocks: 5
    scale_factor: 0.25
  avd_network_params:
    id_bottle_size: 128
    pose_bottle_size: 128
";

    #[test]
    fn vox_256_is_the_default() {
        let file = parse(VOX).expect("vox-256 parses");
        let default = TpsmmConfig::new().with_common();
        assert_eq!(file.config.to_string(), default.to_string());
        assert!(file.ignored_keys.is_empty(), "{:?}", file.ignored_keys);
        assert!(is_tpsmm(&serde_yaml_ng::from_str(VOX).expect("yaml")));
    }

    #[test]
    fn a_written_config_reads_back_the_same() {
        let mut config = TpsmmConfig::new().with_common();
        config.num_tps = 20;
        config.frame_shape = [384, 384, 3];
        config.resnet_width = 8;
        let config = config.with_common();
        let file = parse(&to_yaml(&config)).expect("reads back");
        assert_eq!(file.config.to_string(), config.to_string());
        assert!(file.ignored_keys.is_empty(), "{:?}", file.ignored_keys);
    }

    /// TPSMM's `train_params` of `vox-256.yaml` are the defaults, and a written training config
    /// (ours included) reads back.
    #[test]
    fn training_reads_and_writes_back() {
        let vox_train = "
train_params:
  num_epochs: 100
  num_repeats: 75
  epoch_milestones: [70, 90]
  lr_generator: 2.0e-4
  batch_size: 28
  scales: [1, 0.5, 0.25, 0.125]
  dataloader_workers: 12
  checkpoint_freq: 50
  dropout_epoch: 35
  dropout_maxp: 0.3
  dropout_startp: 0.1
  dropout_inc_epoch: 10
  bg_start: 10
  transform_params:
    sigma_affine: 0.05
    sigma_tps: 0.005
    points_tps: 5
  loss_weights:
    perceptual: [10, 10, 10, 10, 10]
    equivariance_value: 10
    warp_loss: 10
    bg: 10
";
        let file = parse(&(VOX.to_string() + vox_train)).expect("vox-256 parses");
        assert_eq!(file.train.to_string(), TpsmmTrainParams::new().to_string());
        assert!(file.ignored_keys.is_empty(), "{:?}", file.ignored_keys);
        let mut changed = file.clone();
        changed.train.bg_start = 3;
        changed.train.loss_weights.generator_gan = 0.5;
        changed.prioritycut.k_max = 50.0;
        changed.discriminator.num_blocks = 3;
        let back = parse(&changed.to_yaml()).expect("reads back");
        assert_eq!(back.train.to_string(), changed.train.to_string());
        assert_eq!(back.prioritycut.to_string(), changed.prioritycut.to_string());
        assert_eq!(back.discriminator.to_string(), changed.discriminator.to_string());
        assert_eq!(back.config.to_string(), changed.config.to_string());
        assert!(back.ignored_keys.is_empty(), "{:?}", back.ignored_keys);
    }

    /// `GeneratorFullModel`'s schedule: dropout from 0.1 rising by 0.03 an epoch to 0.3, none
    /// from epoch 35; the background motion from epoch 10; the learning rate's milestones.
    #[test]
    fn the_schedules_follow_train_py() {
        let p = TpsmmTrainParams::new();
        let close = |a: Option<f64>, b: f64| (a.expect("dropout") - b).abs() < 1e-12;
        assert!(close(p.dropout_probability(0), 0.1));
        assert!(close(p.dropout_probability(5), 0.25));
        assert!(close(p.dropout_probability(20), 0.3));
        assert!(close(p.dropout_probability(34), 0.3));
        assert_eq!(p.dropout_probability(35), None);
        assert!(!p.background_motion(9) && p.background_motion(10));
        assert_eq!(p.lr_factor(69), 1.0);
        assert!((p.lr_factor(70) - 0.1).abs() < 1e-12 && (p.lr_factor(95) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn other_datasets_and_unknown_keys() {
        // ted-384: 384² frames, 20 transformations, scale 0.25 as ever.
        let ted = VOX
            .replace("num_tps: 10", "num_tps: 20")
            .replace("frame_shape: null", "frame_shape: [384, 384, 3]")
            + "  kp_detector_params:\n    typo: 1\n";
        let file = parse(&ted).expect("ted parses");
        assert_eq!(file.config.frame_shape, [384, 384, 3]);
        assert_eq!(file.config.dense_motion.num_tps, 20);
        assert_eq!(file.ignored_keys, vec!["model_params.kp_detector_params".to_string()]);
        let train = VOX.to_string() + "train_params:\n  bg_start: 5\n  dataloader_workers: 12\n  typo: 1\n";
        let file = parse(&train).expect("parses");
        assert_eq!(file.train.bg_start, 5);
        assert_eq!(file.ignored_keys, vec!["train_params.typo".to_string()]);
        let wrong = VOX.replace("num_tps: 10", "num_tps: ten");
        assert!(parse(&wrong).expect_err("a word is not a count").contains("num_tps"));
        let odd = VOX.replace("num_down_blocks: 3", "num_down_blocks: 2");
        assert!(parse(&odd).expect_err("multi_mask needs 3").contains("num_down_blocks"));
    }

    /// `train_avd_params` and our `mode` are read, written back, and checked; the learning rate
    /// drops one epoch after each milestone, as `scheduler.step(epoch)` at an epoch's end does.
    #[test]
    fn avd_training_reads_writes_back_and_schedules() {
        let file = parse("mode: train_avd\ntrain_avd_params:\n  batch_size: 8\n  lr: 0.01\n  dataloader_workers: 4\n")
            .expect("parses");
        assert_eq!(file.mode, TrainingMode::TrainAvd);
        assert_eq!((file.train_avd.batch_size, file.train_avd.lr), (8, 0.01));
        assert_eq!(file.train_avd.epoch_milestones, vec![140, 180]);
        assert!(file.ignored_keys.is_empty(), "{:?}", file.ignored_keys);
        let again = parse(&file.to_yaml()).expect("reads back");
        assert_eq!(again.mode, TrainingMode::TrainAvd);
        assert_eq!(again.train_avd.to_string(), file.train_avd.to_string());
        assert_eq!(parse("").expect("empty").mode, TrainingMode::Train);

        let factors: Vec<f64> = [0, 140, 141, 180, 181].map(|e| file.train_avd.lr_factor(e)).to_vec();
        let expected = [1.0, 1.0, 0.1, 0.1, 0.01];
        assert!(
            factors.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12),
            "{factors:?}"
        );

        let err = parse("train_avd_params: {batch_size: 1}\n").expect_err("batch 1");
        assert!(err.contains("at least 2"), "{err}");
        assert!(parse("mode: dance\n").is_err());
    }
}
