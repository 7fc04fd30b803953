//! TPSMM's inpainting network (§3.3, `modules/inpainting_network.py`): encodes the source, warps
//! each encoder level by the optical flow and masks it by the occlusion mask of its resolution,
//! and decodes from the deepest level up, concatenating the warped levels; the output is blended
//! with the warped source where the source is visible:
//!
//! `Î = (1 − Ô) ⊙ D(…) + Ô ⊙ T̃(S)`  (the last occlusion mask `Ô`, at the frame's resolution).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

use super::dense_motion::DenseMotion;
use crate::kernels::{cat_channels, convolve, grid_sample_align_corners};
use crate::model::blocks::{DownBlock2d, InferenceForm, InstanceNorm2d, ResBlock2d, SameBlock2d, UpBlock2d, conv};

/// `model_params.generator_params` (+ `common_params`). Defaults: TPSMM's `vox-256.yaml`.
#[derive(Config, Debug)]
pub struct InpaintingConfig {
    #[config(default = 3)]
    pub num_channels: usize,
    #[config(default = 64)]
    pub block_expansion: usize,
    #[config(default = 512)]
    pub max_features: usize,
    #[config(default = 3)]
    pub num_down_blocks: usize,
    #[config(default = true)]
    pub multi_mask: bool,
}

#[derive(Module, Debug)]
pub struct InpaintingNetwork {
    pub first: SameBlock2d<InstanceNorm2d>,
    pub down_blocks: Vec<DownBlock2d<InstanceNorm2d>>,
    /// Deepest first, as the official list (built shallow first, then reversed).
    pub up_blocks: Vec<UpBlock2d<InstanceNorm2d>>,
    /// Two per level, deepest first.
    pub resblock: Vec<ResBlock2d<InstanceNorm2d>>,
    /// The official `final` (a Rust keyword; the importer maps it).
    pub final_conv: Conv2d,
    pub multi_mask: bool,
}

/// Everything the inpainting network computes.
#[derive(Debug, Clone)]
pub struct InpaintingOutput {
    /// [b, c, H, W] the source warped by the optical flow.
    pub deformed: Tensor<4>,
    /// [b, c, H, W] the generated frame.
    pub prediction: Tensor<4>,
    /// Each encoder level warped and occluded, deepest first: the warp loss's side, whose
    /// gradient reaches the flow only (levels and masks detached, as the official code does).
    pub warped_encoder_maps: Vec<Tensor<4>>,
}

impl InpaintingConfig {
    pub fn init(&self, device: &Device) -> InpaintingNetwork {
        let ch = |i: usize| self.max_features.min(self.block_expansion << i);
        let n = self.num_down_blocks;
        let down_blocks = (0..n).map(|i| DownBlock2d::new(ch(i), ch(i + 1), device)).collect();
        // The decoder at level i reads its up block's output concatenated with the warped
        // encoder level (2×), except at the deepest level.
        let decoder_in = |i: usize| if i == n - 1 { ch(i + 1) } else { 2 * ch(i + 1) };
        let up_blocks = (0..n)
            .rev()
            .map(|i| UpBlock2d::new(decoder_in(i), ch(i), device))
            .collect();
        let resblock = (0..n)
            .rev()
            .flat_map(|i| {
                [
                    ResBlock2d::new(decoder_in(i), 3, 1, device),
                    ResBlock2d::new(decoder_in(i), 3, 1, device),
                ]
            })
            .collect();
        InpaintingNetwork {
            first: SameBlock2d::new(self.num_channels, self.block_expansion, 7, 3, device),
            down_blocks,
            up_blocks,
            resblock,
            final_conv: conv(self.block_expansion, self.num_channels, 7, 3, device),
            multi_mask: self.multi_mask,
        }
    }
}

/// Bilinear resize with `align_corners=True`, as TPSMM resizes flows and masks.
fn resize_aligned(x: Tensor<4>, height: usize, width: usize) -> Tensor<4> {
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(true)
            .with_output_size([height, width]),
    )
}

/// `x` [b, c, h, w] sampled by the flow [b, h', w', 2], resized to `x`'s resolution first.
pub fn deform_input(x: Tensor<4>, deformation: &Tensor<4>) -> Tensor<4> {
    let [_, h_old, w_old, _] = deformation.dims();
    let [_, _, h, w] = x.dims();
    let flow = if (h_old, w_old) == (h, w) {
        deformation.clone()
    } else {
        resize_aligned(deformation.clone().permute([0, 3, 1, 2]), h, w).permute([0, 2, 3, 1])
    };
    grid_sample_align_corners(x, flow)
}

