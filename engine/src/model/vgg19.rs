//! VGG19 (Simonyan & Zisserman 2014) up to relu5_1, the feature extractor of FOMM's perceptual
//! pyramid loss (`modules/model.py`, `Vgg19`): five slices ending at relu1_1, relu2_1, relu3_1,
//! relu4_1 and relu5_1, on images normalized by ImageNet's mean and std.
//!
//! Weights are torchvision's `vgg19` (`features.N.weight`), loaded from a file the user names
//! ([`crate::import::load_vgg19`]); nothing is downloaded.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use super::blocks::conv;
use crate::kernels::{FrozenConv3x3Relu, convolve, max_pool2};

/// torchvision's `features` index of each of the 13 convolutions up to conv5_1.
pub const FEATURE_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28];

/// (in, out) channels of those convolutions.
pub const CHANNELS: [(usize, usize); 13] = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
];

/// Convolutions followed by a 2×2 max pool (features 4, 9, 18, 27).
const POOL_AFTER: [usize; 4] = [1, 3, 7, 11];
/// Convolutions whose ReLU output is a slice output (relu1_1 … relu5_1).
const OUTPUT_AFTER: [usize; 5] = [0, 2, 4, 8, 12];

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Module, Debug)]
pub struct Vgg19 {
    /// conv1_1 … conv5_1 (torchvision features 0, 2, 5, …, 28).
    pub convs: Vec<Conv2d>,
    /// The same convolutions with their weights transformed once, made by [`Vgg19::frozen`]
    /// once the weights are loaded and fixed; empty until then.
    #[module(skip)]
    pub frozen: Vec<FrozenConv3x3Relu>,
}

impl Vgg19 {
    /// Randomly initialised; load weights with [`crate::import::load_vgg19`].
    pub fn new(device: &Device) -> Self {
        Self {
            convs: CHANNELS.iter().map(|&(i, o)| conv(i, o, 3, 1, device)).collect(),
            frozen: Vec::new(),
        }
    }

    /// The network with its weights fixed for good (`no_grad` first): each convolution's
    /// Winograd transform is made here, once, instead of at every call of a training step.
    pub fn frozen(mut self) -> Self {
        self.frozen = self.convs.iter().map_while(FrozenConv3x3Relu::new).collect();
        if self.frozen.len() != self.convs.len() {
            self.frozen.clear();
        }
        self
    }

    /// Images [b, 3, h, w] in [0, 1] → the five slice outputs [b, c, h', w'], relu1_1 first.
    /// Once the weights are [`frozen`](Self::frozen), on flex, each layer is one operation
    /// whose output is stored channels-last, read in place by the next (no layout copies).
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let device = x.device();
        let stat = |v: [f32; 3]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 3, 1, 1]), &device);
        let mut out = (x - stat(IMAGENET_MEAN)) / stat(IMAGENET_STD);
        let mut slices = Vec::with_capacity(OUTPUT_AFTER.len());
        for (i, conv) in self.convs.iter().enumerate() {
            out = match self.frozen.get(i).and_then(|frozen| frozen.forward(&out)) {
                Some(y) => y,
                None => relu(convolve(conv, out)),
            };
            if OUTPUT_AFTER.contains(&i) {
                slices.push(out.clone());
            }
            if POOL_AFTER.contains(&i) {
                out = max_pool2(out);
            }
        }
        slices
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::test_support::assert_close;

    /// The frozen network (Winograd weights made once, outputs stored channels-last) against
    /// the layer-by-layer one (the training convolutions, their ReLUs apart): slices and the
    /// image's gradient.
    #[test]
    fn frozen_slices_match_the_layer_by_layer_network() {
        let device = Device::flex().autodiff();
        let plain = Vgg19::new(&device).no_grad();
        let frozen = plain.clone().frozen();
        assert_eq!(frozen.frozen.len(), CHANNELS.len(), "every layer frozen");
        let image = Tensor::<4>::random([2, 3, 36, 34], Distribution::Uniform(0.0, 1.0), &device);
        let run = |vgg: &Vgg19| {
            let x = Tensor::<4>::from_data(image.to_data(), &device).require_grad();
            let slices = vgg.forward(x.clone());
            let total = slices
                .iter()
                .enumerate()
                .map(|(i, s)| s.clone().abs().mean() * (i + 1) as f64)
                .reduce(|a, b| a + b)
                .expect("five slices");
            let dx = x.grad(&total.backward()).expect("dx");
            (slices, dx)
        };
        let (slices, dx) = run(&frozen);
        let (reference, reference_dx) = run(&plain);
        for (i, (ours, theirs)) in slices.into_iter().zip(reference).enumerate() {
            assert_close(&format!("slice {}", i + 1), ours.inner(), theirs.inner(), 1e-4);
        }
        assert_close("image gradient", dx, reference_dx, 1e-4);
    }

    #[test]
    fn slices_have_vgg_shapes() {
        let device = Device::flex();
        let vgg = Vgg19::new(&device);
        let shapes: Vec<[usize; 4]> = vgg
            .forward(Tensor::zeros([1, 3, 32, 32], &device))
            .iter()
            .map(|t| t.dims())
            .collect();
        assert_eq!(
            shapes,
            vec![
                [1, 64, 32, 32],
                [1, 128, 16, 16],
                [1, 256, 8, 8],
                [1, 512, 4, 4],
                [1, 512, 2, 2]
            ]
        );
    }
}
