//! One training step of the Thin-Plate Spline Motion Model, as its `train.py` takes it
//! (`GeneratorFullModel`): keypoints, the background's affine motion from `bg_start`, dense
//! motion with the transformation dropout of the early epochs, the inpainting network, and the
//! losses
//!
//! `L = L_perceptual + L_equivariance + L_warp + L_bg` (TPSMM §3.4),
//!
//! then Adam (β = (0.5, 0.999), weight decay 1e-4) after the gradients of the keypoint
//! detector, the dense motion network and the background predictor are clipped (infinity norm
//! 10). The paper's variants add the U-Net discriminator ([`super::unet`]): its terms join the
//! objective and it takes its own step, with PriorityCut's mask from TPSMM's maps: the
//! background channel of the contribution maps (`M_bg`, channel 0) and the finest of the four
//! occlusion masks (the one the inpainting network blends the warped source with).

use std::path::Path;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::avd::AvdLearner;
use super::events::StepReport;
use super::family::{FamilyTraining, StepLearner, TrainingConfig, TrainingFamily};
use super::monitor::{StepTensors, finest_and_coarser, scalars};
use super::optim::{Adam, clip_gradients_max_abs};
use super::unet::{self, DiscriminatorPass, MixDraws, sum_losses};
use crate::augment::{RandomTps, TpsForm};
use crate::checkpoint::{MODEL_FILE, load_burnpack, save_burnpack};
use crate::config::tpsmm::{GRADIENT_CLIP, TpsmmConfigFile};
use crate::config::{DatasetParams, PriorityCutParams, TrainingMode, Variant};
use crate::loss::{PerceptualLoss, equivariance_value};
use crate::model::Keypoints;
use crate::model::tpsmm::{
    BgMotionPredictor, DenseMotion, DenseMotionNetwork, InpaintingNetwork, InpaintingOutput, KpDetector, TpsmmModels,
    TransformDropout,
};
use crate::model::unet_discriminator::{UNetDiscriminator, UNetDiscriminatorConfig};
use crate::render::Snapshot;
use crate::rng::Rng;
use crate::{EngineError, Result};

/// The networks a TPSMM run trains, saved together as `model.bpk` under TPSMM's names (so the
/// run's checkpoints open as a TPSMM model), and the U-Net discriminator of the U-Net variants.
#[derive(Module, Debug)]
pub struct TpsmmNetworks {
    pub kp_detector: KpDetector,
    pub dense_motion_network: DenseMotionNetwork,
    pub inpainting_network: InpaintingNetwork,
    pub bg_predictor: Option<BgMotionPredictor>,
    pub unet_discriminator: Option<UNetDiscriminator>,
}

impl TpsmmNetworks {
    pub fn init(config: &TpsmmConfigFile, variant: Variant, device: &Device) -> Self {
        let models = TpsmmModels::new(&config.config, device);
        Self {
            kp_detector: models.kp_detector,
            dense_motion_network: models.dense_motion_network,
            inpainting_network: models.inpainting_network,
            bg_predictor: models.bg_predictor,
            unet_discriminator: variant
                .unet()
                .then(|| UNetDiscriminatorConfig::from_discriminator(&config.discriminator).init(device)),
        }
    }
}

const ADAM_KP_DETECTOR: &str = "adam-kp-detector.safetensors";
const ADAM_DENSE_MOTION: &str = "adam-dense-motion.safetensors";
const ADAM_INPAINTING: &str = "adam-inpainting.safetensors";
const ADAM_BG_PREDICTOR: &str = "adam-bg-predictor.safetensors";
const ADAM_DISCRIMINATOR: &str = "adam-discriminator.safetensors";

/// Checks that `variant` can be trained with TPSMM's `config`, before anything is built.
pub fn check_variant(config: &TpsmmConfigFile, variant: Variant) -> Result<()> {
    let [h, w, c] = config.config.frame_shape;
    if c != 3 {
        return Err(EngineError::Invalid(format!(
            "training needs RGB frames, the config has {c} channels"
        )));
    }
    if variant == Variant::FommAdv {
        return Err(EngineError::Invalid(
            "fomm-adv is FOMM's keypoint-conditioned discriminator; with a TPSMM config train fomm (TPSMM as \
             published), unet, unet-cutmix or unet-prioritycut"
                .into(),
        ));
    }
    if variant.unet() {
        let factor = 1usize << config.discriminator.num_blocks;
        if h % factor != 0 || w % factor != 0 {
            return Err(EngineError::Invalid(format!(
                "the U-Net discriminator halves the frame {} times: {h}x{w} is not divisible by {factor} \
                 (lower model_params.discriminator_params.num_blocks)",
                config.discriminator.num_blocks
            )));
        }
    }
    Ok(())
}

