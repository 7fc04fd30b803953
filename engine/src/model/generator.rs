//! The occlusion-aware generator (FOMM §3.2, `modules/generator.py`): encodes the source,
//! warps its features by the dense motion, masks them by the occlusion map and decodes the
//! driving frame.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::blocks::{DownBlock2d, InferenceForm, ResBlock2d, SameBlock2d, UpBlock2d, conv, resize_bilinear};
use super::dense_motion::{DenseMotion, DenseMotionConfig, DenseMotionNetwork};
use super::keypoints::Keypoints;
use crate::kernels::{convolve_sigmoid, gpu, grid_sample};

/// `model_params.generator_params` (+ `common_params`). Defaults: FOMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct GeneratorConfig {
    pub dense_motion: DenseMotionConfig,
    #[config(default = 3)]
    pub num_channels: usize,
    #[config(default = 10)]
    pub num_kp: usize,
    #[config(default = 64)]
    pub block_expansion: usize,
    #[config(default = 512)]
    pub max_features: usize,
    #[config(default = 2)]
    pub num_down_blocks: usize,
    #[config(default = 6)]
    pub num_bottleneck_blocks: usize,
    #[config(default = true)]
    pub estimate_occlusion_map: bool,
    #[config(default = true)]
    pub estimate_jacobian: bool,
}

#[derive(Module, Debug)]
pub struct OcclusionAwareGenerator {
    pub dense_motion_network: DenseMotionNetwork,
    pub first: SameBlock2d,
    pub down_blocks: Vec<DownBlock2d>,
    pub up_blocks: Vec<UpBlock2d>,
    /// FOMM's `nn.Sequential` of `r0, r1, ...` (the importer maps `rN` to index N).
    pub bottleneck: Vec<ResBlock2d>,
    pub final_conv: Conv2d,
}

/// Everything the generator computes; the maps PriorityCut and the UI need are kept.
#[derive(Debug, Clone)]
pub struct GeneratorOutput {
    /// [b, kp+1, h, w] dense-motion mask; channel 0 = background.
    pub mask: Tensor<4>,
    /// [b, kp+1, c, h, w]
    pub sparse_deformed: Tensor<5>,
    /// [b, h, w, 2] at the dense motion's resolution.
    pub deformation: Tensor<4>,
    /// [b, 1, h, w] at the dense motion's resolution.
    pub occlusion_map: Option<Tensor<4>>,
    /// [b, c, H, W] the generated driving frame in (0, 1).
    pub prediction: Tensor<4>,
}

impl GeneratorOutput {
    /// [b, c, H, W] the source image warped by the dense motion at full resolution (FOMM's
    /// `deformed`): a picture for people, which the prediction does not use, so it is made
    /// only when asked for (a resize and a warp per frame spared).
    pub fn deformed(&self, source: Tensor<4>) -> Tensor<4> {
        deform_input(source.cast(self.deformation.dtype()), self.deformation.clone())
    }
}

impl GeneratorConfig {
    pub fn init(&self, device: &Device) -> OcclusionAwareGenerator {
        let ch = |level: usize| self.max_features.min(self.block_expansion << level);
        let mut dense = self.dense_motion.clone();
        dense.num_kp = self.num_kp;
        dense.num_channels = self.num_channels;
        dense.estimate_occlusion_map = self.estimate_occlusion_map;
        let n = self.num_down_blocks;
        OcclusionAwareGenerator {
            dense_motion_network: dense.init(device),
            first: SameBlock2d::new(self.num_channels, self.block_expansion, 7, 3, device),
            down_blocks: (0..n).map(|i| DownBlock2d::new(ch(i), ch(i + 1), device)).collect(),
            up_blocks: (0..n)
                .map(|i| UpBlock2d::new(ch(n - i), ch(n - i - 1), device))
                .collect(),
            bottleneck: (0..self.num_bottleneck_blocks)
                .map(|_| ResBlock2d::new(ch(n), 3, 1, device))
                .collect(),
            final_conv: conv(self.block_expansion, self.num_channels, 7, 3, device),
        }
    }
}

