//! The inference form of the keypoint detector and the generator, made once from their weights
//! when a model is opened for animation on the CPU.
//!
//! It computes what the training form computes in eval mode, with less work:
//! - every eval-mode batch norm is folded into the convolution in front of it
//!   (`w' = w·γ/√(σ²+ε)`, `b' = (b − μ)·γ/√(σ²+ε) + β`), or, in a pre-activation `ResBlock2d`,
//!   applied with its ReLU while the next convolution reads its input;
//! - the 3×3 convolutions of the hourglasses, the source encoder, the bottleneck and the decoder
//!   run as Winograd F(4×4, 3×3) on channels-last maps ([`super::winograd`]), ReLU, upsampling,
//!   pooling and the residual add done in the same pass;
//! - activations stay channels-last from one block to the next; they become burn tensors only
//!   where burn's own operations take over (the 7×7 heads, `grid_sample`, softmax).
//!
//! The glue between the parts (keypoints from heatmaps, sparse motions, warping) is the
//! training form's own code, called with these parts as stand-ins.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::blocks::{BatchNorm2d, DownBlock2d, Hourglass, ResBlock2d, SameBlock2d, UpBlock2d};
use super::dense_motion::{DenseMotion, DenseMotionNetwork};
use super::generator::{EncodedSource, GeneratorOutput, OcclusionAwareGenerator};
use super::keypoint_detector::KpDetector;
use super::keypoints::Keypoints;
use crate::kernels::cpu::direct_conv::DirectConv;
use crate::kernels::cpu::winograd::{ChannelAffine, Fused, FusedConv3x3, Nhwc, to_vec};

fn affine(norm: &BatchNorm2d) -> ChannelAffine {
    ChannelAffine::batch_norm(
        &to_vec(norm.weight.val()),
        &to_vec(norm.bias.val()),
        &to_vec(norm.running_mean.value()),
        &to_vec(norm.running_var.value()),
        BatchNorm2d::EPSILON,
    )
}

fn is_3x3(conv: &Conv2d) -> bool {
    let [_, _, kh, kw] = conv.weight.dims();
    (kh, kw) == (3, 3)
}

fn fused(conv: &Conv2d, output_norm: Option<&BatchNorm2d>, fused: Fused) -> FusedConv3x3 {
    FusedConv3x3::new(
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        output_norm.map(affine),
        fused,
    )
}

/// A head: FOMM pads its 7×7 convolutions symmetrically.
fn direct(conv: &Conv2d) -> DirectConv {
    DirectConv::new(conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), padding(conv))
}

fn padding(conv: &Conv2d) -> usize {
    match &conv.padding {
        PaddingConfig2d::Explicit(top, ..) => *top,
        PaddingConfig2d::Valid => 0,
        PaddingConfig2d::Same => conv.weight.dims()[2] / 2,
    }
}

/// `relu(bn(conv(x)))` with a large kernel (the generator's `first`, 7×7).
fn same_block(block: &SameBlock2d) -> DirectConv {
    DirectConv::with_output_norm(
        block.conv.weight.val(),
        block.conv.bias.as_ref().map(|b| b.val()),
        padding(&block.conv),
        Some(affine(&block.norm)),
        true,
    )
}

/// `relu(bn(conv(x)))` then 2×2 average pooling.
fn down_block(block: &DownBlock2d) -> FusedConv3x3 {
    let f = Fused {
        relu: true,
        pool_output: true,
        ..Fused::default()
    };
    fused(&block.conv, Some(&block.norm), f)
}

/// `relu(bn(conv(up(x))))`.
fn up_block(block: &UpBlock2d) -> FusedConv3x3 {
    let f = Fused {
        upsample_input: true,
        relu: true,
        ..Fused::default()
    };
    fused(&block.conv, Some(&block.norm), f)
}

/// `x + conv2(relu(bn2(conv1(relu(bn1(x))))))`: bn1 + ReLU are applied as conv1 reads x, bn2 is
/// folded into conv1, and conv2 adds x as it writes.
#[derive(Debug)]
struct FusedResBlock {
    first: FusedConv3x3,
    second: FusedConv3x3,
}

