//! Training hyper-parameters: FOMM's `train_params` and `dataset_params` (defaults:
//! `vox-256.yaml`).

use burn::config::Config;

/// What a run trains (TPSMM's `run.py --mode`; the `mode` key of a run's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingMode {
    /// `train.py`: the family's networks (TPSMM: keypoint detector, dense motion, inpainting
    /// and background networks).
    #[default]
    Train,
    /// `train_avd.py`: only a disentanglement network (TPSMM's AVD), on the keypoints of a
    /// trained model.
    TrainAvd,
}

/// `train_params.transform_params`: the random TPS transform of the equivariance loss.
#[derive(Config, Debug)]
pub struct TransformParams {
    /// Std of the noise added to the identity affine part.
    #[config(default = 0.05)]
    pub sigma_affine: f64,
    /// Std of the thin-plate-spline control weights.
    #[config(default = 0.005)]
    pub sigma_tps: f64,
    /// Control points per side (`points_tps²` in all).
    #[config(default = 5)]
    pub points_tps: usize,
}

/// `train_params.loss_weights`.
#[derive(Config, Debug)]
pub struct LossWeights {
    /// Generator adversarial weight; 0 in `vox-256.yaml` (FOMM), 1 in `vox-adv-256.yaml`.
    #[config(default = 0.0)]
    pub generator_gan: f64,
    #[config(default = 1.0)]
    pub discriminator_gan: f64,
    /// One weight per discriminator feature map.
    #[config(default = "vec![10.0, 10.0, 10.0, 10.0]")]
    pub feature_matching: Vec<f64>,
    /// One weight per VGG19 layer (relu1_1 … relu5_1).
    #[config(default = "vec![10.0, 10.0, 10.0, 10.0, 10.0]")]
    pub perceptual: Vec<f64>,
    #[config(default = 10.0)]
    pub equivariance_value: f64,
    #[config(default = 10.0)]
    pub equivariance_jacobian: f64,
}

/// `train_params`. Defaults: FOMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct TrainParams {
    #[config(default = 100)]
    pub num_epochs: usize,
    /// Passes over the dataset per epoch (FOMM's `DatasetRepeater`).
    #[config(default = 75)]
    pub num_repeats: usize,
    /// Epochs after which every learning rate is multiplied by 0.1 (MultiStepLR).
    #[config(default = "vec![60, 90]")]
    pub epoch_milestones: Vec<usize>,
    #[config(default = 2e-4)]
    pub lr_generator: f64,
    #[config(default = 2e-4)]
    pub lr_discriminator: f64,
    #[config(default = 2e-4)]
    pub lr_kp_detector: f64,
    #[config(default = 40)]
    pub batch_size: usize,
    /// Image pyramid scales of the perceptual loss.
    #[config(default = "vec![1.0, 0.5, 0.25, 0.125]")]
    pub scales: Vec<f64>,
    /// FOMM saves every this many epochs; the engine checkpoints by steps (`TrainOptions`).
    #[config(default = 50)]
    pub checkpoint_freq: usize,
    #[config(default = "TransformParams::new()")]
    pub transform_params: TransformParams,
    #[config(default = "LossWeights::new()")]
    pub loss_weights: LossWeights,
}

/// `dataset_params`: how training pairs are drawn and augmented. Defaults: `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct DatasetParams {
    /// VoxCeleb's sampling: videos named `id#clip` are grouped by `id`, and each sample draws
    /// one identity, then one of its clips (a name without `#` is an identity of its own).
    #[config(default = true)]
    pub id_sampling: bool,
    #[config(default = true)]
    pub horizontal_flip: bool,
    /// Reverse the clip (swapping which frame is the source) half of the time.
    #[config(default = true)]
    pub time_flip: bool,
    #[config(default = 0.1)]
    pub brightness: f64,
    #[config(default = 0.1)]
    pub contrast: f64,
    #[config(default = 0.1)]
    pub saturation: f64,
    #[config(default = 0.1)]
    pub hue: f64,
}

impl TrainParams {
    /// MultiStepLR(γ = 0.1): the factor on the base learning rates during `epoch`.
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        multistep_lr_factor(&self.epoch_milestones, epoch)
    }

    pub fn validate(&self) -> Result<(), String> {
        validate_batches_and_pyramid(
            self.batch_size,
            self.num_repeats,
            &self.scales,
            &self.loss_weights.perceptual,
        )
    }
}

/// torch's MultiStepLR(γ = 0.1): the factor on the base learning rates during `epoch`.
pub fn multistep_lr_factor(milestones: &[usize], epoch: usize) -> f64 {
    let passed = milestones.iter().filter(|&&m| m <= epoch).count();
    0.1f64.powi(passed as i32)
}

/// The `train_params` checks every family shares: batches, repeats, the perceptual pyramid.
pub(super) fn validate_batches_and_pyramid(
    batch_size: usize,
    num_repeats: usize,
    scales: &[f64],
    perceptual: &[f64],
) -> Result<(), String> {
    if batch_size == 0 {
        return Err("train_params.batch_size must be at least 1".into());
    }
    if num_repeats == 0 {
        return Err("train_params.num_repeats must be at least 1".into());
    }
    if scales
        .iter()
        .any(|&s| !(s > 0.0 && s <= 1.0 && (1.0 / s).fract() == 0.0))
    {
        return Err(format!("train_params.scales must be 1/n for whole n, got {scales:?}"));
    }
    if perceptual.len() > 5 {
        return Err("loss_weights.perceptual has more than the 5 VGG19 layers".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_lr_follows_the_milestones() {
        let p = TrainParams::new();
        assert_eq!(p.lr_factor(0), 1.0);
        assert_eq!(p.lr_factor(59), 1.0);
        assert!((p.lr_factor(60) - 0.1).abs() < 1e-12);
        assert!((p.lr_factor(95) - 0.01).abs() < 1e-12);
    }
}