/// The generator step's forward (`GeneratorFullModel.forward`).
#[derive(Debug, Clone)]
pub struct TpsmmGeneratorPass {
    /// `(name, weighted loss)`: perceptual, equivariance_value, warp_loss, bg, and the U-Net
    /// variants' gen_gan and feature_matching.
    pub losses: Vec<(&'static str, Tensor<1>)>,
    pub motion: DenseMotion,
    pub generated: InpaintingOutput,
    pub kp_source: Keypoints,
    pub kp_driving: Keypoints,
    /// [b, 3, 3] the background's affine motion, from `bg_start` on.
    pub bg_param: Option<Tensor<3>>,
    /// The driving frame under the equivariance transform, and its keypoints.
    pub transformed_frame: Option<Tensor<4>>,
    pub kp_transformed: Option<Keypoints>,
}

impl TpsmmGeneratorPass {
    /// The objective the keypoint detector, dense motion, inpainting and background networks
    /// descend.
    pub fn total(&self, device: &Device) -> Tensor<1> {
        sum_losses(&self.losses, device)
    }
}

/// TPSMM's networks, their optimizers and the losses: everything a step needs.
#[derive(Debug)]
pub struct TpsmmLearner {
    pub config: TpsmmConfigFile,
    pub variant: Variant,
    /// The autodiff device.
    pub device: Device,
    pub nets: TpsmmNetworks,
    pub adam_kp_detector: Adam,
    pub adam_dense_motion: Adam,
    pub adam_inpainting: Adam,
    pub adam_bg_predictor: Adam,
    pub adam_discriminator: Adam,
    pub perceptual: PerceptualLoss,
}

impl TpsmmLearner {
    /// Fresh networks on `device` (autodiff is enabled here).
    pub fn new(config: TpsmmConfigFile, perceptual: PerceptualLoss, device: &Device) -> Result<Self> {
        let variant = config.prioritycut.variant;
        check_variant(&config, variant)?;
        let device = device.clone().autodiff();
        let nets = TpsmmNetworks::init(&config, variant, &device);
        Ok(Self {
            config,
            variant,
            device,
            nets,
            adam_kp_detector: Adam::tpsmm(),
            adam_dense_motion: Adam::tpsmm(),
            adam_inpainting: Adam::tpsmm(),
            adam_bg_predictor: Adam::tpsmm(),
            // The discriminator is ours, trained as FOMM+'s.
            adam_discriminator: Adam::fomm(),
            perceptual,
        })
    }

