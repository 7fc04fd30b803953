//! TPSMM's dense motion network (§3.2, `modules/dense_motion.py`): K thin-plate spline
//! transformations and the background's affine one warp the (downsampled) source; an hourglass
//! reads the warped sources and the keypoints' Gaussian heatmaps and predicts K+1 contribution
//! maps `M_k` that blend the transformations into one optical flow (Eq. 6)
//!
//! `T̃(z) = Σ_{k=0}^{K} M_k(z) T_k(z)`,
//!
//! and occlusion masks at four resolutions for the inpainting network. Channel 0 of the
//! contribution maps is the background's; PriorityCut binarises it as `M_bg`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::tps::ThinPlateSplines;
use crate::kernels::{convolve, grid_sample_align_corners};
use crate::model::Keypoints;
use crate::model::blocks::{
    AntiAliasInterpolation2d, Hourglass, InferenceForm, InstanceNorm2d, UpBlock2d, conv, hourglass_level_filters,
    warp_by_each,
};
use crate::model::keypoints::{coordinate_grid_xy, heatmap_difference};

/// The occlusion masks TPSMM predicts with `multi_mask`: one per resolution of the inpainting
/// network's decoder.
pub const OCCLUSION_MASKS: usize = 4;

/// `model_params.dense_motion_params` (+ `common_params`). Defaults: TPSMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct DenseMotionConfig {
    #[config(default = 64)]
    pub block_expansion: usize,
    #[config(default = 5)]
    pub num_blocks: usize,
    #[config(default = 1024)]
    pub max_features: usize,
    #[config(default = 10)]
    pub num_tps: usize,
    #[config(default = 3)]
    pub num_channels: usize,
    /// The network runs on the source downsampled by this factor.
    #[config(default = 0.25)]
    pub scale_factor: f64,
    /// Four occlusion masks (one per decoder resolution) instead of one.
    #[config(default = true)]
    pub multi_mask: bool,
    /// Variance of the keypoint Gaussians.
    #[config(default = 0.01)]
    pub kp_variance: f64,
}

#[derive(Module, Debug)]
pub struct DenseMotionNetwork {
    pub down: Option<AntiAliasInterpolation2d>,
    pub hourglass: Hourglass<InstanceNorm2d>,
    /// The head predicting the K+1 contribution maps.
    pub maps: Conv2d,
    /// Up blocks from the hourglass's resolution to the frame's (`log2(1/scale)` of them).
    pub up: Vec<UpBlock2d<InstanceNorm2d>>,
    /// One 7×7 head per occlusion mask, coarsest first.
    pub occlusion: Vec<Conv2d>,
    pub num_tps: usize,
    pub kp_variance: f64,
}

/// What the dense motion network predicts.
#[derive(Debug, Clone)]
pub struct DenseMotion {
    /// [b, K+1, h, w] softmax over the transformations at the network's resolution; channel 0
    /// = background.
    pub contribution_maps: Tensor<4>,
    /// [b, K+1, c, h, w] the source warped by each transformation (0 = background).
    pub deformed_source: Tensor<5>,
    /// [b, h, w, 2] the optical flow `T̃`, a `grid_sample` grid (align_corners=True).
    pub deformation: Tensor<4>,
    /// Occlusion masks [b, 1, h_i, w_i] in (0, 1), 1 = visible in the source, coarsest first.
    pub occlusion_map: Vec<Tensor<4>>,
}

/// TPSMM's dropout of transformations during early training (Eq. 7–8): each of the K
/// keypoint transformations is dropped with probability `p` per image (never the background),
/// the others' logits scaled by `1/(1−p)` — after their exponentials, as the official code does.
#[derive(Debug, Clone)]
pub struct TransformDropout {
    pub probability: f64,
    /// One uniform draw in [0, 1) per image and transformation, [b][K+1] row by row (the
    /// background's is not read): drawn by the caller, so that a training run's stream of
    /// random numbers is its own, whatever else the device draws.
    pub draws: Vec<f32>,
}

