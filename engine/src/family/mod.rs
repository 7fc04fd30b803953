//! Model families: what animation needs of a model, whatever its networks.
//!
//! FOMM and TPSMM differ in how keypoints move a source (local affine transforms or thin-plate
//! splines), in what they compute of the source once, and in the motion modes they offer, but
//! animation asks the same four things of both ([`MotionModel`]): the keypoints of a frame, the
//! source's encoding (once per photo), a frame from that encoding and driving keypoints, and
//! where the family has one, its disentangled motion (TPSMM's AVD network). A family
//! ([`ModelFamily`]) recognises its configs and opens its checkpoints into a [`LoadedModel`],
//! the one way the CLI, the worker, evaluation, ablation and export open a model.
//!
//! Adding a family: a module implementing both traits, and one line in [`FAMILIES`]; a family
//! that trains also adds its learner and a line in `train::family::TRAINING_FAMILIES`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use serde_yaml_ng::Value;

use crate::checkpoint::resolve_checkpoint;
use crate::config::{AnimateParams, DatasetParams};
use crate::model::Keypoints;
use crate::{EngineError, Result};

pub mod fomm;
pub mod tpsmm;

/// A model ready to animate or evaluate: its networks (of any family), the config values
/// animation and evaluation read, and where they came from.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The family that opened it ([`crate::family::ModelFamily::name`]).
    pub family: &'static str,
    pub models: Arc<dyn MotionModel>,
    /// `dataset_params.frame_shape`: [height, width, channels].
    pub frame_shape: [usize; 3],
    /// How driving keypoints move the source unless the user says otherwise.
    pub animate: AnimateParams,
    /// `dataset_params`: how an evaluation reads a dataset's frames.
    pub dataset: DatasetParams,
    /// The weights file read.
    pub weights: PathBuf,
    /// Keys of the config file that the engine does not use (see [`crate::config::ConfigFile`]).
    pub ignored_config_keys: Vec<String>,
}

impl LoadedModel {
    /// Opens what `path` names (see [`resolve_checkpoint`]) with `config`, or with the config of
    /// the run or export it belongs to; an official checkpoint outside a run needs `config`.
    /// The config says the family ([`family_of`]).
    pub fn open(path: &Path, config: Option<&Path>, device: &Device) -> Result<Self> {
        let (weights, run_config) = resolve_checkpoint(path)?;
        let config_path = config.map(Path::to_path_buf).or(run_config).ok_or_else(|| {
            EngineError::Invalid(format!(
                "{} needs its YAML config (--config): it is not inside a training run",
                path.display()
            ))
        })?;
        family_of(&config_path)?.open(&weights, &config_path, device)
    }

    /// The frame size the networks work at, (width, height).
    pub fn frame_size(&self) -> (u32, u32) {
        let [h, w, _] = self.frame_shape;
        (w as u32, h as u32)
    }

    /// One line for a user: what moves the source, size and file.
    pub fn describe(&self) -> String {
        let (w, h) = self.frame_size();
        format!("{}, {w}x{h}, from {}", self.models.describe(), self.weights.display())
    }

    /// Writes `out/model.bpk` (what animation needs of the networks) and `out/config.yaml`: a
    /// fraction of a training checkpoint. Returns the model file's size.
    pub fn export_for_animation(&self, out: &Path) -> Result<u64> {
        self.models.export_for_animation(out)
    }
}

/// Every family the engine opens, asked in order; the first that recognises a config opens it.
pub static FAMILIES: [&dyn ModelFamily; 2] = [&tpsmm::Tpsmm, &fomm::Fomm];

/// A family of models: how its YAML configs are recognised and its checkpoints opened.
pub trait ModelFamily: Sync {
    /// Its short name, for messages and `bench` lines.
    fn name(&self) -> &'static str;

    /// Whether `config` (a parsed YAML file) is one of this family's.
    fn recognizes(&self, config: &Value) -> bool;

    /// Opens `weights` (an official checkpoint of the family, or our `.bpk`) with the config at
    /// `config`, in the form animation runs.
    fn open(&self, weights: &Path, config: &Path, device: &Device) -> Result<LoadedModel>;
}

/// The family whose config is at `path`.
pub fn family_of(path: &Path) -> Result<&'static dyn ModelFamily> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let root: Value = serde_yaml_ng::from_str(&text).map_err(|e| EngineError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    FAMILIES
        .iter()
        .copied()
        .find(|family| family.recognizes(&root))
        .ok_or_else(|| EngineError::Config {
            path: path.to_path_buf(),
            message: "not a config of any model family this engine knows (FOMM's or TPSMM's)".into(),
        })
}

/// A model ready to animate: what every family offers.
pub trait MotionModel: std::fmt::Debug + Send + Sync {
    /// The keypoints of images [b, c, h, w] in [0, 1].
    fn keypoints(&self, image: Tensor<4>) -> Keypoints;

    /// What the model computes of a source [b, c, h, w] alone: once per photo.
    fn encode_source(&self, source: Tensor<4>) -> SourceEncoding;

    /// The source moved to `kp_driving` (keypoints already transferred: relative, absolute or
    /// disentangled) from its own `kp_source`.
    fn generate(&self, source: &SourceEncoding, kp_driving: &Keypoints, kp_source: &Keypoints) -> AnimatedFrame;

    /// Whether this model has a disentanglement network (TPSMM's AVD, where its checkpoint
    /// holds one).
    fn can_disentangle(&self) -> bool {
        false
    }

    /// The driving pose on the source's proportions by the family's disentanglement network,
    /// where this model has one.
    fn disentangled(&self, _kp_source: &Keypoints, _kp_driving: &Keypoints) -> Option<Keypoints> {
        None
    }

    /// One line: what moves the source ("10 keypoints", "10 TPS transformations").
    fn describe(&self) -> String;

    /// Writes what animation needs to `out` (the model file and its config); returns the
    /// model file's size.
    fn export_for_animation(&self, out: &Path) -> Result<u64>;
}

/// What a model computes of a source alone (see [`MotionModel::encode_source`]).
#[derive(Debug, Clone)]
pub struct SourceEncoding {
    /// [b, c, H, W] in [0, 1].
    pub image: Tensor<4>,
    /// [b, c, h, w] at the dense motion's resolution.
    pub downsampled: Tensor<4>,
    /// The generator's encoder levels the family keeps (FOMM: its deepest; TPSMM: every one,
    /// shallowest first).
    pub features: Vec<Tensor<4>>,
}

impl SourceEncoding {
    /// The same source `n` times over, for a batch of driving frames.
    pub fn repeat(&self, n: usize) -> Self {
        Self {
            image: self.image.clone().repeat_dim(0, n),
            downsampled: self.downsampled.clone().repeat_dim(0, n),
            features: self.features.iter().map(|f| f.clone().repeat_dim(0, n)).collect(),
        }
    }
}

/// A generated frame and the maps a user may want to look at.
#[derive(Debug, Clone)]
pub struct AnimatedFrame {
    /// [b, c, H, W] the generated frame in (0, 1).
    pub prediction: Tensor<4>,
    /// [b, 1, h, w] the share of the background's motion at each pixel (channel 0 of FOMM's
    /// mask or TPSMM's contribution maps), at the dense motion's resolution.
    pub background: Tensor<4>,
    /// [b, 1, h', w'] the finest occlusion map (1 = visible in the source), where the model
    /// predicts one.
    pub occlusion: Option<Tensor<4>>,
}
