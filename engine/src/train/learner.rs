//! One training step of the paper's models: FOMM's generator step (`GeneratorFullModel`:
//! keypoints, generator, perceptual, adversarial, feature-matching and equivariance losses,
//! Adam on the generator and the keypoint detector), then the discriminator step
//! (`DiscriminatorFullModel`, or the U-Net discriminator's encoder, decoder, CutMix and
//! consistency losses). The learner holds the networks and their optimizers; where batches come
//! from and where checkpoints go is the [`Trainer`](super::Trainer)'s business.

use std::path::Path;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::events::StepReport;
use super::family::{FamilyTraining, StepLearner, TrainingConfig, TrainingFamily};
use super::monitor::{StepTensors, scalars};
use super::optim::Adam;
use super::stages::StageClock;
use super::unet::{self, DiscriminatorPass, MixDraws, sum_losses};
use crate::augment::RandomTps;
use crate::checkpoint::{MODEL_FILE, load_burnpack, save_burnpack};
use crate::config::{DatasetParams, FommConfig, PriorityCutParams, Variant};
use crate::loss::{
    ImagePyramid, PerceptualLoss, equivariance_jacobian, equivariance_value, feature_matching, lsgan_fake, lsgan_real,
};
use crate::model::unet_discriminator::{UNetDiscriminator, UNetDiscriminatorConfig};
use crate::model::{GeneratorOutput, Keypoints, KpDetector, MultiScaleDiscriminator, OcclusionAwareGenerator};
use crate::render::Snapshot;
use crate::rng::Rng;
use crate::{EngineError, Result};

/// The networks a run trains, saved together as `model.bpk`: FOMM's three (the multi-scale
/// discriminator only for FOMM+) and the U-Net discriminator for the U-Net variants.
#[derive(Module, Debug)]
pub struct Networks {
    pub kp_detector: KpDetector,
    pub generator: OcclusionAwareGenerator,
    pub discriminator: Option<MultiScaleDiscriminator>,
    pub unet_discriminator: Option<UNetDiscriminator>,
}

impl Networks {
    pub fn init(config: &FommConfig, variant: Variant, device: &Device) -> Self {
        Self {
            kp_detector: config.kp_detector.init(device),
            generator: config.generator.init(device),
            discriminator: (variant == Variant::FommAdv).then(|| config.discriminator.init(device)),
            unet_discriminator: variant
                .unet()
                .then(|| UNetDiscriminatorConfig::from_discriminator(&config.discriminator).init(device)),
        }
    }
}

pub const ADAM_KP_DETECTOR: &str = "adam-kp-detector.safetensors";
pub const ADAM_GENERATOR: &str = "adam-generator.safetensors";
pub const ADAM_DISCRIMINATOR: &str = "adam-discriminator.safetensors";

/// Checks that `variant` can be trained with `config`, before anything is built.
pub fn check_variant(config: &FommConfig, variant: Variant) -> Result<()> {
    let [h, w, c] = config.frame_shape;
    if c != 3 {
        return Err(EngineError::Invalid(format!(
            "training needs RGB frames, the config has {c} channels"
        )));
    }
    if variant == Variant::UnetPrioritycut && !config.generator.estimate_occlusion_map {
        return Err(EngineError::Invalid(
            "unet-prioritycut needs the occlusion map: set generator_params.estimate_occlusion_map".into(),
        ));
    }
    if variant.unet() {
        let factor = 1usize << config.discriminator.num_blocks;
        if h % factor != 0 || w % factor != 0 {
            return Err(EngineError::Invalid(format!(
                "the U-Net discriminator halves the frame {} times: {h}x{w} is not divisible by {factor} \
                 (lower discriminator_params.num_blocks)",
                config.discriminator.num_blocks
            )));
        }
    }
    Ok(())
}

