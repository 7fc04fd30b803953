//! The keypoint detector (FOMM §3, `modules/keypoint_detector.py`): an hourglass predicts one
//! heatmap per keypoint; a softmax with temperature turns each into a distribution whose mean
//! is the keypoint, and a second head gives the Jacobian as the heatmap-weighted average of a
//! per-pixel 2×2 map.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::blocks::{
    AntiAliasInterpolation2d, Hourglass, InferenceForm, conv, hourglass_out_filters, joined, stacked_forward,
    stacked_heads,
};
use super::keypoints::{Keypoints, make_coordinate_grid};
use crate::kernels::{convolve, gpu};

/// `model_params.kp_detector_params` (+ `common_params`). Defaults: FOMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct KpDetectorConfig {
    #[config(default = 10)]
    pub num_kp: usize,
    #[config(default = 3)]
    pub num_channels: usize,
    #[config(default = true)]
    pub estimate_jacobian: bool,
    /// Softmax temperature of the heatmaps.
    #[config(default = 0.1)]
    pub temperature: f64,
    #[config(default = 32)]
    pub block_expansion: usize,
    #[config(default = 1024)]
    pub max_features: usize,
    /// The detector runs on the image downsampled by this factor.
    #[config(default = 0.25)]
    pub scale_factor: f64,
    #[config(default = 5)]
    pub num_blocks: usize,
    /// One Jacobian map shared by all keypoints instead of one each.
    #[config(default = false)]
    pub single_jacobian_map: bool,
    /// Padding of the 7×7 heads; 0 shrinks the heatmaps by 6 pixels, as in FOMM.
    #[config(default = 0)]
    pub pad: usize,
}

/// Heatmaps → keypoints + Jacobians.
#[derive(Module, Debug)]
pub struct KpDetector {
    pub predictor: Hourglass,
    pub kp: Conv2d,
    pub jacobian: Option<Conv2d>,
    pub down: Option<AntiAliasInterpolation2d>,
    pub temperature: f64,
    pub num_jacobian_maps: usize,
    /// The inference form on a GPU: the keypoint and Jacobian heads as one convolution.
    #[module(skip)]
    pub stacked_heads: Option<Conv2d>,
}

impl KpDetectorConfig {
    pub fn init(&self, device: &Device) -> KpDetector {
        let predictor = Hourglass::new(
            self.block_expansion,
            self.num_channels,
            self.num_blocks,
            self.max_features,
            device,
        );
        let features = hourglass_out_filters(self.block_expansion, self.num_channels);
        let num_jacobian_maps = if self.single_jacobian_map { 1 } else { self.num_kp };
        let jacobian = self.estimate_jacobian.then(|| {
            // FOMM starts the Jacobian head at the identity: zero weights, bias [1, 0, 0, 1].
            // New params (not `Param::map`), so that the tensors themselves are trainable.
            let mut head = conv(features, 4 * num_jacobian_maps, 7, self.pad, device);
            head.weight = Param::from_tensor(Tensor::zeros(head.weight.dims(), device));
            let bias: Vec<f32> = (0..num_jacobian_maps).flat_map(|_| [1.0, 0.0, 0.0, 1.0]).collect();
            let len = bias.len();
            head.bias = Some(Param::from_data(TensorData::new(bias, [len]), device));
            head
        });
        KpDetector {
            predictor,
            kp: conv(features, self.num_kp, 7, self.pad, device),
            jacobian,
            down: (self.scale_factor != 1.0)
                .then(|| AntiAliasInterpolation2d::new(self.num_channels, self.scale_factor, device)),
            temperature: self.temperature,
            num_jacobian_maps,
            stacked_heads: None,
        }
    }
}

impl KpDetector {
    /// Images [b, c, h, w] in [0, 1] → keypoints.
    pub fn forward(&self, image: Tensor<4>) -> Keypoints {
        let heads = self.heads(image);
        if let Some(keypoints) = self.keypoints_on_gpu(&heads) {
            return keypoints;
        }
        let (prediction, jacobian_maps) = self.apart(heads);
        self.keypoints_of(prediction, jacobian_maps).0
    }

