//! The Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022; the official code is
//! `yoyo-nb/Thin-Plate-Spline-Motion-Model`), the second model family: K thin-plate spline
//! transformations of 5 keypoints each instead of FOMM's local affine ones, an optical flow
//! blended from them and the background's affine motion, multi-resolution occlusion masks, and
//! an inpainting network that warps every encoder level.
//!
//! One file per part of the paper, each module named and laid out as the official one, so an
//! official checkpoint loads by key ([`crate::import::load_tpsmm_checkpoint`]).

pub mod avd_network;
pub mod bg_motion_predictor;
pub mod dense_motion;
pub mod inpainting_network;
pub mod keypoint_detector;
pub mod resnet;
pub mod tps;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use avd_network::{AVD_HIDDEN, AvdNetwork};
pub use bg_motion_predictor::BgMotionPredictor;
pub use dense_motion::{DenseMotion, DenseMotionConfig, DenseMotionNetwork, OCCLUSION_MASKS, TransformDropout};
pub use inpainting_network::{InpaintingConfig, InpaintingNetwork, InpaintingOutput};
pub use keypoint_detector::KpDetector;

use super::{InferenceForm, Keypoints};

/// Control points per thin-plate spline transformation (N in the paper).
pub const POINTS_PER_TPS: usize = 5;

/// A TPSMM experiment's model (`model_params` of its YAML files). Defaults: TPSMM's
/// `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct TpsmmConfig {
    /// `dataset_params.frame_shape`: [height, width, channels].
    #[config(default = "[256, 256, 3]")]
    pub frame_shape: [usize; 3],
    /// `common_params.num_tps`: K, the number of TPS transformations.
    #[config(default = 10)]
    pub num_tps: usize,
    #[config(default = 3)]
    pub num_channels: usize,
    /// `common_params.bg`: the model has a background motion predictor.
    #[config(default = true)]
    pub bg: bool,
    /// `common_params.multi_mask`: occlusion masks at four resolutions.
    #[config(default = true)]
    pub multi_mask: bool,
    /// `generator_params`.
    #[config(default = "InpaintingConfig::new()")]
    pub inpainting: InpaintingConfig,
    /// `dense_motion_params`.
    #[config(default = "DenseMotionConfig::new()")]
    pub dense_motion: DenseMotionConfig,
    /// `avd_network_params.id_bottle_size`.
    #[config(default = 128)]
    pub id_bottle_size: usize,
    /// `avd_network_params.pose_bottle_size`.
    #[config(default = 128)]
    pub pose_bottle_size: usize,
    /// Ours (`model_params.resnet_width`): the ResNet-18s' base width, torchvision's 64; the
    /// project's small fixtures are narrower.
    #[config(default = 64)]
    pub resnet_width: usize,
    /// Ours (`model_params.avd_hidden`): the AVD encoders' hidden widths, 256, 512, 1024 in the
    /// official code.
    #[config(default = "AVD_HIDDEN.to_vec()")]
    pub avd_hidden: Vec<usize>,
}

impl TpsmmConfig {
    /// Gives `common_params` to every network, as TPSMM's `**common_params` does.
    pub fn with_common(mut self) -> Self {
        self.inpainting.num_channels = self.num_channels;
        self.inpainting.multi_mask = self.multi_mask;
        self.dense_motion.num_channels = self.num_channels;
        self.dense_motion.num_tps = self.num_tps;
        self.dense_motion.multi_mask = self.multi_mask;
        self
    }

    /// What TPSMM's code would reject or misbuild, in one line.
    pub fn validate(&self) -> Result<(), String> {
        let [h, w, c] = self.frame_shape;
        if c != self.num_channels {
            return Err(format!(
                "frame_shape has {c} channels but num_channels is {}",
                self.num_channels
            ));
        }
        if self.num_tps == 0 {
            return Err("num_tps must be at least 1".into());
        }
        let scale = self.dense_motion.scale_factor;
        let up = (1.0 / scale).log2();
        if self.multi_mask && (up.fract().abs() > 1e-9 || up < 0.0 || up.round() as usize > OCCLUSION_MASKS) {
            return Err(format!(
                "dense_motion_params.scale_factor {scale} must be 1/2^n with n ≤ {OCCLUSION_MASKS} for multi_mask"
            ));
        }
        if self.multi_mask && self.inpainting.num_down_blocks + 1 != OCCLUSION_MASKS {
            return Err(format!(
                "multi_mask needs generator_params.num_down_blocks = {} (one occlusion mask per level), got {}",
                OCCLUSION_MASKS - 1,
                self.inpainting.num_down_blocks
            ));
        }
        let divisor = 1usize << self.inpainting.num_down_blocks;
        let motion = (h as f64 * scale, w as f64 * scale);
        let motion_divisor = (1usize << self.dense_motion.num_blocks) as f64;
        if h % divisor != 0 || w % divisor != 0 || motion.0 % motion_divisor != 0.0 || motion.1 % motion_divisor != 0.0
        {
            return Err(format!(
                "frame_shape {h}×{w} must be divisible by 2^num_down_blocks and, scaled by {scale}, by 2^num_blocks"
            ));
        }
        Ok(())
    }
}

/// TPSMM's networks: what `demo.py` loads, and the background predictor that training adds.
#[derive(Module, Debug)]
pub struct TpsmmModels {
    pub kp_detector: KpDetector,
    pub dense_motion_network: DenseMotionNetwork,
    pub inpainting_network: InpaintingNetwork,
    /// Present where the config has `bg: True`; the demo animates without it.
    pub bg_predictor: Option<BgMotionPredictor>,
    /// Present where the checkpoint has one (`avd` mode); TPSMM trains it separately.
    pub avd_network: Option<AvdNetwork>,
}

impl TpsmmModels {
    /// The networks the config builds, with torch's default initialisation.
    pub fn new(config: &TpsmmConfig, device: &Device) -> Self {
        let config = config.clone().with_common();
        Self {
            kp_detector: KpDetector::new(config.num_tps, config.num_channels, config.resnet_width, device),
            dense_motion_network: config.dense_motion.init(device),
            inpainting_network: config.inpainting.init(device),
            bg_predictor: config
                .bg
                .then(|| BgMotionPredictor::new(config.num_channels, config.resnet_width, device)),
            avd_network: Some(AvdNetwork::new(
                config.num_tps,
                config.id_bottle_size,
                config.pose_bottle_size,
                &config.avd_hidden,
                device,
            )),
        }
    }

    /// The frame for `source` moved as `kp_driving` says (the demo's path: no background motion,
    /// no dropout).
    pub fn animate(&self, source: Tensor<4>, kp_source: &Keypoints, kp_driving: &Keypoints) -> InpaintingOutput {
        let motion = self
            .dense_motion_network
            .forward(source.clone(), kp_driving, kp_source, None, None);
        self.inpainting_network.forward(source, &motion)
    }
}

impl InferenceForm for TpsmmModels {
    fn into_inference_form(mut self) -> Self {
        self.kp_detector = self.kp_detector.into_inference_form();
        self.bg_predictor = self.bg_predictor.into_inference_form();
        self.dense_motion_network = self.dense_motion_network.into_inference_form();
        self.inpainting_network = self.inpainting_network.into_inference_form();
        self
    }
}
