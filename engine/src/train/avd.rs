//! Training TPSMM's AVD network as its `train_avd.py` does (`run.py --mode train_avd`): the
//! keypoints of a trained model's detector on a source and a driving frame, the driving ones
//! scaled at random per axis (`random_scale`), and the network asked to give back the driving
//! keypoints from the source's (identity) and the scaled ones (pose):
//!
//! `L_rec_kp = λ_shift · mean |kp_driving − AVD(kp_source, diag(θ) kp_driving)|`,
//! `θ ~ U(1 − s, 1 + s)²` per image (TPSMM §3.4, "animation via disentanglement").
//!
//! Only the AVD network steps (Adam, β = (0.5, 0.999), no weight decay; MultiStepLR stepped with
//! the epoch at each epoch's end). As in `train_avd.py`, the keypoint detector is never put in
//! eval mode: its batch norms take the batch's statistics and their running averages move,
//! while no gradient reaches it. The other networks ride along unchanged, so a checkpoint of
//! the run is a whole TPSMM model that animates in the `avd` mode.

use std::path::Path;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::events::StepReport;
use super::family::StepLearner;
use super::monitor::{StepTensors, finest_and_coarser, scalars};
use super::optim::Adam;
use super::unet::DiscriminatorPass;
use crate::checkpoint::{MODEL_FILE, load_burnpack, resolve_checkpoint, save_burnpack};
use crate::config::Variant;
use crate::config::tpsmm::TpsmmConfigFile;
use crate::family::tpsmm::load_weights;
use crate::loss::PerceptualLoss;
use crate::model::Keypoints;
use crate::model::tpsmm::{AvdNetwork, TpsmmModels};
use crate::render::Snapshot;
use crate::rng::Rng;
use crate::{EngineError, Result};

const ADAM_AVD: &str = "adam-avd.safetensors";

/// The AVD training's forward: the keypoints, the network's reconstruction and its loss.
#[derive(Debug, Clone)]
pub struct AvdPass {
    pub kp_source: Keypoints,
    /// The detector's keypoints of the driving frame: the target.
    pub kp_driving: Keypoints,
    /// `AVD(kp_source, diag(θ) kp_driving)`.
    pub reconstruction: Keypoints,
    /// `λ_shift · mean |kp_driving − reconstruction|`, [1].
    pub rec_kp: Tensor<1>,
}

/// A trained TPSMM model and its AVD network in training: everything a step needs.
#[derive(Debug)]
pub struct AvdLearner {
    pub config: TpsmmConfigFile,
    /// The autodiff device.
    pub device: Device,
    /// The whole model, saved as `model.bpk` under TPSMM's names; its `avd_network` is present.
    pub models: TpsmmModels,
    pub adam_avd: Adam,
    /// Off (no weights): the AVD network's loss is on keypoints. Kept so that a run says what
    /// it trained with as every run does.
    pub perceptual: PerceptualLoss,
}

/// Checks that `config` can train the AVD network, before anything is built.
pub fn check(config: &TpsmmConfigFile) -> Result<()> {
    config.train_avd.validate().map_err(EngineError::Invalid)
}

impl AvdLearner {
    /// Fresh networks of `config` on `device` (autodiff is enabled here); a run starts them
    /// from a trained model ([`AvdLearner::start_from`]).
    pub fn new(config: TpsmmConfigFile, perceptual: PerceptualLoss, device: &Device) -> Result<Self> {
        check(&config)?;
        let device = device.clone().autodiff();
        let models = TpsmmModels::new(&config.config, &device);
        Ok(Self {
            config,
            device,
            models,
            adam_avd: Adam::fomm(),
            perceptual,
        })
    }

    pub fn avd_network(&self) -> &AvdNetwork {
        // `new` builds it and `start_from` keeps one: a learner always has it.
        self.models.avd_network.as_ref().expect("the AVD learner's network")
    }

    /// The forward of one step with the per-image scales `theta` [b, 2] (x, y). Nothing is
    /// updated but the keypoint detector's running statistics.
    pub fn pass(&self, source: &Tensor<4>, driving: &Tensor<4>, theta: Tensor<2>) -> AvdPass {
        let detect = |image: &Tensor<4>| Keypoints {
            value: self.models.kp_detector.forward(image.clone()).value.detach(),
            jacobian: None,
        };
        self.reconstruct(detect(source), detect(driving), theta)
    }