impl FusedResBlock {
    fn new(block: &ResBlock2d) -> Self {
        let first = Fused {
            input_affine: Some(affine(&block.norm1)),
            relu: true,
            ..Fused::default()
        };
        Self {
            first: fused(&block.conv1, Some(&block.norm2), first),
            second: fused(&block.conv2, None, Fused::default()),
        }
    }

    fn forward(&self, x: &Nhwc<'_>) -> Nhwc<'static> {
        self.second.forward(&self.first.forward(x, None), Some(x))
    }
}

/// [`Hourglass`] in inference form.
#[derive(Debug)]
struct FusedHourglass {
    down: Vec<FusedConv3x3>,
    up: Vec<FusedConv3x3>,
}

impl FusedHourglass {
    fn new(hourglass: &Hourglass) -> Self {
        Self {
            down: hourglass.encoder.down_blocks.iter().map(down_block).collect(),
            up: hourglass.decoder.up_blocks.iter().map(up_block).collect(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Nhwc<'static> {
        let mut skips = vec![Nhwc::from_tensor(x)];
        for block in &self.down {
            let next = block.forward(&skips[skips.len() - 1], None);
            skips.push(next);
        }
        let mut out = skips.pop().expect("the encoder output is always present");
        for block in &self.up {
            let skip = skips.pop().expect("one skip per up block");
            out = block.forward(&out, None).cat(&skip);
        }
        out
    }
}

/// An hourglass and the two 7×7 heads on its output.
#[derive(Debug)]
struct HourglassHeads {
    hourglass: FusedHourglass,
    first: DirectConv,
    second: Option<DirectConv>,
}

impl HourglassHeads {
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Option<Tensor<4>>) {
        let device = x.device();
        let features = self.hourglass.forward(x);
        let second = self.second.as_ref().map(|head| head.forward(&features, &device));
        (self.first.forward(&features, &device), second)
    }
}

/// The keypoint detector's and the generator's inference form (see the module's comment).
#[derive(Debug)]
pub struct InferenceForm {
    keypoint_heads: HourglassHeads,
    dense_motion_heads: HourglassHeads,
    /// `first`: 7×7, batch norm and ReLU.
    first: DirectConv,
    source_down_blocks: Vec<FusedConv3x3>,
    bottleneck: Vec<FusedResBlock>,
    up_blocks: Vec<FusedConv3x3>,
    final_conv: DirectConv,
    device: Device,
}

impl InferenceForm {
    /// The inference form of `kp_detector` and `generator`, where it pays: on burn's CPU
    /// backend (flex), without autodiff. `None` elsewhere (a GPU runs burn's own kernels), or
    /// for networks whose blocks are not FOMM's 3×3 ones.
    pub fn new(kp_detector: &KpDetector, generator: &OcclusionAwareGenerator) -> Option<Self> {
        let device = generator.final_conv.weight.device();
        if device.is_autodiff() || device != Device::flex() {
            return None;
        }
        let hourglass_convs = |h: &Hourglass| {
            let down = h.encoder.down_blocks.iter().map(|b| &b.conv);
            let up = h.decoder.up_blocks.iter().map(|b| &b.conv);
            down.chain(up).all(is_3x3)
        };
        let generator_convs = generator
            .down_blocks
            .iter()
            .map(|b| &b.conv)
            .chain(generator.bottleneck.iter().flat_map(|b| [&b.conv1, &b.conv2]))
            .chain(generator.up_blocks.iter().map(|b| &b.conv))
            .all(is_3x3);
        if !(hourglass_convs(&kp_detector.predictor)
            && hourglass_convs(&generator.dense_motion_network.hourglass)
            && generator_convs)
        {
            return None;
        }
        let dense = &generator.dense_motion_network;
        Some(Self {
            keypoint_heads: HourglassHeads {
                hourglass: FusedHourglass::new(&kp_detector.predictor),
                first: direct(&kp_detector.kp),
                second: kp_detector.jacobian.as_ref().map(direct),
            },
            dense_motion_heads: HourglassHeads {
                hourglass: FusedHourglass::new(&dense.hourglass),
                first: direct(&dense.mask),
                second: dense.occlusion.as_ref().map(direct),
            },
            first: same_block(&generator.first),
            source_down_blocks: generator.down_blocks.iter().map(down_block).collect(),
            bottleneck: generator.bottleneck.iter().map(FusedResBlock::new).collect(),
            up_blocks: generator.up_blocks.iter().map(up_block).collect(),
            final_conv: direct(&generator.final_conv),
            device,
        })
    }

