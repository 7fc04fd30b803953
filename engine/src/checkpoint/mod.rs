//! Models on disk: what a path holds and how it is read. [`resolve_checkpoint`] turns any path a
//! user can name (an official `.pth.tar`, our `.bpk`, a training run folder or one of its
//! checkpoints, a folder from `export-model`) into a weights file and the config beside it,
//! which [`crate::family::LoadedModel::open`] hands to the config's family. [`FommModels`]
//! holds the three networks as FOMM saves them; our own format is a burnpack file (`.bpk`),
//! written atomically. [`run_dir`] is the layout of a training run.

use std::path::Path;

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::{Device, FloatDType, Tensor};

use crate::config::FommConfig;
use crate::files::write_atomic_with;
use crate::import::{ImportReport, load_fomm_checkpoint};
use crate::model::{
    DenseMotion, EncodedSource, GeneratorOutput, InferenceForm, Keypoints, KpDetector, MultiScaleDiscriminator,
    OcclusionAwareGenerator, with_float_dtype,
};
use crate::{EngineError, Result};

pub mod run_dir;

pub use run_dir::{CONFIG_FILE, CheckpointState, LOSSES_FILE, MODEL_FILE, RunDir, STATE_FILE, resolve_checkpoint};

/// Keypoint detector, generator and discriminator, as FOMM saves them together.
#[derive(Module, Debug)]
pub struct FommModels {
    pub kp_detector: KpDetector,
    pub generator: OcclusionAwareGenerator,
    pub discriminator: MultiScaleDiscriminator,
}

impl FommModels {
    /// Freshly initialised networks of `config`.
    pub fn init(config: &FommConfig, device: &Device) -> Self {
        Self {
            kp_detector: config.kp_detector.init(device),
            generator: config.generator.init(device),
            discriminator: config.discriminator.init(device),
        }
    }

    /// Makes the inference form of the loaded weights (see [`InferenceForm`]), which the
    /// networks then run where it serves; the weights must not change afterwards.
    pub fn with_inference_form(mut self) -> Self {
        self.kp_detector = self.kp_detector.into_inference_form();
        self.generator = self.generator.into_inference_form();
        self
    }

    /// Whether the networks carry their inference form: made by
    /// [`with_inference_form`](Self::with_inference_form) where it serves the device (flex or a
    /// GPU, without autodiff); trained networks never carry one. Asked of a 3×3 block, which has
    /// one on either (a GPU's 7×7 layers run as they are).
    pub fn has_inference_form(&self) -> bool {
        self.generator
            .down_blocks
            .first()
            .is_some_and(|block| block.inference.is_some())
    }

    /// The animation networks (keypoint detector and generator) stored in `dtype`: f16 on a GPU
    /// that computes in it ([`crate::kernels::precision::storage_dtype`]). Made before the
    /// inference form, which prepares its weights in the same dtype. Images go in as f32 and
    /// keypoints come out f32 whatever the storage (the motion arithmetic between the networks
    /// stays f32); maps (a source's encoding, the generator's outputs) are in the storage's
    /// dtype: [`crate::frames::tensor_values`] and the images made of them convert.
    pub fn in_precision(mut self, dtype: FloatDType) -> Self {
        self.kp_detector = with_float_dtype(self.kp_detector, dtype);
        self.generator = with_float_dtype(self.generator, dtype);
        self
    }

    /// The dtype the animation networks are stored in ([`Self::in_precision`]).
    pub fn storage_dtype(&self) -> FloatDType {
        self.generator.final_conv.weight.val().dtype().into()
    }

    /// The keypoints of images [b, c, h, w] in [0, 1].
    pub fn keypoints(&self, image: Tensor<4>) -> Keypoints {
        self.kp_detector
            .forward(image.cast(self.storage_dtype()))
            .cast(FloatDType::F32)
    }

    /// The keypoints and their softmax heatmaps.
    pub fn keypoints_with_heatmap(&self, image: Tensor<4>) -> (Keypoints, Tensor<4>) {
        let (keypoints, heatmap) = self.kp_detector.forward_with_heatmap(image.cast(self.storage_dtype()));
        (keypoints.cast(FloatDType::F32), heatmap)
    }

    /// The generator's part of a source: computed once per photo.
    pub fn encode_source(&self, source: Tensor<4>) -> EncodedSource {
        self.generator.encode_source(source.cast(self.storage_dtype()))
    }

    /// The dense motion network's output for a downsampled source ([`EncodedSource::downsampled`]).
    pub fn dense_motion(&self, downsampled: Tensor<4>, kp_driving: &Keypoints, kp_source: &Keypoints) -> DenseMotion {
        self.generator
            .dense_motion_network
            .forward_downsampled(downsampled, kp_driving, kp_source)
    }

    /// The generator's output for an encoded source and the keypoints of both frames.
    pub fn generate(&self, source: &EncodedSource, kp_driving: &Keypoints, kp_source: &Keypoints) -> GeneratorOutput {
        self.generator.forward_encoded(source, kp_driving, kp_source)
    }

    /// Loads a checkpoint for `config`: an official FOMM `.pth.tar`/`.pth`/`.tar`, or our `.bpk`.
    pub fn load(path: &Path, config: &FommConfig, device: &Device) -> Result<Self> {
        let mut models = Self::init(config, device);
        match CheckpointFormat::of(path) {
            CheckpointFormat::Fomm => {
                models.load_fomm(path)?;
            }
            CheckpointFormat::Burnpack => models.load_burnpack(path)?,
        }
        Ok(models)
    }