/// The networks, their optimizers and the losses: everything a step needs.
#[derive(Debug)]
pub struct Learner {
    pub config: FommConfig,
    pub variant: Variant,
    /// The autodiff device.
    pub device: Device,
    pub nets: Networks,
    pub adam_kp_detector: Adam,
    pub adam_generator: Adam,
    pub adam_discriminator: Adam,
    pub perceptual: PerceptualLoss,
    disc_pyramid: ImagePyramid,
    stages: StageClock,
}

/// The generator step's forward.
#[derive(Debug, Clone)]
pub struct GeneratorPass {
    /// `(name, weighted loss)`: perceptual, gen_gan, feature_matching, equivariance_*.
    pub losses: Vec<(&'static str, Tensor<1>)>,
    pub generated: GeneratorOutput,
    pub kp_source: Keypoints,
    pub kp_driving: Keypoints,
    /// The driving frame under the equivariance transform, and its keypoints.
    pub transformed_frame: Option<Tensor<4>>,
    pub kp_transformed: Option<Keypoints>,
}

impl GeneratorPass {
    /// The objective the generator and keypoint detector descend.
    pub fn total(&self, device: &Device) -> Tensor<1> {
        sum_losses(&self.losses, device)
    }
}

impl Learner {
    /// Fresh networks on `device` (autodiff is enabled here).
    pub fn new(config: FommConfig, perceptual: PerceptualLoss, device: &Device) -> Result<Self> {
        let variant = config.prioritycut.variant;
        check_variant(&config, variant)?;
        let device = device.clone().autodiff();
        let nets = Networks::init(&config, variant, &device);
        let disc_pyramid = ImagePyramid::new(&config.discriminator.scales, 3, &device);
        Ok(Self {
            config,
            variant,
            device,
            nets,
            adam_kp_detector: Adam::fomm(),
            adam_generator: Adam::fomm(),
            adam_discriminator: Adam::fomm(),
            perceptual,
            disc_pyramid,
            stages: StageClock::default(),
        })
    }