impl DenseMotionConfig {
    pub fn init(&self, device: &Device) -> DenseMotionNetwork {
        let in_features = self.num_channels * (self.num_tps + 1) + self.num_tps * 5 + 1;
        let hourglass = Hourglass::new(
            self.block_expansion,
            in_features,
            self.num_blocks,
            self.max_features,
            device,
        );
        let levels = hourglass_level_filters(self.block_expansion, in_features, self.num_blocks, self.max_features);
        let last = levels[levels.len() - 1];
        let (up, occlusion) = if self.multi_mask {
            let up_nums = (1.0 / self.scale_factor).log2().round() as usize;
            let up: Vec<UpBlock2d<InstanceNorm2d>> = (0..up_nums)
                .map(|i| UpBlock2d::new(last >> i, last >> (i + 1), device))
                .collect();
            // Masks from the hourglass's last levels, then from each up block.
            let from_levels = OCCLUSION_MASKS.saturating_sub(up_nums);
            let channels = (0..from_levels)
                .rev()
                .map(|i| levels[levels.len() - 1 - i])
                .chain((0..up_nums).map(|i| last >> (i + 1)));
            (up, channels.map(|c| conv(c, 1, 7, 3, device)).collect())
        } else {
            (Vec::new(), vec![conv(last, 1, 7, 3, device)])
        };
        DenseMotionNetwork {
            down: (self.scale_factor != 1.0)
                .then(|| AntiAliasInterpolation2d::new(self.num_channels, self.scale_factor, device)),
            hourglass,
            maps: conv(last, self.num_tps + 1, 7, 3, device),
            up,
            occlusion,
            num_tps: self.num_tps,
            kp_variance: self.kp_variance,
        }
    }
}

impl DenseMotionNetwork {
    /// The source at the network's resolution: it depends on the source alone, so an animation
    /// computes it once.
    pub fn downsample(&self, source: Tensor<4>) -> Tensor<4> {
        match &self.down {
            Some(down) => down.forward(source),
            None => source,
        }
    }

    /// The driving Gaussians minus the source's, a zero channel in front. → [b, K·5+1, h, w]
    pub fn heatmap_representations(
        &self,
        h: usize,
        w: usize,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
    ) -> Tensor<4> {
        heatmap_difference(&kp_driving.value, &kp_source.value, h, w, self.kp_variance)
    }

    /// The background's transformation (the identity, or `bg_param` [b, 3, 3] applied to
    /// homogeneous coordinates) and the K splines. → [b, K+1, h, w, 2]
    pub fn transformations(
        &self,
        h: usize,
        w: usize,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
        bg_param: Option<&Tensor<3>>,
    ) -> Tensor<5> {
        let [b, _, _] = kp_driving.value.dims();
        let device = kp_driving.value.device();
        let splines = ThinPlateSplines::from_keypoints(kp_driving, kp_source).warp_grid(h, w);
        let identity = coordinate_grid_xy(h, w, &device)
            .reshape([1, 1, h, w, 2])
            .repeat_dim(0, b);
        let background = match bg_param {
            None => identity,
            Some(affine) => {
                let ones = Tensor::<5>::ones([b, 1, h, w, 1], &device);
                let homogeneous = Tensor::cat(vec![identity, ones], 4).reshape([b, h * w, 3]);
                let moved = homogeneous.matmul(affine.clone().swap_dims(1, 2));
                let xy = moved.clone().narrow(2, 0, 2);
                let z = moved.narrow(2, 2, 1);
                (xy / z).reshape([b, 1, h, w, 2])
            }
        };
        Tensor::cat(vec![background, splines], 1)
    }

    /// Source [b, c, H, W] and keypoints → the flow and masks; `bg_param` is the background's
    /// affine motion (training, from `bg_start`), `dropout` the early-training dropout.
    pub fn forward(
        &self,
        source: Tensor<4>,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
        bg_param: Option<&Tensor<3>>,
        dropout: Option<TransformDropout>,
    ) -> DenseMotion {
        self.forward_downsampled(self.downsample(source), kp_driving, kp_source, bg_param, dropout)
    }