    fn optimizers(&self) -> [(&'static str, &Adam); 5] {
        [
            (ADAM_KP_DETECTOR, &self.adam_kp_detector),
            (ADAM_DENSE_MOTION, &self.adam_dense_motion),
            (ADAM_INPAINTING, &self.adam_inpainting),
            (ADAM_BG_PREDICTOR, &self.adam_bg_predictor),
            (ADAM_DISCRIMINATOR, &self.adam_discriminator),
        ]
    }

    /// The generator step's forward at `epoch` (which sets the dropout and whether the
    /// background moves) under the equivariance `transform` (TPSMM's form), the dropout deciding
    /// by `dropout_draws` (uniform, [b][K+1]). Nothing is updated.
    pub fn generator_pass(
        &self,
        source: &Tensor<4>,
        driving: &Tensor<4>,
        transform: &RandomTps,
        epoch: usize,
        dropout_draws: &[f32],
    ) -> TpsmmGeneratorPass {
        let train = &self.config.train;
        let weights = &train.loss_weights;
        let nets = &self.nets;
        let kp_source = nets.kp_detector.forward(source.clone());
        let kp_driving = nets.kp_detector.forward(driving.clone());
        let background = nets.bg_predictor.as_ref().filter(|_| train.background_motion(epoch));
        let bg_param = background.map(|bg| bg.forward(source.clone(), driving.clone()));
        let dropout = train.dropout_probability(epoch).map(|probability| TransformDropout {
            probability,
            draws: dropout_draws.to_vec(),
        });
        let motion =
            nets.dense_motion_network
                .forward(source.clone(), &kp_driving, &kp_source, bg_param.as_ref(), dropout);
        let generated = nets.inpainting_network.forward(source.clone(), &motion);
        let prediction = &generated.prediction;

        let mut losses: Vec<(&'static str, Tensor<1>)> = Vec::new();
        if self.perceptual.enabled() {
            losses.push(("perceptual", self.perceptual.forward(prediction, driving)));
        }
        let mut transformed_frame = None;
        let mut kp_transformed = None;
        if weights.equivariance_value != 0.0 {
            let frame = transform.transform_frame(driving.clone());
            let kp = nets.kp_detector.forward(frame.clone());
            let value = equivariance_value(&kp_driving.value, transform, &kp.value);
            losses.push(("equivariance_value", value * weights.equivariance_value));
            transformed_frame = Some(frame);
            kp_transformed = Some(kp);
        }
        if weights.warp_loss != 0.0 {
            let value = self.warp_loss(driving, &motion, &generated);
            losses.push(("warp_loss", value * weights.warp_loss));
        }
        if let (Some(bg), Some(forward), true) = (background, &bg_param, weights.bg != 0.0) {
            // There and back again: A(S→D)·A(D→S) should be the identity.
            let reverse = bg.forward(driving.clone(), source.clone());
            let [b, _, _] = forward.dims();
            let product = forward.clone().matmul(reverse);
            let eye = Tensor::<2>::eye(3, &self.device).reshape([1, 3, 3]).repeat_dim(0, b);
            losses.push(("bg", (eye - product).abs().mean() * weights.bg));
        }
        let gan_weight = self.generator_gan_weight();
        if let (Some(unet_net), true) = (&nets.unet_discriminator, gan_weight > 0.0) {
            losses.extend(unet::generator_terms(
                unet_net,
                prediction,
                driving,
                gan_weight,
                self.config.prioritycut.decoder_weight,
                &weights.feature_matching,
                &self.device,
            ));
        }
        TpsmmGeneratorPass {
            losses,
            motion,
            generated,
            kp_source,
            kp_driving,
            bg_param,
            transformed_frame,
            kp_transformed,
        }
    }

    /// The warp loss, unweighted: the driving frame's own encoder levels against the source's
    /// warped ones, level by level, `Σ_i mean|E_i(D) ⊙ Ô_i − T̃(E_i(S)) ⊙ Ô_i|` (gradient to the
    /// flow only).
    pub fn warp_loss(&self, driving: &Tensor<4>, motion: &DenseMotion, generated: &InpaintingOutput) -> Tensor<1> {
        let targets = self
            .nets
            .inpainting_network
            .encode_driving(driving.clone(), &motion.occlusion_map);
        let warped = generated.warped_encoder_maps.iter().rev();
        targets
            .into_iter()
            .zip(warped)
            .map(|(target, warped)| (target - warped.clone()).abs().mean())
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([1], &self.device))
    }

    /// The U-Net variants' generator adversarial weight (none for TPSMM as published).
    fn generator_gan_weight(&self) -> f64 {
        let configured = self.config.train.loss_weights.generator_gan;
        self.config.prioritycut.generator_gan_weight(configured)
    }

    /// The U-Net discriminator's step on the pass's prediction (detached), with a CutMix `mask`
    /// when the step mixes.
    pub fn discriminator_pass(
        &self,
        driving: &Tensor<4>,
        pass: &TpsmmGeneratorPass,
        mask: Option<Tensor<4>>,
    ) -> DiscriminatorPass {
        let mut out = DiscriminatorPass::none();
        if let (Some(unet_net), true) = (&self.nets.unet_discriminator, self.generator_gan_weight() > 0.0) {
            let fake = pass.generated.prediction.clone().detach();
            let weight = self.config.train.loss_weights.discriminator_gan;
            unet::discriminator_terms(
                unet_net,
                driving,
                fake,
                mask,
                weight,
                &self.config.prioritycut,
                &mut out,
            );
        }
        out
    }
}

/// TPSMM's training (`train.py` with the paper's variants, and `train_avd.py`), registered in
/// [`super::family::TRAINING_FAMILIES`].
#[derive(Debug)]
pub struct TpsmmTraining;

impl TrainingFamily for TpsmmTraining {
    fn name(&self) -> &'static str {
        "TPSMM"
    }

