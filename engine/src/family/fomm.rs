//! The First Order Motion Model as a family: keypoints with Jacobians, the generator's encoding
//! of the source, FOMM's configs (`num_kp`) and checkpoints.

use std::path::Path;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor};
use serde_yaml_ng::Value;

use super::{AnimatedFrame, LoadedModel, ModelFamily, MotionModel, SourceEncoding};
use crate::checkpoint::{CONFIG_FILE, FommModels, MODEL_FILE, save_burnpack};
use crate::config::FommConfig;
use crate::files::write_atomic;
use crate::kernels::precision::storage_dtype;
use crate::model::{EncodedSource, Keypoints, KpDetector, OcclusionAwareGenerator, with_float_dtype};
use crate::{EngineError, Result};

/// FOMM's family: configs with `model_params.common_params.num_kp` (or none, FOMM's defaults).
#[derive(Debug, Clone, Copy)]
pub struct Fomm;

impl ModelFamily for Fomm {
    fn name(&self) -> &'static str {
        "FOMM"
    }

    fn recognizes(&self, _config: &Value) -> bool {
        // FOMM's reader takes any YAML layout of its own, and is asked last.
        true
    }

    fn open(&self, weights: &Path, config: &Path, device: &Device) -> Result<LoadedModel> {
        let file = FommConfig::read_yaml_file(config)?;
        let models = FommModels::load(weights, &file.config, device)?
            .in_precision(storage_dtype(device))
            .with_inference_form();
        Ok(LoadedModel {
            family: self.name(),
            frame_shape: file.config.frame_shape,
            animate: file.config.animate.clone(),
            dataset: file.config.dataset.clone(),
            models: Arc::new(FommAnimation {
                models,
                config: file.config,
            }),
            weights: weights.to_path_buf(),
            ignored_config_keys: file.ignored_keys,
        })
    }
}

/// A FOMM model opened for animation, with its config.
#[derive(Debug)]
pub struct FommAnimation {
    pub models: FommModels,
    pub config: FommConfig,
}

/// What animation needs of a FOMM checkpoint: the keypoint detector and the generator. Saved
/// alone, it is a fraction of a training checkpoint and loads with [`FommModels::load`].
#[derive(Module, Debug)]
struct AnimationModel {
    kp_detector: KpDetector,
    generator: OcclusionAwareGenerator,
}

impl MotionModel for FommAnimation {
    fn keypoints(&self, image: Tensor<4>) -> Keypoints {
        self.models.keypoints(image)
    }

    fn encode_source(&self, source: Tensor<4>) -> SourceEncoding {
        let encoded = self.models.encode_source(source);
        SourceEncoding {
            image: encoded.image,
            downsampled: encoded.downsampled,
            features: vec![encoded.features],
        }
    }

    fn generate(&self, source: &SourceEncoding, kp_driving: &Keypoints, kp_source: &Keypoints) -> AnimatedFrame {
        let encoded = EncodedSource {
            image: source.image.clone(),
            features: source.features[0].clone(),
            downsampled: source.downsampled.clone(),
        };
        let out = self.models.generate(&encoded, kp_driving, kp_source);
        AnimatedFrame {
            prediction: out.prediction,
            background: out.mask.narrow(1, 0, 1),
            occlusion: out.occlusion_map,
        }
    }

    fn describe(&self) -> String {
        let stored = match self.models.storage_dtype() {
            FloatDType::F16 => ", stored in f16",
            _ => "",
        };
        format!("{} keypoints{stored}", self.config.kp_detector.num_kp)
    }

    fn export_for_animation(&self, out: &Path) -> Result<u64> {
        std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
        let model = out.join(MODEL_FILE);
        save_burnpack(
            // In f32 whatever this process computes in: the file is the model's, not the run's.
            &AnimationModel {
                kp_detector: with_float_dtype(self.models.kp_detector.clone(), FloatDType::F32),
                generator: with_float_dtype(self.models.generator.clone(), FloatDType::F32),
            },
            &model,
        )?;
        write_atomic(&out.join(CONFIG_FILE), self.config.to_yaml().as_bytes())?;
        Ok(std::fs::metadata(&model).map_err(|e| EngineError::io(&model, e))?.len())
    }
}