impl InpaintingNetwork {
    /// The source's encoder levels, shallowest first: they depend on the source alone, so an
    /// animation computes them once.
    pub fn encode(&self, source: Tensor<4>) -> Vec<Tensor<4>> {
        let mut levels = vec![self.first.forward(source)];
        for block in &self.down_blocks {
            let next = block.forward(levels[levels.len() - 1].clone());
            levels.push(next);
        }
        levels
    }

    fn occlude(&self, x: Tensor<4>, mask: &Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let [_, _, mh, mw] = mask.dims();
        if !self.multi_mask && (mh, mw) != (h, w) {
            return x * resize_aligned(mask.clone(), h, w);
        }
        x * mask.clone()
    }

    /// The frame for `source` [b, c, H, W] moved by `motion`.
    pub fn forward(&self, source: Tensor<4>, motion: &DenseMotion) -> InpaintingOutput {
        let encoded = self.encode(source.clone());
        self.forward_encoded(source, &encoded, motion)
    }

    /// [`InpaintingNetwork::forward`] from the source's [`encode`](Self::encode)d levels.
    pub fn forward_encoded(&self, source: Tensor<4>, encoded: &[Tensor<4>], motion: &DenseMotion) -> InpaintingOutput {
        let masks = &motion.occlusion_map;
        let deformation = &motion.deformation;
        let mask = |level: usize| &masks[if self.multi_mask { level } else { 0 }];
        let n = self.down_blocks.len();

        // In training the warp loss differentiates the flow through a second warp of each level,
        // detached; in inference the level warped for the decoder is the same value. (Not
        // `is_require_grad`: burn says that of leaves only, and the flow never is one.)
        let training = deformation.device().is_autodiff();
        let for_warp_loss = |level: &Tensor<4>, warped: &Tensor<4>, mask: &Tensor<4>| {
            if training {
                self.occlude(
                    deform_input(level.clone().detach(), deformation),
                    &mask.clone().detach(),
                )
            } else {
                warped.clone()
            }
        };
        let deepest = &encoded[n];
        let mut out = self.occlude(deform_input(deepest.clone(), deformation), mask(0));
        let mut warped_encoder_maps = vec![for_warp_loss(deepest, &out, mask(0))];
        let mut skip = out.clone();
        for i in 0..n {
            out = self.resblock[2 * i].forward(out);
            out = self.resblock[2 * i + 1].forward(out);
            out = self.up_blocks[i].forward(out);
            let level = &encoded[n - 1 - i];
            skip = self.occlude(deform_input(level.clone(), deformation), mask(i + 1));
            warped_encoder_maps.push(for_warp_loss(level, &skip, mask(i + 1)));
            if i + 1 < n {
                out = cat_channels(vec![out, skip.clone()]);
            }
        }
        let deformed = deform_input(source, deformation);
        let last = masks[masks.len() - 1].clone();
        let [_, _, h, w] = out.dims();
        let last = if self.multi_mask {
            last
        } else {
            resize_aligned(last, h, w)
        };
        let visible = last.clone();
        let hidden = last.neg() + 1.0;
        let out = out * hidden.clone() + skip;
        let out = sigmoid(convolve(&self.final_conv, out));
        let prediction = out * hidden + deformed.clone() * visible;
        InpaintingOutput {
            deformed,
            prediction,
            warped_encoder_maps,
        }
    }
}

impl InpaintingNetwork {
    /// The driving frame's own encoder levels, each masked by the occlusion mask of its
    /// resolution, shallowest first: the warp loss's targets (`get_encode`; no gradient reaches
    /// them or the masks). `occlusion_map` coarsest first, as the dense motion gives them.
    pub fn encode_driving(&self, driving: Tensor<4>, occlusion_map: &[Tensor<4>]) -> Vec<Tensor<4>> {
        let finest = occlusion_map.len() - 1;
        let mask = |i: usize| occlusion_map[finest.saturating_sub(i)].clone().detach();
        let mut out = self.first.forward(driving.detach()).detach();
        let mut levels = vec![self.occlude(out.clone(), &mask(0))];
        for (i, block) in self.down_blocks.iter().enumerate() {
            out = block.forward(out).detach();
            levels.push(self.occlude(out.clone(), &mask(i + 1)));
        }
        levels
    }
}

impl InferenceForm for InpaintingNetwork {
    fn into_inference_form(mut self) -> Self {
        self.first = self.first.into_inference_form();
        self.down_blocks = self.down_blocks.into_inference_form();
        self.up_blocks = self.up_blocks.into_inference_form();
        self.resblock = self.resblock.into_inference_form();
        self
    }
}