    fn read_config(&self, path: &Path) -> Result<(TrainingConfig, Vec<String>)> {
        let mut file = TpsmmConfigFile::read(path)?;
        let ignored = std::mem::take(&mut file.ignored_keys);
        Ok((TrainingConfig::new(file), ignored))
    }
}

impl From<TpsmmConfigFile> for TrainingConfig {
    fn from(config: TpsmmConfigFile) -> Self {
        TrainingConfig::new(config)
    }
}

impl FamilyTraining for TpsmmConfigFile {
    fn family(&self) -> &'static str {
        TpsmmTraining.name()
    }

    fn frame_shape(&self) -> [usize; 3] {
        self.config.frame_shape
    }

    fn dataset(&self) -> &DatasetParams {
        &self.dataset
    }

    fn prioritycut(&self) -> &PriorityCutParams {
        &self.prioritycut
    }

    fn prioritycut_mut(&mut self) -> &mut PriorityCutParams {
        &mut self.prioritycut
    }

    fn mode(&self) -> TrainingMode {
        self.mode
    }

    fn set_mode(&mut self, mode: TrainingMode) -> Result<()> {
        self.mode = mode;
        Ok(())
    }

    /// `train_avd_params`' when the run trains the AVD network.
    fn schedule(&self) -> (usize, usize, usize) {
        if self.trains_avd() {
            let t = &self.train_avd;
            (t.num_epochs, t.num_repeats, t.batch_size)
        } else {
            (self.train.num_epochs, self.train.num_repeats, self.train.batch_size)
        }
    }

    fn batches_mut(&mut self) -> (&mut usize, &mut usize) {
        if self.trains_avd() {
            (&mut self.train_avd.batch_size, &mut self.train_avd.num_repeats)
        } else {
            (&mut self.train.batch_size, &mut self.train.num_repeats)
        }
    }

    /// None for the AVD network: its loss is on keypoints.
    fn perceptual(&self) -> (&[f64], &[f64]) {
        if self.trains_avd() {
            (&[], &[])
        } else {
            (&self.train.scales, &self.train.loss_weights.perceptual)
        }
    }

    /// The background predictor on and the dropout over (epochs 35 to 100 of `vox-256.yaml`).
    fn steady_epoch(&self) -> usize {
        self.train.bg_start.max(self.train.dropout_epoch)
    }

    fn to_yaml(&self) -> String {
        TpsmmConfigFile::to_yaml(self)
    }

    fn resized(&self, size: usize) -> std::result::Result<TrainingConfig, String> {
        let mut config = self.clone();
        config.config.frame_shape = [size, size, 3];
        crate::config::tpsmm::parse(&config.to_yaml()).map(TrainingConfig::new)
    }

    fn check(&self) -> Result<()> {
        if self.trains_avd() {
            super::avd::check(self)
        } else {
            check_variant(self, self.prioritycut.variant)
        }
    }

    fn learner(&self, perceptual: PerceptualLoss, device: &Device) -> Result<Box<dyn StepLearner>> {
        Ok(if self.trains_avd() {
            Box::new(AvdLearner::new(self.clone(), perceptual, device)?)
        } else {
            Box::new(TpsmmLearner::new(self.clone(), perceptual, device)?)
        })
    }

    fn boxed_clone(&self) -> Box<dyn FamilyTraining> {
        Box::new(self.clone())
    }
}

impl StepLearner for TpsmmLearner {
    fn device(&self) -> &Device {
        &self.device
    }

    fn variant(&self) -> Variant {
        self.variant
    }

    fn perceptual(&self) -> &PerceptualLoss {
        &self.perceptual
    }

