//! Families that train: what a training run asks of a family's config ([`FamilyTraining`]) and
//! of its learner ([`StepLearner`]), whatever its networks.
//!
//! The trainer, `bench train`, the ablation, the worker and the CLI hold a [`TrainingConfig`]
//! and drive a `Box<dyn StepLearner>`; none of them names a family. A family's config is
//! recognised by its model family ([`crate::family::family_of`]) and read by the entry of
//! [`TRAINING_FAMILIES`] of the same name.
//!
//! Adding a family that trains: its config type implementing [`FamilyTraining`], its learner
//! implementing [`StepLearner`], and one line in [`TRAINING_FAMILIES`].

use std::ops::{Deref, DerefMut};
use std::path::Path;

use burn::tensor::{Device, Tensor};

use super::events::StepReport;
use crate::config::{DatasetParams, PriorityCutParams, TrainingMode, Variant};
use crate::loss::PerceptualLoss;
use crate::render::Snapshot;
use crate::rng::Rng;
use crate::{EngineError, Result};

/// Every family that trains, found by its model family's name.
pub static TRAINING_FAMILIES: [&dyn TrainingFamily; 2] = [&super::tpsmm::TpsmmTraining, &super::learner::FommTraining];

/// A family that trains: how its configs are read for a run.
pub trait TrainingFamily: Sync {
    /// Its model family's name ([`crate::family::ModelFamily::name`]).
    fn name(&self) -> &'static str;

    /// Reads a config of the family, with the keys it holds that the engine does not use.
    fn read_config(&self, path: &Path) -> Result<(TrainingConfig, Vec<String>)>;
}

/// A family's config as a training run reads it, and the learner it builds.
pub trait FamilyTraining: std::fmt::Debug + Send + Sync {
    /// The family's name, as its model family says it ("FOMM", "TPSMM").
    fn family(&self) -> &'static str;

    /// `dataset_params.frame_shape`: [height, width, channels].
    fn frame_shape(&self) -> [usize; 3];

    /// `dataset_params` other than the frame shape: sampling and augmentation.
    fn dataset(&self) -> &DatasetParams;

    /// `prioritycut_params`: the variant and PriorityCut's own choices.
    fn prioritycut(&self) -> &PriorityCutParams;

    fn prioritycut_mut(&mut self) -> &mut PriorityCutParams;

    /// What a run of the config trains.
    fn mode(&self) -> TrainingMode {
        TrainingMode::Train
    }

    /// Sets what a run trains; a family with no disentanglement network has only its networks.
    fn set_mode(&mut self, mode: TrainingMode) -> Result<()> {
        match mode {
            TrainingMode::Train => Ok(()),
            TrainingMode::TrainAvd => Err(EngineError::Invalid(format!(
                "training an AVD network is TPSMM's (train_avd): {} has none (give a TPSMM config)",
                self.family()
            ))),
        }
    }

    /// `(num_epochs, num_repeats, batch_size)` of what the mode trains.
    fn schedule(&self) -> (usize, usize, usize);

    /// The schedule's `(batch_size, num_repeats)`, to be overridden.
    fn batches_mut(&mut self) -> (&mut usize, &mut usize);

    /// The perceptual pyramid: `(scales, weights)`; empty where the mode's loss has none.
    fn perceptual(&self) -> (&[f64], &[f64]);

    /// The first epoch of the run's steady state (what `bench train` times): where a family's
    /// schedule turns parts on or off, the epoch after the last change.
    fn steady_epoch(&self) -> usize {
        0
    }

    /// Every value, in the family's layout (a run's `config.yaml`).
    fn to_yaml(&self) -> String;

    /// The same config at frame size `size`², checked as a file of that size would be.
    fn resized(&self, size: usize) -> std::result::Result<TrainingConfig, String>;

    /// Checks that the config's variant (in its mode) can train, before anything is built.
    fn check(&self) -> Result<()>;

    /// Fresh networks of the config, their optimizers and `perceptual`, on `device` (autodiff
    /// is enabled by the learner).
    fn learner(&self, perceptual: PerceptualLoss, device: &Device) -> Result<Box<dyn StepLearner>>;

    fn boxed_clone(&self) -> Box<dyn FamilyTraining>;
}

/// A family's networks in training, as the trainer drives them.
pub trait StepLearner: std::fmt::Debug {
    /// The autodiff device.
    fn device(&self) -> &Device;

    fn variant(&self) -> Variant;

    fn perceptual(&self) -> &PerceptualLoss;

    /// One step on `source`/`driving` [b, 3, h, w] during `epoch` (its learning rates and the
    /// family's schedule), drawing its random choices from `rng`. A non-finite loss skips the
    /// update (reported). With `snapshot`, also the first pair's images and maps.
    fn step(
        &mut self,
        source: Tensor<4>,
        driving: Tensor<4>,
        epoch: usize,
        rng: &mut Rng,
        snapshot: bool,
    ) -> (StepReport, Option<Snapshot>);

    /// Starts (`true`) or stops timing each step stage by stage, each stage waited for on the
    /// device; the learners that time no stages ignore it.
    fn time_stages(&mut self, _on: bool) {}

