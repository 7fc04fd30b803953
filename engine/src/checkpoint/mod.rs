//! The three FOMM networks as one module, and the engine's own checkpoint format: a burnpack
//! file (`.bpk`) of [`FommModels`], written atomically (temporary file, then rename).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;

use crate::config::FommConfig;
use crate::import::load_fomm_checkpoint;
use crate::model::{KpDetector, MultiScaleDiscriminator, OcclusionAwareGenerator};
use crate::{EngineError, Result};

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

    /// Loads a checkpoint for `config`: an official FOMM `.pth.tar`/`.pth`/`.tar`, or our `.bpk`.
    pub fn load(path: &Path, config: &FommConfig, device: &Device) -> Result<Self> {
        let mut models = Self::init(config, device);
        match CheckpointFormat::of(path) {
            CheckpointFormat::Fomm => {
                load_fomm_checkpoint(path, &mut models)?;
            }
            CheckpointFormat::Burnpack => models.load_burnpack(path)?,
        }
        Ok(models)
    }

    /// Saves to `path` (a `.bpk` file) atomically: readers see the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_burnpack(self, path)
    }

    /// Our own checkpoints, including those of a training run, whose networks file may lack
    /// the multi-scale discriminator (variants without it) and hold a U-Net discriminator,
    /// which animation does not use.
    fn load_burnpack(&mut self, path: &Path) -> Result<()> {
        load_burnpack(self, path, &["discriminator."], &["unet_discriminator."])
    }
}

/// Writes `module` to `path` as burnpack, atomically: a temporary file, synced, then renamed.
pub fn save_burnpack<M: Module + ModuleSnapshot>(module: &M, path: &Path) -> Result<()> {
    let temp = temporary_sibling(path);
    let mut store = BurnpackStore::from_file(&temp).auto_extension(false).overwrite(true);
    // A RunningState's visible value can lag its latest update (spectral norm's u and v after a
    // training forward); `valid()` folds pending updates in, so the file holds the live state.
    module
        .valid()
        .save_into(&mut store)
        .map_err(|e| EngineError::checkpoint(&temp, format!("cannot write: {e}")))?;
    // On disk before the rename, so a crash never leaves a renamed but empty file.
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(|e| EngineError::io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| EngineError::io(path, e))
}

/// Loads a burnpack file into `module`. Every parameter must be found, except under the
/// `may_miss` prefixes, and every tensor of the file must have a place, except under `ignore`.
pub fn load_burnpack<M: ModuleSnapshot>(module: &mut M, path: &Path, may_miss: &[&str], ignore: &[&str]) -> Result<()> {
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
    Ok(())
}

/// What animation needs of a checkpoint: the keypoint detector and the generator. Saved alone,
/// it is a fraction of a training checkpoint and loads with [`FommModels::load`].
#[derive(Module, Debug)]
struct AnimationModel {
    kp_detector: KpDetector,
    generator: OcclusionAwareGenerator,
}

/// Writes `out/model.bpk` (keypoint detector and generator of `weights`) and `out/config.yaml`;
/// returns the size of the model file in bytes.
pub fn export_animation_model(weights: &Path, config: &FommConfig, out: &Path) -> Result<u64> {
    let models = FommModels::load(weights, config, &Device::flex())?;
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    let model = out.join("model.bpk");
    save_burnpack(
        &AnimationModel {
            kp_detector: models.kp_detector,
            generator: models.generator,
        },
        &model,
    )?;
    let yaml = out.join("config.yaml");
    std::fs::write(&yaml, config.to_yaml()).map_err(|e| EngineError::io(&yaml, e))?;
    Ok(std::fs::metadata(&model).map_err(|e| EngineError::io(&model, e))?.len())
}

/// How a checkpoint file is read, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// torch pickle (zip or legacy): official FOMM checkpoints.
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

fn temporary_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