    /// One generator step and one discriminator step on `source`/`driving` [b, 3, h, w] during
    /// `epoch`, drawing its random choices from `rng` (the TPS transform, then whether to CutMix,
    /// k, and the box, then the dropout's draws). Non-finite losses skip the update
    /// (reported). With `snapshot`, also returns the first pair's images and maps.
    fn step(
        &mut self,
        source: Tensor<4>,
        driving: Tensor<4>,
        epoch: usize,
        rng: &mut Rng,
        snapshot: bool,
    ) -> (StepReport, Option<Snapshot>) {
        let start = std::time::Instant::now();
        let [b, _, h, w] = driving.dims();
        let train = self.config.train.clone();
        let lr = train.lr_generator * train.lr_factor(epoch);
        let transform = RandomTps::sample(b, &train.transform_params, rng).in_form(TpsForm::Tpsmm);
        let draws = MixDraws::draw(self.variant, &self.config.prioritycut, b, (h, w), rng, &self.device);
        let transformations = self.config.config.num_tps + 1;
        let dropout_draws: Vec<f32> = (0..b * transformations).map(|_| rng.uniform() as f32).collect();

        let pass = self.generator_pass(&source, &driving, &transform, epoch, &dropout_draws);
        let l1 = f64::from(
            (pass.generated.prediction.clone() - driving.clone())
                .abs()
                .mean()
                .into_scalar::<f32>(),
        );
        let generator_values = scalars(&pass.losses);
        let mut skipped = !generator_values.iter().all(|(_, v)| v.is_finite());
        if !skipped {
            let mut grads = pass.total(&self.device).backward();
            let nets = &mut self.nets;
            let mut kp = GradientsParams::from_module(&mut grads, &nets.kp_detector);
            let mut dense = GradientsParams::from_module(&mut grads, &nets.dense_motion_network);
            let mut inpainting = GradientsParams::from_module(&mut grads, &nets.inpainting_network);
            clip_gradients_max_abs(&nets.kp_detector, &mut kp, GRADIENT_CLIP);
            clip_gradients_max_abs(&nets.dense_motion_network, &mut dense, GRADIENT_CLIP);
            nets.kp_detector = self.adam_kp_detector.step(lr, nets.kp_detector.clone(), &mut kp);
            nets.dense_motion_network = self
                .adam_dense_motion
                .step(lr, nets.dense_motion_network.clone(), &mut dense);
            nets.inpainting_network = self
                .adam_inpainting
                .step(lr, nets.inpainting_network.clone(), &mut inpainting);
            // Before bg_start the background predictor neither runs nor steps.
            if pass.bg_param.is_some()
                && let Some(bg) = nets.bg_predictor.take()
            {
                let mut g = GradientsParams::from_module(&mut grads, &bg);
                clip_gradients_max_abs(&bg, &mut g, GRADIENT_CLIP);
                nets.bg_predictor = Some(self.adam_bg_predictor.step(lr, bg, &mut g));
            }
        }

        let disc = if skipped {
            DiscriminatorPass::none()
        } else {
            let mask = draws.mix.then(|| {
                unet::cutmix_mask(
                    &self.config.prioritycut,
                    pass.motion.contribution_maps.clone(),
                    pass.motion.occlusion_map.last().cloned(),
                    (h, w),
                    &draws.k,
                    draws.box_mask,
                )
            });
            self.discriminator_pass(&driving, &pass, mask)
        };
        let disc_values = scalars(&disc.losses);
        let disc_ok = disc_values.iter().all(|(_, v)| v.is_finite());
        skipped |= !disc_ok;
        if !disc.losses.is_empty() && disc_ok {
            let mut grads = disc.total(&self.device).backward();
            let lr = train.lr_discriminator * train.lr_factor(epoch);
            if let Some(u) = self.nets.unet_discriminator.take() {
                let mut g = GradientsParams::from_module(&mut grads, &u);
                self.nets.unet_discriminator = Some(self.adam_discriminator.step(lr, u, &mut g));
            }
        }

        let report = StepReport::of_step(
            generator_values,
            disc_values,
            l1,
            lr,
            disc.cutmix.is_some(),
            skipped,
            start.elapsed().as_secs_f64(),
        );
        let snapshot = snapshot.then(|| {
            let (occlusion, coarser_occlusions) = finest_and_coarser(&pass.motion.occlusion_map);
            super::monitor::snapshot(
                self.variant,
                &self.config.prioritycut,
                self.nets.unet_discriminator.as_ref(),
                StepTensors {
                    source,
                    driving,
                    deformed: pass.generated.deformed,
                    prediction: pass.generated.prediction,
                    background: pass.motion.contribution_maps,
                    occlusion,
                    coarser_occlusions,
                    kp_source: pass.kp_source.value,
                    kp_driving: pass.kp_driving.value,
                    discriminator: disc,
                },
            )
        });
        (report, snapshot)
    }