    /// [`KpDetector::forward_with_heatmap`].
    pub fn keypoints_with_heatmap(&self, kp_detector: &KpDetector, image: Tensor<4>) -> (Keypoints, Tensor<4>) {
        kp_detector.forward_with(image, |x| self.keypoint_heads.forward(x))
    }

    /// [`OcclusionAwareGenerator::encode_source`].
    pub fn encode_source(&self, generator: &OcclusionAwareGenerator, source: Tensor<4>) -> EncodedSource {
        generator.encode_source_with(source, |image| {
            let mut x = Nhwc::from_tensor(self.first.forward(&Nhwc::from_tensor(image), &self.device));
            for block in &self.source_down_blocks {
                x = block.forward(&x, None);
            }
            x.into_tensor(&self.device)
        })
    }

    /// [`DenseMotionNetwork::forward_downsampled`](super::DenseMotionNetwork::forward_downsampled).
    pub fn dense_motion(
        &self,
        network: &DenseMotionNetwork,
        downsampled: Tensor<4>,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
    ) -> DenseMotion {
        network.forward_downsampled_with(downsampled, kp_driving, kp_source, |x| {
            self.dense_motion_heads.forward(x)
        })
    }

    /// [`OcclusionAwareGenerator::forward_encoded`].
    pub fn generate(
        &self,
        generator: &OcclusionAwareGenerator,
        source: &EncodedSource,
        kp_driving: &Keypoints,
        kp_source: &Keypoints,
    ) -> GeneratorOutput {
        let decode = |out: Tensor<4>| {
            let mut x = Nhwc::from_tensor(out);
            for block in &self.bottleneck {
                x = block.forward(&x);
            }
            for block in &self.up_blocks {
                x = block.forward(&x, None);
            }
            self.final_conv.forward(&x, &self.device)
        };
        generator.forward_encoded_with(
            source,
            kp_driving,
            kp_source,
            |x| self.dense_motion_heads.forward(x),
            decode,
        )
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use crate::checkpoint::FommModels;
    use crate::config::FommConfig;

    use super::*;

    /// At vox-256's full size every kernel path runs: Winograd on the large maps, the patch GEMM
    /// on the hourglasses' small ones, the direct heads.
    #[test]
    fn the_inference_form_matches_the_training_form_at_vox256_size() {
        let device = Device::flex();
        let config = FommConfig::vox256();
        let training = FommModels::init(&config, &device);
        let inference = training.clone().with_inference_form();
        assert!(inference.inference.is_some(), "made on flex");
        let image = || Tensor::<4>::random([1, 3, 256, 256], Distribution::Uniform(0.0, 1.0), &device);
        let (source, driving) = (image(), image());

        let (kp_train, heat_train) = training.keypoints_with_heatmap(driving.clone());
        let (kp_fast, heat_fast) = inference.keypoints_with_heatmap(driving);
        let kp_source = training.keypoints(source.clone());
        let out_train = training.generate(&training.encode_source(source.clone()), &kp_train, &kp_source);
        let out_fast = inference.generate(&inference.encode_source(source), &kp_train, &kp_source);

        let max_diff = |a: Tensor<4>, b: Tensor<4>| -> f32 { (a - b).abs().max().into_scalar() };
        let kp_diff: f32 = (kp_train.value - kp_fast.value).abs().max().into_scalar();
        assert!(kp_diff < 1e-5, "keypoints {kp_diff}");
        assert!(max_diff(heat_train, heat_fast) < 1e-5);
        let occlusion = max_diff(
            out_train.occlusion_map.expect("vox-256 has one"),
            out_fast.occlusion_map.expect("vox-256 has one"),
        );
        assert!(occlusion < 1e-5, "occlusion {occlusion}");
        let prediction = max_diff(out_train.prediction, out_fast.prediction);
        assert!(prediction < 1e-4, "prediction {prediction}");
    }
}
