//! torchvision's ResNet-18 (He et al. 2016, `torchvision/models/resnet.py`), the backbone of
//! TPSMM's keypoint detector and background motion predictor: a 7×7 stride-2 stem, 3×3 max
//! pooling, four stages of two `BasicBlock`s (`y = relu(bn2(conv2(relu(bn1(conv1(x))))) + x)`,
//! the shortcut a strided 1×1 convolution where the shape changes), global average pooling and
//! a linear head. Parameter names are torchvision's, so state dicts load by key.
//!
//! The widths are `w, 2w, 4w, 8w` with `w = 64` in torchvision; the project's small fixtures use
//! a narrower `w` (same computation, narrower tensors).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use crate::kernels::{Fused, InferenceConv, convolve};
use crate::model::blocks::{BatchNorm2d, InferenceForm};

/// A convolution without bias, as torchvision's `conv3x3`/`conv1x1` and the stem.
fn conv_no_bias(input: usize, output: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let padding = kernel / 2;
    Conv2dConfig::new([input, output], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_bias(false)
        .init(device)
}

/// The shortcut of a block that changes shape: `nn.Sequential(conv1x1, BatchNorm2d)`
/// (torchvision's `downsample.0`, `downsample.1`; the importer maps them to these names).
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub norm: BatchNorm2d,
}

/// torchvision's `BasicBlock`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub conv2: Conv2d,
    pub bn2: BatchNorm2d,
    pub downsample: Option<Downsample>,
    /// The inference form of each 3×3 convolution where it has stride 1: its batch norm
    /// folded, conv1's ReLU fused, conv2 adding the shortcut as it writes (the ReLU after the
    /// sum stays apart).
    #[module(skip)]
    pub inference: (Option<InferenceConv>, Option<InferenceConv>),
}

impl BasicBlock {
    fn new(input: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || input != planes).then(|| Downsample {
            conv: conv_no_bias(input, planes, 1, stride, device),
            norm: BatchNorm2d::new(planes, device),
        });
        Self {
            conv1: conv_no_bias(input, planes, 3, stride, device),
            bn1: BatchNorm2d::new(planes, device),
            conv2: conv_no_bias(planes, planes, 3, 1, device),
            bn2: BatchNorm2d::new(planes, device),
            downsample,
            inference: (None, None),
        }
    }

    /// [b, in, h, w] → [b, planes, h/stride, w/stride]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (first, second) = &self.inference;
        let out = first
            .as_ref()
            .and_then(|conv| conv.forward(&x, None))
            .unwrap_or_else(|| relu(self.bn1.forward(convolve(&self.conv1, x.clone()))));
        let identity = match &self.downsample {
            Some(down) => down.norm.forward(convolve(&down.conv, x)),
            None => x,
        };
        let sum = second
            .as_ref()
            .and_then(|conv| conv.forward(&out, Some(&identity)))
            .unwrap_or_else(|| self.bn2.forward(convolve(&self.conv2, out)) + identity);
        relu(sum)
    }
}

impl InferenceForm for BasicBlock {
    fn into_inference_form(mut self) -> Self {
        let relu = Fused {
            relu: true,
            ..Fused::default()
        };
        self.inference = (
            InferenceConv::new(&self.conv1, Some(self.bn1.folded()), relu),
            InferenceConv::new(&self.conv2, Some(self.bn2.folded()), Fused::default()),
        );
        self
    }
}

/// torchvision's `resnet18()` with `input_channels` input channels, base width `width` and a
/// linear head of `outputs` features.
#[derive(Module, Debug)]
pub struct ResNet18 {
    pub conv1: Conv2d,
    pub bn1: BatchNorm2d,
    pub layer1: Vec<BasicBlock>,
    pub layer2: Vec<BasicBlock>,
    pub layer3: Vec<BasicBlock>,
    pub layer4: Vec<BasicBlock>,
    pub fc: Linear,
}

impl InferenceForm for ResNet18 {
    fn into_inference_form(mut self) -> Self {
        self.layer1 = self.layer1.into_inference_form();
        self.layer2 = self.layer2.into_inference_form();
        self.layer3 = self.layer3.into_inference_form();
        self.layer4 = self.layer4.into_inference_form();
        self
    }
}

impl ResNet18 {
    pub fn new(input_channels: usize, width: usize, outputs: usize, device: &Device) -> Self {
        let stage = |input: usize, planes: usize, stride: usize| {
            vec![
                BasicBlock::new(input, planes, stride, device),
                BasicBlock::new(planes, planes, 1, device),
            ]
        };
        Self {
            conv1: conv_no_bias(input_channels, width, 7, 2, device),
            bn1: BatchNorm2d::new(width, device),
            layer1: stage(width, width, 1),
            layer2: stage(width, 2 * width, 2),
            layer3: stage(2 * width, 4 * width, 2),
            layer4: stage(4 * width, 8 * width, 2),
            fc: LinearConfig::new(8 * width, outputs).init(device),
        }
    }

    /// [b, c, h, w] → [b, outputs]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(convolve(&self.conv1, x)));
        let pool = MaxPoolOptions::new([3, 3]).with_stride([2, 2]).with_padding([1, 1]);
        let mut x = max_pool2d(x, pool);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, c]);
        self.fc.forward(pooled)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::Distribution;

    use super::*;

    /// The inference form (stride-1 3×3 convolutions prepared: Winograd on 16×16 maps and up,
    /// the patch GEMM below) gives what the network gives as trained, at two input sizes.
    #[test]
    fn the_inference_form_matches_the_network_as_trained() {
        let device = Device::flex();
        device.seed(9);
        let mut net = ResNet18::new(3, 8, 10, &device);
        let stats = |c: usize, lo: f64, hi: f64| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device);
        for block in net
            .layer1
            .iter_mut()
            .chain(&mut net.layer2)
            .chain(&mut net.layer3)
            .chain(&mut net.layer4)
        {
            for norm in [&mut block.bn1, &mut block.bn2] {
                let c = norm.weight.dims()[0];
                norm.weight = Param::from_tensor(stats(c, 0.5, 1.5));
                norm.bias = Param::from_tensor(stats(c, -0.2, 0.2));
                norm.running_mean = burn::module::RunningState::new(stats(c, -0.2, 0.2));
                norm.running_var = burn::module::RunningState::new(stats(c, 0.5, 2.0));
            }
        }
        let fast = net.clone().into_inference_form();
        assert!(fast.layer1[0].inference.0.is_some() && fast.layer2[0].inference.0.is_none());
        for size in [64, 128] {
            let x = Tensor::<4>::random([1, 3, size, size], Distribution::Uniform(0.0, 1.0), &device);
            let difference: f32 = (net.forward(x.clone()) - fast.forward(x)).abs().max().into_scalar();
            assert!(difference < 1e-4, "{size}: {difference}");
        }
    }
}