/// Warps `input` [b, c, H, W] by `deformation` [b, h, w, 2], resizing the field bilinearly
/// when the resolutions differ (FOMM's `deform_input`).
pub fn deform_input(input: Tensor<4>, deformation: Tensor<4>) -> Tensor<4> {
    let [_, h_old, w_old, _] = deformation.dims();
    let [_, _, h, w] = input.dims();
    let deformation = if h_old != h || w_old != w {
        resize_bilinear(deformation.permute([0, 3, 1, 2]), h, w).permute([0, 2, 3, 1])
    } else {
        deformation
    };
    grid_sample(input, deformation)
}

/// FOMM's `deform_input(features, deformation) · occlusion_map` (the map resized to the
/// features' resolution where they differ; no product without a map): on a GPU in one launch
/// where the resolutions agree.
fn occluded_features(features: &Tensor<4>, dense: &DenseMotion) -> Tensor<4> {
    let occlusion = dense.occlusion_map.as_ref();
    if let Some(warped) = occlusion.and_then(|map| gpu::warp_occluded(features, &dense.deformation, map)) {
        return warped;
    }
    let out = deform_input(features.clone(), dense.deformation.clone());
    let Some(occlusion) = occlusion else {
        return out;
    };
    let [_, _, h, w] = out.dims();
    let [_, _, oh, ow] = occlusion.dims();
    let occlusion = if (oh, ow) != (h, w) {
        resize_bilinear(occlusion.clone(), h, w)
    } else {
        occlusion.clone()
    };
    out * occlusion
}

/// What the generator computes of the source alone: its encoding (`first` and the down blocks,
/// a fifth of a vox-256 frame's arithmetic) and the dense-motion network's downsampled copy.
/// FOMM recomputes both for every driving frame; an animation holds the source fixed and
/// computes them once ([`OcclusionAwareGenerator::encode_source`]).
#[derive(Debug, Clone)]
pub struct EncodedSource {
    /// [b, c, H, W] in [0, 1].
    pub image: Tensor<4>,
    /// [b, features, H / 2^n, W / 2^n] after the down blocks.
    pub features: Tensor<4>,
    /// [b, c, h, w] at the dense motion's resolution.
    pub downsampled: Tensor<4>,
}

impl EncodedSource {
    /// The same source `n` times over, for a batch of driving frames.
    pub fn repeat(&self, n: usize) -> Self {
        Self {
            image: self.image.clone().repeat_dim(0, n),
            features: self.features.clone().repeat_dim(0, n),
            downsampled: self.downsampled.clone().repeat_dim(0, n),
        }
    }
}

impl OcclusionAwareGenerator {
    /// Source [b, c, H, W] in [0, 1] and keypoints of the driving and source frames.
    pub fn forward(&self, source: Tensor<4>, kp_driving: &Keypoints, kp_source: &Keypoints) -> GeneratorOutput {
        self.forward_encoded(&self.encode_source(source), kp_driving, kp_source)
    }

    /// The part of [`forward`](Self::forward) that depends on the source alone.
    pub fn encode_source(&self, source: Tensor<4>) -> EncodedSource {
        let mut features = self.first.forward(source.clone());
        for block in &self.down_blocks {
            features = block.forward(features);
        }
        EncodedSource {
            downsampled: self.dense_motion_network.downsample(source.clone()),
            image: source,
            features,
        }
    }

    /// [`forward`](Self::forward) of an [`encode_source`](Self::encode_source)d source: the same
    /// numbers, without recomputing the source's part.
    pub fn forward_encoded(
        &self,
        source: &EncodedSource,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
    ) -> GeneratorOutput {
        let dense = self
            .dense_motion_network
            .forward_downsampled(source.downsampled.clone(), kp_driving, kp_source);
        let mut out = occluded_features(&source.features, &dense);
        for block in &self.bottleneck {
            out = block.forward(out);
        }
        for block in &self.up_blocks {
            out = block.forward(out);
        }
        let prediction = convolve_sigmoid(&self.final_conv, out);
        GeneratorOutput {
            mask: dense.mask,
            sparse_deformed: dense.sparse_deformed,
            deformation: dense.deformation,
            occlusion_map: dense.occlusion_map,
            prediction,
        }
    }
}

impl InferenceForm for OcclusionAwareGenerator {
    fn into_inference_form(mut self) -> Self {
        self.dense_motion_network = self.dense_motion_network.into_inference_form();
        self.first = self.first.into_inference_form();
        self.down_blocks = self.down_blocks.into_inference_form();
        self.bottleneck = self.bottleneck.into_inference_form();
        self.up_blocks = self.up_blocks.into_inference_form();
        self
    }
}