    /// The last step's stages, `(stage, seconds)` in the order they ran, while timing them.
    fn stage_times(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// Writes the networks and optimizer states into a checkpoint folder.
    fn save(&self, dir: &Path) -> Result<()>;

    /// Reads what [`StepLearner::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()>;

    /// Loads the trained model a new run starts from, where the mode starts from one
    /// ([`TrainingConfig::check_start`]).
    fn start_from(&mut self, checkpoint: &Path) -> Result<()> {
        Err(EngineError::Invalid(format!(
            "{}: this training starts from its initialisation, not from a trained model",
            checkpoint.display()
        )))
    }
}

/// What a training run trains: a config of a family that trains.
#[derive(Debug)]
pub struct TrainingConfig(Box<dyn FamilyTraining>);

impl TrainingConfig {
    pub fn new(config: impl FamilyTraining + 'static) -> Self {
        Self(Box::new(config))
    }

    /// Reads a YAML config of any family that trains, with the keys it holds that the engine
    /// does not use.
    pub fn read_yaml_file(path: impl AsRef<Path>) -> Result<(Self, Vec<String>)> {
        let path = path.as_ref();
        let family = crate::family::family_of(path)?;
        let training = TRAINING_FAMILIES
            .iter()
            .find(|training| training.name() == family.name())
            .ok_or_else(|| EngineError::Config {
                path: path.to_path_buf(),
                message: format!("{} models animate here but do not train", family.name()),
            })?;
        training.read_config(path)
    }

    pub fn variant(&self) -> Variant {
        self.prioritycut().variant
    }

    pub fn set_variant(&mut self, variant: Variant) {
        self.prioritycut_mut().variant = variant;
    }

    /// Whether the run trains a disentanglement network (TPSMM's AVD) on a trained model.
    pub fn trains_avd(&self) -> bool {
        self.mode() == TrainingMode::TrainAvd
    }

    /// Overrides the schedule's batch size and `num_repeats` where given.
    pub fn set_batches(&mut self, batch_size: Option<usize>, num_repeats: Option<usize>) {
        let (batch, repeats) = self.batches_mut();
        *batch = batch_size.unwrap_or(*batch);
        *repeats = num_repeats.unwrap_or(*repeats);
    }

    /// Checks that a new run has the starting model it needs, and only where it takes one:
    /// AVD training starts from a trained model, the others from their initialisation.
    pub fn check_start(&self, start_from: Option<&Path>) -> Result<()> {
        match (self.trains_avd(), start_from) {
            (true, None) => Err(EngineError::Invalid(
                "training the AVD network starts from a trained TPSMM model: give its checkpoint (train --checkpoint)"
                    .into(),
            )),
            (false, Some(path)) => Err(EngineError::Invalid(format!(
                "{}: a starting checkpoint is taken by AVD training (TPSMM's mode train_avd) only",
                path.display()
            ))),
            _ => Ok(()),
        }
    }
}

impl Clone for TrainingConfig {
    fn clone(&self) -> Self {
        Self(self.0.boxed_clone())
    }
}

impl Deref for TrainingConfig {
    type Target = dyn FamilyTraining;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl DerefMut for TrainingConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_that_trains_is_a_model_family() {
        for training in TRAINING_FAMILIES {
            assert!(
                crate::family::FAMILIES
                    .iter()
                    .any(|family| family.name() == training.name()),
                "{} trains but no model family opens it",
                training.name()
            );
        }
    }

    #[test]
    fn configs_are_read_by_their_family() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/configs");
        for (file, family, size) in [
            ("synthetic-64-tpsmm.yaml", "TPSMM", 64),
            ("synthetic-64.yaml", "FOMM", 64),
            ("vox-256.yaml", "FOMM", 256),
        ] {
            let (config, ignored) = TrainingConfig::read_yaml_file(assets.join(file)).expect(file);
            assert!(ignored.is_empty(), "{file}: {ignored:?}");
            assert_eq!(
                (config.family(), config.frame_shape()),
                (family, [size, size, 3]),
                "{file}"
            );
            let copy = config.clone();
            assert_eq!(copy.to_yaml(), config.to_yaml(), "{file}: a clone keeps every value");
            let resized = config.resized(128).expect("128 fits both families");
            assert_eq!((resized.family(), resized.frame_shape()), (family, [128, 128, 3]));
        }
    }

    #[test]
    fn the_mode_and_schedule_are_the_familys() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/configs");
        let (mut fomm, _) = TrainingConfig::read_yaml_file(assets.join("synthetic-64.yaml")).expect("FOMM");
        let err = fomm
            .set_mode(TrainingMode::TrainAvd)
            .expect_err("FOMM has no AVD network");
        assert!(err.to_string().contains("FOMM has none"), "{err}");
        assert!(!fomm.trains_avd());
        fomm.set_batches(Some(3), None);
        let (_, repeats, batch) = fomm.schedule();
        assert_eq!(batch, 3);
        fomm.set_batches(None, Some(repeats + 1));
        assert_eq!(fomm.schedule(), (fomm.schedule().0, repeats + 1, 3));

        let (mut tpsmm, _) = TrainingConfig::read_yaml_file(assets.join("synthetic-64-tpsmm.yaml")).expect("TPSMM");
        let networks = tpsmm.schedule();
        tpsmm
            .set_mode(TrainingMode::TrainAvd)
            .expect("TPSMM trains its AVD network");
        assert!(tpsmm.trains_avd());
        assert_ne!(tpsmm.schedule(), networks, "AVD training has its own train_avd_params");
        assert_eq!(
            tpsmm.perceptual(),
            (&[][..], &[][..]),
            "AVD training's loss is on keypoints"
        );
        assert!(tpsmm.check_start(None).is_err(), "AVD training needs a trained model");
        assert!(fomm.check_start(Some(Path::new("x.pth.tar"))).is_err());
        assert!(fomm.check_start(None).is_ok());
    }
}