    /// Writes networks and optimizer states into `dir`.
    fn save(&self, dir: &Path) -> Result<()> {
        save_burnpack(&self.nets, &dir.join(MODEL_FILE))?;
        for (file, adam) in self.optimizers() {
            adam.save(&dir.join(file))?;
        }
        Ok(())
    }

    /// Reads what [`TpsmmLearner::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()> {
        load_burnpack(&mut self.nets, &dir.join(MODEL_FILE), &[], &[])?;
        // Optimizer state lives outside the graph.
        let plain = self.device.clone().without_autodiff();
        self.adam_kp_detector = Adam::load(&dir.join(ADAM_KP_DETECTOR), &plain)?;
        self.adam_dense_motion = Adam::load(&dir.join(ADAM_DENSE_MOTION), &plain)?;
        self.adam_inpainting = Adam::load(&dir.join(ADAM_INPAINTING), &plain)?;
        self.adam_bg_predictor = Adam::load(&dir.join(ADAM_BG_PREDICTOR), &plain)?;
        self.adam_discriminator = Adam::load(&dir.join(ADAM_DISCRIMINATOR), &plain)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::PerceptualFeatures;
    use crate::test_support::noise_frames as frames;

    fn small_config(variant: Variant) -> TpsmmConfigFile {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tpsmm-train/config.yaml");
        let mut config = TpsmmConfigFile::read(Path::new(path)).expect("fixture config");
        config.prioritycut.variant = variant;
        config.prioritycut.cutmix_probability = 1.0;
        config.discriminator.num_blocks = 3;
        config
    }

    fn learner(config: &TpsmmConfigFile) -> TpsmmLearner {
        let device = Device::flex();
        let perceptual = PerceptualLoss::new(
            PerceptualFeatures::PixelPyramid,
            &config.train.scales,
            &config.train.loss_weights.perceptual,
            &device.clone().autodiff(),
        );
        device.seed(0);
        TpsmmLearner::new(config.clone(), perceptual, &device).expect("learner")
    }

    /// From `bg_start` on every network steps, the background predictor included; before it,
    /// the background predictor neither runs nor moves (and stays in the model).
    #[test]
    fn the_background_predictor_joins_at_bg_start() {
        let mut l = learner(&small_config(Variant::UnetPrioritycut));
        let (source, driving) = (frames(1, &l.device), frames(2, &l.device));
        let (early, _) = l.step(source.clone(), driving.clone(), 0, &mut Rng::seed(3), false);
        assert!(!early.skipped && early.mixed, "{early:?}");
        assert!(early.loss("bg").is_none() && early.loss("warp_loss").is_some());
        assert!(l.nets.bg_predictor.is_some() && l.adam_bg_predictor.is_empty());
        assert!(!l.adam_dense_motion.is_empty() && !l.adam_discriminator.is_empty());
        let (late, _) = l.step(source, driving, 40, &mut Rng::seed(4), false);
        assert!(late.loss("bg").is_some_and(f64::is_finite), "{late:?}");
        assert!(!l.adam_bg_predictor.is_empty());
    }

    /// Saving, loading into fresh networks and continuing gives the same losses as never
    /// stopping, step for step, with the transformation dropout drawing (epoch 0).
    #[test]
    fn saved_and_reloaded_learner_continues_exactly() {
        let config = small_config(Variant::UnetPrioritycut);
        let mut straight = learner(&config);
        let device = straight.device.clone();
        let step = |l: &mut TpsmmLearner, i: u64| {
            let (source, driving) = (frames(10 + i, &device), frames(20 + i, &device));
            l.step(source, driving, 0, &mut Rng::derive(&[i]), false).0
        };
        for i in 0..2 {
            step(&mut straight, i);
        }
        let dir = crate::test_support::temp_dir("tpsmm-learner");
        straight.save(&dir).expect("save");
        let mut resumed = learner(&config);
        resumed.load(&dir).expect("load");
        for i in 2..4 {
            let (a, b) = (step(&mut straight, i), step(&mut resumed, i));
            assert_eq!(a.losses, b.losses, "step {i}");
        }
    }
}