    /// Also returns the softmax heatmaps [b, kp, h', w'].
    pub fn forward_with_heatmap(&self, image: Tensor<4>) -> (Keypoints, Tensor<4>) {
        let heads = self.heads(image);
        let keypoints = self.keypoints_on_gpu(&heads);
        let (prediction, jacobian_maps) = self.apart(heads);
        if let Some(keypoints) = keypoints {
            let [b, k, h, w] = prediction.dims();
            let heatmap = softmax(prediction.reshape([b, k, h * w]) / self.temperature, 2);
            return (keypoints, heatmap.reshape([b, k, h, w]));
        }
        self.keypoints_of(prediction, jacobian_maps)
    }

    /// The keypoints by the kernels crate's one-launch heatmap statistics, where they serve.
    fn keypoints_on_gpu(&self, heads: &Heads) -> Option<Keypoints> {
        let (value, jacobian) = match heads {
            Heads::Stacked(stacked) => {
                gpu::heatmap_keypoints_of_heads(stacked, self.kp.weight.dims()[0], self.temperature)
            }
            Heads::Apart(prediction, maps) => gpu::heatmap_keypoints(prediction, maps.as_ref(), self.temperature),
        }?;
        Some(Keypoints { value, jacobian })
    }

    /// The heads' outputs: as one tensor where they ran as one convolution (on a GPU), else
    /// apart.
    fn heads(&self, image: Tensor<4>) -> Heads {
        let x = match &self.down {
            Some(down) => down.forward(image),
            None => image,
        };
        let parts = self.predictor.forward_parts(x);
        if let Some(heads) = stacked_forward(self.stacked_heads.as_ref(), &parts) {
            return Heads::Stacked(heads);
        }
        let feature_map = joined(parts);
        let jacobian_maps = self.jacobian.as_ref().map(|head| convolve(head, feature_map.clone()));
        Heads::Apart(convolve(&self.kp, feature_map), jacobian_maps)
    }

    /// The keypoint logits [b, kp, h', w'] and the Jacobian maps [b, 4 · maps, h', w'].
    fn apart(&self, heads: Heads) -> (Tensor<4>, Option<Tensor<4>>) {
        match heads {
            Heads::Stacked(heads) => {
                let (keypoints, channels) = (self.kp.weight.dims()[0], heads.dims()[1]);
                let maps = (channels > keypoints).then(|| heads.clone().narrow(1, keypoints, channels - keypoints));
                (heads.narrow(1, 0, keypoints), maps)
            }
            Heads::Apart(prediction, maps) => (prediction, maps),
        }
    }

    /// The keypoints as the softmax heatmaps' means, and the heatmaps.
    fn keypoints_of(&self, prediction: Tensor<4>, jacobian_maps: Option<Tensor<4>>) -> (Keypoints, Tensor<4>) {
        let [b, k, h, w] = prediction.dims();
        let heatmap = softmax(prediction.reshape([b, k, h * w]) / self.temperature, 2);

        // Mean of each heatmap: Σ heatmap · grid, over the pixels.
        let (gx, gy) = make_coordinate_grid(h, w, (&heatmap.device(), heatmap.dtype()));
        let x = (heatmap.clone() * gx.reshape([1, 1, h * w])).sum_dim(2);
        let y = (heatmap.clone() * gy.reshape([1, 1, h * w])).sum_dim(2);
        let value = Tensor::cat(vec![x, y], 2);

        let jacobian = jacobian_maps.map(|maps| {
            let maps = maps.reshape([b, self.num_jacobian_maps, 4, h * w]);
            let weighted = heatmap.clone().reshape([b, k, 1, h * w]) * maps;
            weighted.sum_dim(3).reshape([b, k, 2, 2])
        });
        (Keypoints { value, jacobian }, heatmap.reshape([b, k, h, w]))
    }
}

/// What the detector's heads give: the keypoint logits [b, kp, h', w'] then the Jacobian maps
/// [b, 4 · maps, h', w'] along channels, or the two apart.
#[allow(clippy::large_enum_variant, reason = "one lives for one call, never in a collection")]
enum Heads {
    Stacked(Tensor<4>),
    Apart(Tensor<4>, Option<Tensor<4>>),
}

impl InferenceForm for KpDetector {
    fn into_inference_form(mut self) -> Self {
        self.predictor = self.predictor.into_inference_form();
        self.stacked_heads = self
            .jacobian
            .as_ref()
            .and_then(|jacobian| stacked_heads(&self.kp, jacobian));
        self
    }
}