    /// The generator step's forward (`GeneratorFullModel`): keypoints, generator, and every
    /// generator loss under the equivariance `transform`. Nothing is updated.
    pub fn generator_pass(&self, source: &Tensor<4>, driving: &Tensor<4>, transform: &RandomTps) -> GeneratorPass {
        let weights = &self.config.train.loss_weights;
        let pc = &self.config.prioritycut;
        let gan_weight = pc.generator_gan(weights);
        let nets = &self.nets;
        let lap = |stage| self.stages.lap(stage, &self.device);
        let kp_source = nets.kp_detector.forward(source.clone());
        let kp_driving = nets.kp_detector.forward(driving.clone());
        lap("keypoints (source, driving)");
        let generated = nets.generator.forward(source.clone(), &kp_driving, &kp_source);
        let prediction = generated.prediction.clone();
        lap("generator (dense motion, warp, decoder)");
        let mut losses: Vec<(&'static str, Tensor<1>)> = Vec::new();
        if self.perceptual.enabled() {
            losses.push(("perceptual", self.perceptual.forward(&prediction, driving)));
            lap("perceptual loss");
        }
        if gan_weight > 0.0 {
            losses.extend(self.adversarial_terms(&prediction, driving, &kp_driving.value.clone().detach()));
            lap("adversarial terms");
        }
        let mut transformed_frame = None;
        let mut kp_transformed = None;
        if weights.equivariance_value != 0.0 || weights.equivariance_jacobian != 0.0 {
            let frame = transform.transform_frame(driving.clone());
            let kp = nets.kp_detector.forward(frame.clone());
            if weights.equivariance_value != 0.0 {
                let value = equivariance_value(&kp_driving.value, transform, &kp.value);
                losses.push(("equivariance_value", value * weights.equivariance_value));
            }
            if let (true, Some(jd), Some(jt)) =
                (weights.equivariance_jacobian != 0.0, &kp_driving.jacobian, &kp.jacobian)
            {
                let value = equivariance_jacobian(jd, transform, &kp.value, jt);
                losses.push(("equivariance_jacobian", value * weights.equivariance_jacobian));
            }
            transformed_frame = Some(frame);
            kp_transformed = Some(kp);
            lap("equivariance (keypoints of the transformed frame)");
        }
        GeneratorPass {
            losses,
            generated,
            kp_source,
            kp_driving,
            transformed_frame,
            kp_transformed,
        }
    }

    /// The generator's adversarial terms for `prediction` against the real `driving` frame:
    /// gen_gan and feature_matching from each discriminator the variant has (`kp_driving`,
    /// detached, conditions FOMM's discriminator where `use_kp` is set). Each call moves the
    /// spectrally normalised discriminator's power-iteration state, as torch's forward does.
    pub fn adversarial_terms(
        &self,
        prediction: &Tensor<4>,
        driving: &Tensor<4>,
        kp_driving: &Tensor<3>,
    ) -> Vec<(&'static str, Tensor<1>)> {
        let weights = &self.config.train.loss_weights;
        let pc = &self.config.prioritycut;
        let gan_weight = pc.generator_gan(weights);
        let nets = &self.nets;
        let mut losses = Vec::new();
        if let Some(disc) = &nets.discriminator {
            let fake = disc.forward(&self.disc_pyramid.forward(prediction), Some(kp_driving));
            let real = disc.forward(&self.disc_pyramid.forward(driving), Some(kp_driving));
            let mut gan = Tensor::<1>::zeros([1], &self.device);
            let mut matching = Tensor::<1>::zeros([1], &self.device);
            for (f, r) in fake.iter().zip(&real) {
                gan = gan + lsgan_real(f.prediction_map.clone()) * gan_weight;
                matching = matching
                    + feature_matching(
                        &r.feature_maps,
                        &f.feature_maps,
                        &weights.feature_matching,
                        &self.device,
                    );
            }
            losses.push(("gen_gan", gan));
            if weights.feature_matching.iter().any(|&w| w != 0.0) {
                losses.push(("feature_matching", matching));
            }
        }
        if let Some(unet) = &nets.unet_discriminator {
            losses.extend(unet::generator_terms(
                unet,
                prediction,
                driving,
                gan_weight,
                pc.decoder_weight,
                &weights.feature_matching,
                &self.device,
            ));
        }
        losses
    }

    /// The CutMix mask of a step: PriorityCut's from the pass's dense motion (`unet-prioritycut`)
    /// or the given box (`unet-cutmix`). 1 marks the real pixels of the mix.
    pub fn cutmix_mask(&self, pass: &GeneratorPass, k: &[f64], box_mask: Option<Tensor<4>>) -> Tensor<4> {
        let [_, _, h, w] = pass.generated.prediction.dims();
        unet::cutmix_mask(
            &self.config.prioritycut,
            pass.generated.mask.clone(),
            pass.generated.occlusion_map.clone(),
            (h, w),
            k,
            box_mask,
        )
    }

    /// The discriminator step's forward (`DiscriminatorFullModel`, or the U-Net's encoder,
    /// decoder, and with a CutMix `mask` its mix and consistency terms) on the pass's
    /// prediction, detached.
    pub fn discriminator_pass(
        &self,
        driving: &Tensor<4>,
        pass: &GeneratorPass,
        mask: Option<Tensor<4>>,
    ) -> DiscriminatorPass {
        let weights = &self.config.train.loss_weights;
        let pc = &self.config.prioritycut;
        let d_weight = weights.discriminator_gan;
        let fake_image = pass.generated.prediction.clone().detach();
        let kp_detached = pass.kp_driving.value.clone().detach();
        let mut out = DiscriminatorPass::none();
        if pc.generator_gan(weights) <= 0.0 {
            return out;
        }
        if let Some(disc) = &self.nets.discriminator {
            let fake = disc.forward(&self.disc_pyramid.forward(&fake_image), Some(&kp_detached));
            let real = disc.forward(&self.disc_pyramid.forward(driving), Some(&kp_detached));
            let mut total = Tensor::<1>::zeros([1], &self.device);
            for (f, r) in fake.into_iter().zip(real) {
                total = total + (lsgan_real(r.prediction_map) + lsgan_fake(f.prediction_map)) * d_weight;
            }
            out.losses.push(("disc_gan", total));
        }
        if let Some(unet) = &self.nets.unet_discriminator {
            unet::discriminator_terms(unet, driving, fake_image, mask, d_weight, pc, &mut out);
        }
        out
    }

    /// One generator step and one discriminator step on `source`/`driving` [b, 3, h, w],
    /// drawing its random choices from `rng` (the TPS transform, then whether to CutMix, k, and
    /// the box). Non-finite losses skip the update (reported). With `snapshot`, also returns
    /// the first pair's images and maps.
    pub fn step(
        &mut self,
        source: Tensor<4>,
        driving: Tensor<4>,
        lr_factor: f64,
        rng: &mut Rng,
        snapshot: bool,
    ) -> (StepReport, Option<Snapshot>) {
        let start = std::time::Instant::now();
        self.stages.restart();
        let [b, _, h, w] = driving.dims();
        let train = self.config.train.clone();
        let transform = RandomTps::sample(b, &train.transform_params, rng);
        let draws = MixDraws::draw(self.variant, &self.config.prioritycut, b, (h, w), rng, &self.device);

        let pass = self.generator_pass(&source, &driving, &transform);
        let l1 = f64::from(
            (pass.generated.prediction.clone() - driving.clone())
                .abs()
                .mean()
                .into_scalar::<f32>(),
        );
        let generator_values = scalars(&pass.losses);
        self.stages.lap("losses read back", &self.device);
        let mut skipped = !generator_values.iter().all(|(_, v)| v.is_finite());
        if !skipped {
            let mut grads = pass.total(&self.device).backward();
            self.stages.lap("backward (generator's objective)", &self.device);
            let mut generator_grads = GradientsParams::from_module(&mut grads, &self.nets.generator);
            let mut kp_grads = GradientsParams::from_module(&mut grads, &self.nets.kp_detector);
            let generator = self.nets.generator.clone();
            self.nets.generator =
                self.adam_generator
                    .step(train.lr_generator * lr_factor, generator, &mut generator_grads);
            if train.lr_kp_detector != 0.0 {
                let kp = self.nets.kp_detector.clone();
                self.nets.kp_detector = self
                    .adam_kp_detector
                    .step(train.lr_kp_detector * lr_factor, kp, &mut kp_grads);
            }
            self.stages.lap("Adam (generator, keypoint detector)", &self.device);
        }

        let disc = if skipped {
            DiscriminatorPass::none()
        } else {
            let mask = draws.mix.then(|| self.cutmix_mask(&pass, &draws.k, draws.box_mask));
            self.discriminator_pass(&driving, &pass, mask)
        };
        let disc_values = scalars(&disc.losses);
        let disc_ok = disc_values.iter().all(|(_, v)| v.is_finite());
        skipped |= !disc_ok;
        if !disc.losses.is_empty() && disc_ok {
            let mut grads = disc.total(&self.device).backward();
            let lr = train.lr_discriminator * lr_factor;
            if let Some(d) = self.nets.discriminator.take() {
                let mut g = GradientsParams::from_module(&mut grads, &d);
                self.nets.discriminator = Some(self.adam_discriminator.step(lr, d, &mut g));
            }
            if let Some(u) = self.nets.unet_discriminator.take() {
                let mut g = GradientsParams::from_module(&mut grads, &u);
                self.nets.unet_discriminator = Some(self.adam_discriminator.step(lr, u, &mut g));
            }
            self.stages.lap("discriminator step", &self.device);
        }

        let report = StepReport::of_step(
            generator_values,
            disc_values,
            l1,
            train.lr_generator * lr_factor,
            disc.cutmix.is_some(),
            skipped,
            start.elapsed().as_secs_f64(),
        );
        let snapshot = snapshot.then(|| {
            super::monitor::snapshot(
                self.variant,
                &self.config.prioritycut,
                self.nets.unet_discriminator.as_ref(),
                StepTensors {
                    deformed: pass.generated.deformed(source.clone()),
                    source,
                    driving,
                    prediction: pass.generated.prediction,
                    background: pass.generated.mask,
                    occlusion: pass.generated.occlusion_map,
                    coarser_occlusions: Vec::new(),
                    kp_source: pass.kp_source.value,
                    kp_driving: pass.kp_driving.value,
                    discriminator: disc,
                },
            )
        });
        (report, snapshot)
    }
}

/// Uploads a batch's planar floats.
pub fn batch_tensor(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// FOMM's training (`train.py`, with the paper's variants), registered in
/// [`super::family::TRAINING_FAMILIES`].
#[derive(Debug)]
pub struct FommTraining;

impl TrainingFamily for FommTraining {
    fn name(&self) -> &'static str {
        "FOMM"
    }

    fn read_config(&self, path: &Path) -> Result<(TrainingConfig, Vec<String>)> {
        let file = FommConfig::read_yaml_file(path)?;
        Ok((TrainingConfig::new(file.config), file.ignored_keys))
    }
}

impl From<FommConfig> for TrainingConfig {
    fn from(config: FommConfig) -> Self {
        TrainingConfig::new(config)
    }
}

impl FamilyTraining for FommConfig {
    fn family(&self) -> &'static str {
        FommTraining.name()
    }

