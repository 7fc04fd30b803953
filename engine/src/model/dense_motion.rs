//! The dense motion network (FOMM §3.1–3.2, `modules/dense_motion.py`): from the keypoints of
//! the source and the driving frame it builds K+1 sparse motions (K local affine transforms and
//! the identity for the background), warps the source by each, and predicts a softmax mask
//! that blends them into one dense motion field, plus the occlusion map.
//!
//! Channel 0 of the mask is the background; PriorityCut binarizes it as `M_bg`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};

use super::blocks::{
    AntiAliasInterpolation2d, Hourglass, InferenceForm, conv, hourglass_out_filters, joined, stacked_forward,
    stacked_heads, warp_by_each,
};
use super::keypoints::{Keypoints, heatmap_difference, inverse_2x2, make_coordinate_grid};
use crate::kernels::{convolve, gpu, grid_sample};

/// `generator_params.dense_motion_params`. Defaults: FOMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct DenseMotionConfig {
    #[config(default = 64)]
    pub block_expansion: usize,
    #[config(default = 5)]
    pub num_blocks: usize,
    #[config(default = 1024)]
    pub max_features: usize,
    #[config(default = 10)]
    pub num_kp: usize,
    #[config(default = 3)]
    pub num_channels: usize,
    #[config(default = true)]
    pub estimate_occlusion_map: bool,
    /// The network runs on the source downsampled by this factor.
    #[config(default = 0.25)]
    pub scale_factor: f64,
    /// Variance of the keypoint Gaussians of Eq. 6.
    #[config(default = 0.01)]
    pub kp_variance: f64,
}

#[derive(Module, Debug)]
pub struct DenseMotionNetwork {
    pub hourglass: Hourglass,
    pub mask: Conv2d,
    pub occlusion: Option<Conv2d>,
    pub down: Option<AntiAliasInterpolation2d>,
    pub num_kp: usize,
    pub kp_variance: f64,
    /// The inference form on a GPU: the mask and occlusion heads as one convolution.
    #[module(skip)]
    pub stacked_heads: Option<Conv2d>,
}

/// What the dense motion network predicts, at its (downsampled) resolution h × w.
#[derive(Debug, Clone)]
pub struct DenseMotion {
    /// [b, kp+1, h, w] softmax over the sparse motions; channel 0 = background.
    pub mask: Tensor<4>,
    /// [b, kp+1, c, h, w] the source warped by each sparse motion (0 = identity).
    pub sparse_deformed: Tensor<5>,
    /// [b, h, w, 2] the dense backward motion T̂_{S←D}, a `grid_sample` grid.
    pub deformation: Tensor<4>,
    /// [b, 1, h, w] occlusion map Ô in (0, 1), 1 = visible in the source.
    pub occlusion_map: Option<Tensor<4>>,
}

impl DenseMotionConfig {
    pub fn init(&self, device: &Device) -> DenseMotionNetwork {
        let in_features = (self.num_kp + 1) * (self.num_channels + 1);
        let hourglass = Hourglass::new(
            self.block_expansion,
            in_features,
            self.num_blocks,
            self.max_features,
            device,
        );
        let features = hourglass_out_filters(self.block_expansion, in_features);
        DenseMotionNetwork {
            hourglass,
            mask: conv(features, self.num_kp + 1, 7, 3, device),
            occlusion: self.estimate_occlusion_map.then(|| conv(features, 1, 7, 3, device)),
            down: (self.scale_factor != 1.0)
                .then(|| AntiAliasInterpolation2d::new(self.num_channels, self.scale_factor, device)),
            num_kp: self.num_kp,
            kp_variance: self.kp_variance,
            stacked_heads: None,
        }
    }
}

impl DenseMotionNetwork {
    /// Eq. 6, H_k(z): difference of the driving and source Gaussians, with a zero background
    /// channel in front. → [b, kp+1, 1, h, w]
    fn heatmap_representations(&self, h: usize, w: usize, kp_driving: &Keypoints, kp_source: &Keypoints) -> Tensor<5> {
        heatmap_difference(&kp_driving.value, &kp_source.value, h, w, self.kp_variance).unsqueeze_dim(2)
    }

