//! MTCNN's output network (§2.1 stage 3; facenet-pytorch's `ONet`): the surviving boxes at
//! 48×48 get a final score, box regression and five facial landmarks: "this stage is similar to
//! the second stage, but in this stage we aim to describe the face in more details. In
//! particular, the network will output five facial landmarks' positions".

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{Linear, PRelu};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::{conv, flatten_like_torch, linear, max_pool, prelu};

/// Box regression `[n, 4]`, landmarks `[n, 10]` (five x's, then five y's, as fractions of the
/// box) and face probability `[n, 2]` (column 1: face).
#[derive(Debug, Clone)]
pub struct ONetOutput {
    pub regression: Tensor<2>,
    pub landmarks: Tensor<2>,
    pub probability: Tensor<2>,
}

#[derive(Module, Debug)]
pub struct ONet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub pool3: MaxPool2d,
    pub conv4: Conv2d,
    pub prelu4: PRelu,
    pub dense5: Linear,
    pub prelu5: PRelu,
    pub dense6_1: Linear,
    pub dense6_2: Linear,
    pub dense6_3: Linear,
}

impl ONet {
    pub const INPUT: usize = 48;

    pub fn new(device: &Device) -> Self {
        Self {
            conv1: conv(3, 32, 3, device),
            prelu1: prelu(32, device),
            pool1: max_pool(3, 2),
            conv2: conv(32, 64, 3, device),
            prelu2: prelu(64, device),
            pool2: max_pool(3, 2),
            conv3: conv(64, 64, 3, device),
            prelu3: prelu(64, device),
            pool3: max_pool(2, 2),
            conv4: conv(64, 128, 2, device),
            prelu4: prelu(128, device),
            dense5: linear(1152, 256, device),
            prelu5: prelu(256, device),
            dense6_1: linear(256, 2, device),
            dense6_2: linear(256, 4, device),
            dense6_3: linear(256, 10, device),
        }
    }

    /// `windows`: `[n, 3, 48, 48]`, pixels as `(v − 127.5) / 128`.
    pub fn forward(&self, windows: Tensor<4>) -> ONetOutput {
        let x = self.prelu1.forward(self.conv1.forward(windows));
        let x = self.pool1.forward(x);
        let x = self.prelu2.forward(self.conv2.forward(x));
        let x = self.pool2.forward(x);
        let x = self.prelu3.forward(self.conv3.forward(x));
        let x = self.pool3.forward(x);
        let x = self.prelu4.forward(self.conv4.forward(x));
        let x = self.prelu5.forward(self.dense5.forward(flatten_like_torch(x)));
        ONetOutput {
            probability: softmax(self.dense6_1.forward(x.clone()), 1),
            regression: self.dense6_2.forward(x.clone()),
            landmarks: self.dense6_3.forward(x),
        }
    }
}