    /// Builds the networks of `config` and loads an official FOMM checkpoint into them.
    pub fn import(path: &Path, config: &FommConfig, device: &Device) -> Result<(Self, ImportReport)> {
        let mut models = Self::init(config, device);
        let report = models.load_fomm(path)?;
        Ok((models, report))
    }

    fn load_fomm(&mut self, path: &Path) -> Result<ImportReport> {
        load_fomm_checkpoint(
            path,
            &mut self.kp_detector,
            &mut self.generator,
            &mut self.discriminator,
        )
    }

    /// Saves to `path` (a `.bpk` file) atomically: readers see the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_burnpack(self, path)
    }

    /// Our own checkpoints, including those of a training run, whose networks file may lack
    /// the multi-scale discriminator (variants without it) and hold a U-Net discriminator,
    /// which animation does not use.
    fn load_burnpack(&mut self, path: &Path) -> Result<()> {
        load_burnpack(self, path, &["discriminator."], &["unet_discriminator."]).map(drop)
    }
}

/// Writes `module` to `path` as burnpack, atomically: a temporary file, synced, then renamed.
pub fn save_burnpack<M: Module + ModuleSnapshot>(module: &M, path: &Path) -> Result<()> {
    write_atomic_with(path, |temp| {
        let mut store = BurnpackStore::from_file(temp).auto_extension(false).overwrite(true);
        // A RunningState's visible value can lag its latest update (spectral norm's u and v after
        // a training forward); `valid()` folds pending updates in, so the file holds the live state.
        module
            .valid()
            .save_into(&mut store)
            .map_err(|e| EngineError::checkpoint(temp, format!("cannot write: {e}")))
    })
}

/// Loads a burnpack file into `module`. Every parameter must be found, except under the
/// `may_miss` prefixes, and every tensor of the file must have a place, except under `ignore`.
/// Returns the parameters that were allowed to be missing and were.
pub fn load_burnpack<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    may_miss: &[&str],
    ignore: &[&str],
) -> Result<Vec<String>> {
    std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| EngineError::checkpoint(path, format!("not a readable burnpack checkpoint ({e})")))?;
    if let Some(error) = result.errors.first() {
        return Err(EngineError::checkpoint(
            path,
            format!("{error} (does the config match the checkpoint?)"),
        ));
    }
    let under = |key: &str, prefixes: &[&str]| prefixes.iter().any(|p| key.starts_with(p));
    if let Some((missing, _)) = result.missing.iter().find(|(key, _)| !under(key, may_miss)) {
        return Err(EngineError::checkpoint(
            path,
            format!("{missing} is missing (does the config match the checkpoint?)"),
        ));
    }
    if let Some(unused) = result.unused.iter().find(|key| !under(key, ignore)) {
        return Err(EngineError::checkpoint(
            path,
            format!("{unused} has no place in the model (does the config match the checkpoint?)"),
        ));
    }
    Ok(result.missing.iter().map(|(key, _)| key.clone()).collect())
}

/// How a checkpoint file is read, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// torch pickle (zip or legacy): official FOMM and TPSMM checkpoints.
    Fomm,
    /// burnpack: the engine's own.
    Burnpack,
}

impl CheckpointFormat {
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("bpk") => Self::Burnpack,
            _ => Self::Fomm,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    /// At vox-256's full size every kernel path of the inference form runs: Winograd on the
    /// large maps, the patch GEMM on the hourglasses' small ones, the direct heads, activations
    /// stored channels-last between blocks.
    #[test]
    fn the_inference_form_matches_the_training_form_at_vox256_size() {
        let device = Device::flex();
        let config = FommConfig::vox256();
        let training = FommModels::init(&config, &device);
        let inference = training.clone().with_inference_form();
        assert!(inference.has_inference_form(), "made on flex");
        assert!(!training.has_inference_form());
        let image = || Tensor::<4>::random([1, 3, 256, 256], Distribution::Uniform(0.0, 1.0), &device);
        let (source, driving) = (image(), image());

        let (kp_train, heat_train) = training.keypoints_with_heatmap(driving.clone());
        let (kp_fast, heat_fast) = inference.keypoints_with_heatmap(driving);
        let kp_source = training.keypoints(source.clone());
        let out_train = training.generate(&training.encode_source(source.clone()), &kp_train, &kp_source);
        let out_fast = inference.generate(&inference.encode_source(source), &kp_train, &kp_source);

        let max_diff = |a: Tensor<4>, b: Tensor<4>| -> f32 { (a - b).abs().max().into_scalar() };
        let kp_diff: f32 = (kp_train.value - kp_fast.value).abs().max().into_scalar();
        assert!(kp_diff < 1e-5, "keypoints {kp_diff}");
        assert!(max_diff(heat_train, heat_fast) < 1e-5);
        let occlusion = max_diff(
            out_train.occlusion_map.expect("vox-256 has one"),
            out_fast.occlusion_map.expect("vox-256 has one"),
        );
        assert!(occlusion < 1e-5, "occlusion {occlusion}");
        let prediction = max_diff(out_train.prediction, out_fast.prediction);
        assert!(prediction < 1e-4, "prediction {prediction}");
    }
}