    fn frame_shape(&self) -> [usize; 3] {
        self.frame_shape
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

    fn schedule(&self) -> (usize, usize, usize) {
        (self.train.num_epochs, self.train.num_repeats, self.train.batch_size)
    }

    fn batches_mut(&mut self) -> (&mut usize, &mut usize) {
        (&mut self.train.batch_size, &mut self.train.num_repeats)
    }

    fn perceptual(&self) -> (&[f64], &[f64]) {
        (&self.train.scales, &self.train.loss_weights.perceptual)
    }

    fn to_yaml(&self) -> String {
        FommConfig::to_yaml(self)
    }

    fn resized(&self, size: usize) -> std::result::Result<TrainingConfig, String> {
        let mut config = self.clone();
        config.frame_shape = [size, size, 3];
        FommConfig::from_yaml_str(&config.to_yaml()).map(TrainingConfig::new)
    }

    fn check(&self) -> Result<()> {
        check_variant(self, self.prioritycut.variant)
    }

    fn learner(&self, perceptual: PerceptualLoss, device: &Device) -> Result<Box<dyn StepLearner>> {
        Ok(Box::new(Learner::new(self.clone(), perceptual, device)?))
    }

    fn boxed_clone(&self) -> Box<dyn FamilyTraining> {
        Box::new(self.clone())
    }
}

impl StepLearner for Learner {
    fn device(&self) -> &Device {
        &self.device
    }