    /// Eq. 4, T_{S←D}(z) ≈ T_{S←R}(p_k) + J_k (z − T_{D←R}(p_k)) with J_k = J_S,k · J_D,k⁻¹,
    /// and the identity for the background. → [b, kp+1, h, w, 2]
    fn sparse_motions(&self, h: usize, w: usize, kp_driving: &Keypoints, kp_source: &Keypoints) -> Tensor<5> {
        let [b, k, _] = kp_source.value.dims();
        let (gx, gy) = make_coordinate_grid(h, w, (&kp_source.value.device(), kp_source.value.dtype()));
        let (dx, dy) = kp_driving.xy();
        let (sx, sy) = kp_source.xy();
        let cx = gx.clone().reshape([1, 1, h, w]) - dx.reshape([b, k, 1, 1]);
        let cy = gy.clone().reshape([1, 1, h, w]) - dy.reshape([b, k, 1, 1]);
        let (cx, cy) = match (&kp_source.jacobian, &kp_driving.jacobian) {
            (Some(js), Some(jd)) => {
                let j = js.clone().matmul(inverse_2x2(jd.clone()));
                let entry = |r: usize, c: usize| j.clone().slice([0..b, 0..k, r..r + 1, c..c + 1]);
                let (j00, j01, j10, j11) = (entry(0, 0), entry(0, 1), entry(1, 0), entry(1, 1));
                (j00 * cx.clone() + j01 * cy.clone(), j10 * cx + j11 * cy)
            }
            _ => (cx, cy),
        };
        let mx = cx + sx.reshape([b, k, 1, 1]);
        let my = cy + sy.reshape([b, k, 1, 1]);
        let driving_to_source = Tensor::stack::<5>(vec![mx, my], 4);
        let identity = Tensor::stack::<3>(vec![gx, gy], 2)
            .reshape([1, 1, h, w, 2])
            .repeat_dim(0, b);
        Tensor::cat(vec![identity, driving_to_source], 1)
    }

    /// Source [b, c, H, W] and keypoints → dense motion at the network's resolution.
    pub fn forward(&self, source: Tensor<4>, kp_driving: &Keypoints, kp_source: &Keypoints) -> DenseMotion {
        self.forward_downsampled(self.downsample(source), kp_driving, kp_source)
    }

    /// The source at the network's resolution (FOMM's anti-aliased `down`): it depends on the
    /// source alone, so an animation computes it once.
    pub fn downsample(&self, source: Tensor<4>) -> Tensor<4> {
        match &self.down {
            Some(down) => down.forward(source),
            None => source,
        }
    }

    /// [`DenseMotionNetwork::forward`] from a source already [`downsample`](Self::downsample)d.
    pub fn forward_downsampled(&self, source: Tensor<4>, kp_driving: &Keypoints, kp_source: &Keypoints) -> DenseMotion {
        let [b, c, h, w] = source.dims();
        let n = self.num_kp + 1;
        let (sparse_motions, sparse_deformed, input) = match gpu::motion_inputs(
            &source,
            (&kp_driving.value, kp_driving.jacobian.as_ref()),
            (&kp_source.value, kp_source.jacobian.as_ref()),
            self.kp_variance,
        ) {
            Some(made) => {
                let per_motion = made.hourglass_input.clone().reshape([b, n, c + 1, h, w]);
                (made.sparse_motions, per_motion.narrow(2, 1, c), made.hourglass_input)
            }
            None => {
                // Tensor arithmetic here: the keypoints (f32) in the maps' dtype.
                let dtype = source.dtype().into();
                let (kp_driving, kp_source) = (&kp_driving.cast(dtype), &kp_source.cast(dtype));
                let heatmaps = self.heatmap_representations(h, w, kp_driving, kp_source);
                let sparse_motions = self.sparse_motions(h, w, kp_driving, kp_source);
                // Eq. 7, the source warped by each sparse motion.
                let sparse_deformed = warp_by_each(&source, &sparse_motions, grid_sample);
                let input = Tensor::cat(vec![heatmaps, sparse_deformed.clone()], 2).reshape([b, n * (c + 1), h, w]);
                (sparse_motions, sparse_deformed, input)
            }
        };
        let prediction = self.hourglass.forward_parts(input);
        // The heads' logits, the mask's then the occlusion's (one convolution on a GPU).
        let stacked = stacked_forward(self.stacked_heads.as_ref(), &prediction);
        let (mask_logits, occlusion_logits) = match &stacked {
            Some(heads) => (heads.clone().narrow(1, 0, n), Some(heads.clone().narrow(1, n, 1))),
            None => {
                let prediction = joined(prediction);
                (
                    convolve(&self.mask, prediction.clone()),
                    self.occlusion.as_ref().map(|head| convolve(head, prediction)),
                )
            }
        };
        let logits = stacked.or_else(|| occlusion_logits.is_none().then(|| mask_logits.clone()));
        let (mask, deformation, occlusion_map) =
            match logits.and_then(|logits| gpu::motion_outputs(&logits, &sparse_motions, n)) {
                Some(made) => (made.mask, made.deformation, made.occlusion),
                None => {
                    let mask = softmax(mask_logits, 1);
                    // Σ_k M_k · T_k: the mask-weighted sum of the sparse motions.
                    let deformation = (sparse_motions * mask.clone().reshape([b, n, h, w, 1]))
                        .sum_dim(1)
                        .reshape([b, h, w, 2]);
                    (mask, deformation, occlusion_logits.map(sigmoid))
                }
            };
        DenseMotion {
            mask,
            sparse_deformed,
            deformation,
            occlusion_map,
        }
    }
}

impl InferenceForm for DenseMotionNetwork {
    fn into_inference_form(mut self) -> Self {
        self.hourglass = self.hourglass.into_inference_form();
        self.stacked_heads = self
            .occlusion
            .as_ref()
            .and_then(|occlusion| stacked_heads(&self.mask, occlusion));
        self
    }
}
