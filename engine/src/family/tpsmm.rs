//! The Thin-Plate Spline Motion Model as a family: keypoints without Jacobians in groups of
//! five, the inpainting network's encoder pyramid of the source, the AVD network's motion,
//! TPSMM's configs (`num_tps`) and checkpoints.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{Device, Tensor};
use serde_yaml_ng::Value;

use super::{AnimatedFrame, LoadedModel, ModelFamily, MotionModel, SourceEncoding};
use crate::checkpoint::{CONFIG_FILE, CheckpointFormat, MODEL_FILE, load_burnpack, save_burnpack};
use crate::config::AnimateParams;
use crate::config::tpsmm::{TpsmmConfigFile, is_tpsmm};
use crate::files::write_atomic;
use crate::import::load_tpsmm_checkpoint;
use crate::model::tpsmm::{DenseMotion, TpsmmConfig, TpsmmModels};
use crate::model::{InferenceForm, Keypoints};
use crate::{EngineError, Result};

/// TPSMM's family: configs whose `common_params` name `num_tps`.
#[derive(Debug, Clone, Copy)]
pub struct Tpsmm;

impl ModelFamily for Tpsmm {
    fn name(&self) -> &'static str {
        "TPSMM"
    }

    fn recognizes(&self, config: &Value) -> bool {
        is_tpsmm(config)
    }

    fn open(&self, weights: &Path, config: &Path, device: &Device) -> Result<LoadedModel> {
        let file = TpsmmConfigFile::read(config)?;
        let mut models = TpsmmModels::new(&file.config, device);
        // Animation never runs the background predictor: it is neither loaded nor prepared.
        models.bg_predictor = None;
        load_weights(weights, &mut models)?;
        Ok(LoadedModel {
            family: self.name(),
            frame_shape: file.config.frame_shape,
            // The demo's default mode, `relative`: relative motion with the movement scale
            // adapted to the hulls of the keypoints (`relative_kp`).
            animate: AnimateParams::new().with_adapt_movement_scale(true),
            dataset: file.dataset,
            models: Arc::new(TpsmmAnimation::new(
                models.into_inference_form(),
                file.config,
                std::fs::read_to_string(config).map_err(|e| EngineError::io(config, e))?,
            )),
            weights: weights.to_path_buf(),
            ignored_config_keys: file.ignored_keys,
        })
    }
}

/// Reads a TPSMM model's weights into `models`, from an official checkpoint or our `.bpk`.
/// An export holds what animation needs (no background predictor, the AVD network only where
/// the model had one); a run's checkpoint of the networks has no AVD network and may hold the
/// U-Net variants' discriminator (ignored). A part the file lacks is dropped from `models`; a
/// background predictor `models` has none of is not read.
pub fn load_weights(weights: &Path, models: &mut TpsmmModels) -> Result<()> {
    match CheckpointFormat::of(weights) {
        CheckpointFormat::Fomm => {
            load_tpsmm_checkpoint(weights, models)?;
        }
        CheckpointFormat::Burnpack => {
            let mut ignore = vec!["unet_discriminator."];
            if models.bg_predictor.is_none() {
                ignore.push("bg_predictor.");
            }
            let missing = load_burnpack(models, weights, &["avd_network.", "bg_predictor."], &ignore)?;
            let lacks = |part: &str| missing.iter().any(|key| key.starts_with(part));
            if lacks("avd_network.") {
                models.avd_network = None;
            }
            if lacks("bg_predictor.") {
                models.bg_predictor = None;
            }
        }
    }
    Ok(())
}

/// A TPSMM model opened for animation, with its config.
#[derive(Debug)]
pub struct TpsmmAnimation {
    pub models: TpsmmModels,
    pub config: TpsmmConfig,
    /// The config file as the user gave it, written beside an export.
    yaml: String,
}

impl TpsmmAnimation {
    /// `models` of `config`, whose YAML (`yaml`) an export writes beside them. Animation never
    /// runs the background predictor (the demo passes `bg_param=None`): it is dropped here, and
    /// its memory with it.
    pub fn new(mut models: TpsmmModels, config: TpsmmConfig, yaml: String) -> Self {
        models.bg_predictor = None;
        Self { models, config, yaml }
    }
}

impl MotionModel for TpsmmAnimation {
    fn keypoints(&self, image: Tensor<4>) -> Keypoints {
        self.models.kp_detector.forward(image)
    }

    fn encode_source(&self, source: Tensor<4>) -> SourceEncoding {
        SourceEncoding {
            downsampled: self.models.dense_motion_network.downsample(source.clone()),
            features: self.models.inpainting_network.encode(source.clone()),
            image: source,
        }
    }

    fn generate(&self, source: &SourceEncoding, kp_driving: &Keypoints, kp_source: &Keypoints) -> AnimatedFrame {
        // The demo's path: no background motion, no dropout.
        let motion: DenseMotion = self.models.dense_motion_network.forward_downsampled(
            source.downsampled.clone(),
            kp_driving,
            kp_source,
            None,
            None,
        );
        let out = self
            .models
            .inpainting_network
            .forward_encoded(source.image.clone(), &source.features, &motion);
        AnimatedFrame {
            prediction: out.prediction,
            background: motion.contribution_maps.narrow(1, 0, 1),
            occlusion: motion.occlusion_map.last().cloned(),
        }
    }

    fn can_disentangle(&self) -> bool {
        self.models.avd_network.is_some()
    }

    fn disentangled(&self, kp_source: &Keypoints, kp_driving: &Keypoints) -> Option<Keypoints> {
        Some(self.models.avd_network.as_ref()?.forward(kp_source, kp_driving))
    }

    fn describe(&self) -> String {
        format!("TPSMM, {} TPS transformations", self.config.num_tps)
    }

    fn export_for_animation(&self, out: &Path) -> Result<u64> {
        std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
        let model = out.join(MODEL_FILE);
        save_burnpack(&self.models, &model)?;
        write_atomic(&out.join(CONFIG_FILE), self.yaml.as_bytes())?;
        Ok(std::fs::metadata(&model).map_err(|e| EngineError::io(&model, e))?.len())
    }
}