    /// [`DenseMotionNetwork::forward`] from a source already [`downsample`](Self::downsample)d.
    pub fn forward_downsampled(
        &self,
        source: Tensor<4>,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
        bg_param: Option<&Tensor<3>>,
        dropout: Option<TransformDropout>,
    ) -> DenseMotion {
        let [b, c, h, w] = source.dims();
        let n = self.num_tps + 1;
        let heatmaps = self.heatmap_representations(h, w, kp_driving, kp_source);
        let transformations = self.transformations(h, w, kp_driving, kp_source, bg_param);
        let deformed_source = warp_by_each(&source, &transformations, grid_sample_align_corners);
        let input = Tensor::cat(vec![heatmaps, deformed_source.clone().reshape([b, n * c, h, w])], 1);

        let mut levels = self.hourglass.forward_levels(input);
        let logits = convolve(&self.maps, levels[levels.len() - 1].clone());
        let contribution_maps = match dropout {
            Some(dropout) => dropout_softmax(logits, &dropout),
            None => softmax(logits, 1),
        };

        // Eq. 6: the contribution-weighted sum of the transformations.
        let deformation = (transformations * contribution_maps.clone().reshape([b, n, h, w, 1]))
            .sum_dim(1)
            .reshape([b, h, w, 2]);

        let from_levels = self.occlusion.len() - self.up.len();
        let mut occlusion_map = Vec::with_capacity(self.occlusion.len());
        let first_level = levels.len() - from_levels;
        for (head, level) in self.occlusion.iter().zip(&levels[first_level..]) {
            occlusion_map.push(sigmoid(convolve(head, level.clone())));
        }
        let mut prediction = levels.pop().expect("an hourglass has at least one level");
        drop(levels);
        for (block, head) in self.up.iter().zip(&self.occlusion[from_levels..]) {
            prediction = block.forward(prediction);
            occlusion_map.push(sigmoid(convolve(head, prediction.clone())));
        }
        DenseMotion {
            contribution_maps,
            deformed_source,
            deformation,
            occlusion_map,
        }
    }
}

/// Eq. 7–8, the official `dropout_softmax`: `exp(x − max)` per channel, the K keypoint
/// channels of an image each dropped with probability `p` (zeroed), normalised by their sum
/// `+ 1e-6`. (The official code also divides the logits by `1 − p` after taking their
/// exponentials, which changes nothing it returns.)
fn dropout_softmax(logits: Tensor<4>, dropout: &TransformDropout) -> Tensor<4> {
    let [b, n, _, _] = logits.dims();
    let device = logits.device();
    let threshold = (1.0 - dropout.probability) as f32;
    // torch's `rand < 1 − p` keeps a transformation; the background is always kept.
    let keep: Vec<f32> = (0..b * n)
        .map(|i| {
            let draw = dropout.draws.get(i).copied().unwrap_or(0.0);
            if i % n == 0 || draw < threshold { 1.0 } else { 0.0 }
        })
        .collect();
    let keep = Tensor::<4>::from_data(TensorData::new(keep, [b, n, 1, 1]), &device);
    let max = logits.clone().max_dim(1);
    let exp = (logits - max).exp() * keep;
    let partition = exp.clone().sum_dim(1) + 1e-6;
    exp / partition
}

impl InferenceForm for DenseMotionNetwork {
    fn into_inference_form(mut self) -> Self {
        self.hourglass = self.hourglass.into_inference_form();
        self.up = self.up.into_inference_form();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A draw under 1 − p keeps a transformation, one above drops it (never the background);
    /// keeping all is the softmax (but for the 1e-6 in the partition).
    #[test]
    fn dropout_keeps_the_background_and_what_its_draws_keep() {
        let device = Device::flex();
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 0.0, 1.0, 3.0], [2, 3, 1, 1]),
            &device,
        );
        let values = |t: Tensor<4>| t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
        let all_kept = TransformDropout {
            probability: 0.3,
            draws: vec![0.9; 6],
        };
        // The background's draw (0.9 > 0.7) is not read: only the keypoints' are.
        let kept = values(dropout_softmax(logits.clone(), &all_kept));
        let mut some = all_kept.clone();
        some.draws = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let softmax = values(softmax(logits.clone(), 1));
        for (a, b) in values(dropout_softmax(logits.clone(), &some)).iter().zip(&softmax) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // 0.9 ≥ 0.7 drops every keypoint transformation: the background takes all the motion.
        assert!(
            (kept[0] - 1.0).abs() < 1e-5 && kept[1] == 0.0 && kept[2] == 0.0,
            "{kept:?}"
        );
        some.draws = vec![0.9, 0.1, 0.8, 0.9, 0.9, 0.1];
        let mixed = values(dropout_softmax(logits, &some));
        assert_eq!(mixed[2], 0.0);
        assert!((mixed[0] + mixed[1] - 1.0).abs() < 1e-5 && mixed[1] > 0.0, "{mixed:?}");
        assert!(mixed[4] == 0.0 && mixed[5] > 0.0, "{mixed:?}");
    }
}