    fn variant(&self) -> Variant {
        self.variant
    }

    fn perceptual(&self) -> &PerceptualLoss {
        &self.perceptual
    }

    fn step(
        &mut self,
        source: Tensor<4>,
        driving: Tensor<4>,
        epoch: usize,
        rng: &mut Rng,
        snapshot: bool,
    ) -> (StepReport, Option<Snapshot>) {
        let lr_factor = self.config.train.lr_factor(epoch);
        Learner::step(self, source, driving, lr_factor, rng, snapshot)
    }

    fn time_stages(&mut self, on: bool) {
        self.stages.switch(on);
    }

    fn stage_times(&self) -> Vec<(&'static str, f64)> {
        self.stages.laps()
    }

    /// Writes networks and optimizer states into `dir`.
    fn save(&self, dir: &Path) -> Result<()> {
        save_burnpack(&self.nets, &dir.join(MODEL_FILE))?;
        self.adam_kp_detector.save(&dir.join(ADAM_KP_DETECTOR))?;
        self.adam_generator.save(&dir.join(ADAM_GENERATOR))?;
        self.adam_discriminator.save(&dir.join(ADAM_DISCRIMINATOR))
    }

    /// Reads what [`Learner::save`] wrote.
    fn load(&mut self, dir: &Path) -> Result<()> {
        load_burnpack(&mut self.nets, &dir.join(MODEL_FILE), &[], &[])?;
        // Optimizer state lives outside the graph.
        let plain = self.device.clone().without_autodiff();
        self.adam_kp_detector = Adam::load(&dir.join(ADAM_KP_DETECTOR), &plain)?;
        self.adam_generator = Adam::load(&dir.join(ADAM_GENERATOR), &plain)?;
        self.adam_discriminator = Adam::load(&dir.join(ADAM_DISCRIMINATOR), &plain)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{PerceptualFeatures, PerceptualLoss};
    use crate::test_support::noise_frames as frames;
    use burn::module::{ModuleVisitor, Param};

    fn small_config(variant: Variant) -> FommConfig {
        let mut config = FommConfig::from_yaml_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/fomm-small/config.yaml"
        ))
        .expect("fixture config");
        config.prioritycut.variant = variant;
        config.prioritycut.cutmix_probability = 1.0;
        config
    }