    /// The AVD network's part of a step, from the detector's keypoints.
    pub fn reconstruct(&self, kp_source: Keypoints, kp_driving: Keypoints, theta: Tensor<2>) -> AvdPass {
        let [b, n, _] = kp_driving.value.dims();
        let scaled = Keypoints {
            value: kp_driving.value.clone() * theta.reshape([b, 1, 2]).expand([b, n, 2]),
            jacobian: None,
        };
        let reconstruction = self.avd_network().forward(&kp_source, &scaled);
        let rec_kp = (kp_driving.value.clone() - reconstruction.value.clone())
            .abs()
            .mean()
            .reshape([1])
            * self.config.train_avd.lambda_shift;
        AvdPass {
            kp_source,
            kp_driving,
            reconstruction,
            rec_kp,
        }
    }

    /// `random_scale`: θ = U(1 − s, 1 + s) for x and y of each of `batch` images, [b, 2].
    pub fn draw_scales(&self, batch: usize, rng: &mut Rng) -> Tensor<2> {
        let s = self.config.train_avd.random_scale;
        let theta: Vec<f32> = (0..batch * 2).map(|_| rng.range(1.0 - s, 1.0 + s) as f32).collect();
        Tensor::from_data(TensorData::new(theta, [batch, 2]), &self.device)
    }

    /// [`AvdLearner::step`] with the scales `theta` [b, 2] given.
    pub fn step_with_scales(
        &mut self,
        source: Tensor<4>,
        driving: Tensor<4>,
        epoch: usize,
        theta: Tensor<2>,
        snapshot: bool,
    ) -> (StepReport, Option<Snapshot>) {
        let start = std::time::Instant::now();
        let params = self.config.train_avd.clone();
        let lr = params.lr * params.lr_factor(epoch);
        let pass = self.pass(&source, &driving, theta);
        let values = scalars(&[("rec_kp", pass.rec_kp.clone())]);
        let skipped = !values.iter().all(|(_, v)| v.is_finite());
        if !skipped && let Some(avd) = self.models.avd_network.take() {
            let mut grads = pass.rec_kp.backward();
            let mut g = GradientsParams::from_module(&mut grads, &avd);
            self.models.avd_network = Some(self.adam_avd.step(lr, avd, &mut g));
        }
        let report = StepReport {
            step: 0,
            epoch: 0,
            lr,
            losses: values,
            mixed: false,
            skipped,
            seconds: start.elapsed().as_secs_f64(),
        };
        let snapshot = snapshot.then(|| self.snapshot(source, driving, &pass));
        (report, snapshot)
    }

    /// The first pair animated by the source's keypoints and the reconstruction, as
    /// `train_avd.py` visualises an epoch (no dropout, no background motion).
    fn snapshot(&self, source: Tensor<4>, driving: Tensor<4>, pass: &AvdPass) -> Snapshot {
        let first = |x: Tensor<4>| x.narrow(0, 0, 1);
        let kp = |k: &Keypoints| Keypoints {
            value: k.value.clone().narrow(0, 0, 1).detach(),
            jacobian: None,
        };
        let (kp_source, kp_driving) = (kp(&pass.kp_source), kp(&pass.reconstruction));
        let source = first(source);
        let motion = self
            .models
            .dense_motion_network
            .forward(source.clone(), &kp_driving, &kp_source, None, None);
        let generated = self.models.inpainting_network.forward(source.clone(), &motion);
        let (finest, coarser) = finest_and_coarser(&motion.occlusion_map);
        super::monitor::snapshot(
            self.config.prioritycut.variant,
            &self.config.prioritycut,
            None,
            StepTensors {
                source,
                driving: first(driving),
                deformed: generated.deformed,
                prediction: generated.prediction,
                background: motion.contribution_maps,
                occlusion: finest,
                coarser_occlusions: coarser,
                kp_source: kp_source.value,
                kp_driving: kp_driving.value,
                discriminator: DiscriminatorPass::none(),
            },
        )
    }
}

