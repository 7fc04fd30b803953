//! MTCNN's refine network (§2.1 stage 2; facenet-pytorch's `RNet`): every P-Net candidate,
//! resized to 24×24, is scored again and its box regressed: "all candidates are fed to another
//! CNN, called Refine Network (R-Net), which further rejects a large number of false
//! candidates, performs calibration with bounding box regression".

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, PRelu};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::{conv, flatten_like_torch, linear, max_pool, prelu};

/// Box regression `[n, 4]` and face probability `[n, 2]` (column 1: face).
#[derive(Debug, Clone)]
pub struct RNetOutput {
    pub regression: Tensor<2>,
    pub probability: Tensor<2>,
}

#[derive(Module, Debug)]
pub struct RNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub dense4: Linear,
    pub prelu4: PRelu,
    pub dense5_1: Linear,
    pub dense5_2: Linear,
}

impl RNet {
    pub const INPUT: usize = 24;

    pub fn new(device: &Device) -> Self {
        Self {
            conv1: conv(3, 28, 3, device),
            prelu1: prelu(28, device),
            pool1: max_pool(3, 2),
            conv2: conv(28, 48, 3, device),
            prelu2: prelu(48, device),
            pool2: max_pool(3, 2),
            conv3: conv(48, 64, 2, device),
            prelu3: prelu(64, device),
            dense4: linear(576, 128, device),
            prelu4: prelu(128, device),
            dense5_1: linear(128, 2, device),
            dense5_2: linear(128, 4, device),
        }
    }

    /// `windows`: `[n, 3, 24, 24]`, pixels as `(v − 127.5) / 128`.
    pub fn forward(&self, windows: Tensor<4>) -> RNetOutput {
        let x = self.prelu1.forward(self.conv1.forward(windows));
        let x = self.pool1.forward(x);
        let x = self.prelu2.forward(self.conv2.forward(x));
        let x = self.pool2.forward(x);
        let x = self.prelu3.forward(self.conv3.forward(x));
        let x = self.prelu4.forward(self.dense4.forward(flatten_like_torch(x)));
        RNetOutput {
            probability: softmax(self.dense5_1.forward(x.clone()), 1),
            regression: self.dense5_2.forward(x),
        }
    }
}