    fn learner(config: &FommConfig) -> Learner {
        let device = Device::flex();
        let perceptual = PerceptualLoss::new(
            PerceptualFeatures::PixelPyramid,
            &config.train.scales,
            &config.train.loss_weights.perceptual,
            &device.clone().autodiff(),
        );
        device.seed(0);
        Learner::new(config.clone(), perceptual, &device).expect("learner")
    }

    /// Paths of the float parameters that require gradients.
    struct Trainable {
        path: Vec<String>,
        found: Vec<String>,
    }

    impl ModuleVisitor for Trainable {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.found.push(self.path.join("."));
            }
        }
    }

    fn trainable<M: Module>(module: &M) -> Vec<String> {
        let mut visitor = Trainable {
            path: Vec::new(),
            found: Vec::new(),
        };
        module.visit(&mut visitor);
        visitor.found.sort();
        visitor.found
    }

    /// Every trainable parameter of every network is updated by one step (the Jacobian head
    /// included, which an earlier init left untracked); the fixed anti-aliasing kernels are not.
    #[test]
    fn one_step_updates_every_trainable_parameter() {
        let mut l = learner(&small_config(Variant::UnetPrioritycut));
        let (source, driving) = (frames(1, &l.device), frames(2, &l.device));
        let (report, _) = l.step(source, driving, 1.0, &mut Rng::seed(3), false);
        assert!(!report.skipped && report.mixed, "{report:?}");
        let kp = trainable(&l.nets.kp_detector);
        assert!(kp.iter().any(|p| p == "jacobian.weight"));
        assert!(!kp.iter().any(|p| p.ends_with("down.weight")));
        assert_eq!(l.adam_kp_detector.paths(), kp);
        assert_eq!(l.adam_generator.paths(), trainable(&l.nets.generator));
        let unet = l.nets.unet_discriminator.as_ref().expect("U-Net");
        assert_eq!(l.adam_discriminator.paths(), trainable(unet));
    }

    /// Saving, loading into fresh networks and continuing gives the same losses as never
    /// stopping, step for step.
    #[test]
    fn saved_and_reloaded_learner_continues_exactly() {
        let config = small_config(Variant::UnetPrioritycut);
        let mut straight = learner(&config);
        let device = straight.device.clone();
        let step = |l: &mut Learner, i: u64| {
            let (source, driving) = (frames(10 + i, &device), frames(20 + i, &device));
            l.step(source, driving, 1.0, &mut Rng::derive(&[i]), false).0
        };
        for i in 0..2 {
            step(&mut straight, i);
        }
        let dir = crate::test_support::temp_dir("learner");
        straight.save(&dir).expect("save");
        let mut resumed = learner(&config);
        resumed.load(&dir).expect("load");
        for i in 2..5 {
            let (a, b) = (step(&mut straight, i), step(&mut resumed, i));
            assert_eq!(a.losses, b.losses, "step {i}");
        }
    }
}