impl StepLearner for AvdLearner {
    fn device(&self) -> &Device {
        &self.device
    }

    fn variant(&self) -> Variant {
        self.config.prioritycut.variant
    }

    fn perceptual(&self) -> &PerceptualLoss {
        &self.perceptual
    }

    /// One step during `epoch`. A non-finite loss skips the update (reported). With
    /// `snapshot`, also returns the first pair animated by the reconstructed keypoints.
    fn step(
        &mut self,
        source: Tensor<4>,
        driving: Tensor<4>,
        epoch: usize,
        rng: &mut Rng,
        snapshot: bool,
    ) -> (StepReport, Option<Snapshot>) {
        let [b, _, _, _] = driving.dims();
        let theta = self.draw_scales(b, rng);
        self.step_with_scales(source, driving, epoch, theta, snapshot)
    }

    /// Writes the model and the AVD network's optimizer state into `dir`.
    fn save(&self, dir: &Path) -> Result<()> {
        save_burnpack(&self.models, &dir.join(MODEL_FILE))?;
        self.adam_avd.save(&dir.join(ADAM_AVD))
    }

    /// Reads what [`AvdLearner::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()> {
        load_burnpack(&mut self.models, &dir.join(MODEL_FILE), &["bg_predictor."], &[])?;
        self.adam_avd = Adam::load(&dir.join(ADAM_AVD), &self.device.clone().without_autodiff())?;
        Ok(())
    }

    /// Loads the trained model AVD training starts from (`train_avd.py` refuses to start
    /// without one): an official checkpoint, a `.bpk`, a run or a checkpoint folder. Its AVD
    /// network, where it has one, is trained on; otherwise a fresh one is.
    fn start_from(&mut self, path: &Path) -> Result<()> {
        let (weights, _) = resolve_checkpoint(path)?;
        let fresh_avd = self.models.avd_network.clone();
        load_weights(&weights, &mut self.models)?;
        if self.models.avd_network.is_none() {
            self.models.avd_network = fresh_avd;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainingMode;
    use crate::config::tpsmm::TpsmmAvdTrainParams;
    use crate::loss::PerceptualFeatures;
    use crate::test_support::noise_frames as frames;

    fn config() -> TpsmmConfigFile {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tpsmm-train/config.yaml");
        let mut config = TpsmmConfigFile::read(Path::new(path)).expect("fixture config");
        config.mode = TrainingMode::TrainAvd;
        config.train_avd = TpsmmAvdTrainParams::new().with_batch_size(2);
        config
    }

    fn learner() -> AvdLearner {
        let device = Device::flex();
        device.seed(0);
        let perceptual = PerceptualLoss::new(PerceptualFeatures::PixelPyramid, &[], &[], &device.clone().autodiff());
        AvdLearner::new(config(), perceptual, &device).expect("learner")
    }

    /// Only the AVD network moves; the detector's running statistics move too (train mode, as
    /// in `train_avd.py`), the other networks do not.
    #[test]
    fn a_step_moves_the_avd_network_only() {
        let mut l = learner();
        let before = l.models.clone();
        let (source, driving) = (frames(1, &l.device), frames(2, &l.device));
        let source = Tensor::cat(vec![source.clone(), source.flip([3])], 0);
        let driving = Tensor::cat(vec![driving.clone(), driving.flip([2])], 0);
        let (report, snapshot) = l.step(source, driving, 0, &mut Rng::seed(1), true);
        assert!(
            !report.skipped && report.loss("rec_kp").is_some_and(f64::is_finite),
            "{report:?}"
        );
        assert!(snapshot.is_some());
        let avd_weight = |m: &TpsmmModels| {
            let avd = m.avd_network.as_ref().expect("avd");
            avd.decoder.linears[0].weight.val().into_data()
        };
        let inpainting_weight = |m: &TpsmmModels| m.inpainting_network.final_conv.weight.val().into_data();
        assert_ne!(avd_weight(&before), avd_weight(&l.models));
        assert_eq!(inpainting_weight(&before), inpainting_weight(&l.models));
        assert!(!l.adam_avd.is_empty());
    }
}
