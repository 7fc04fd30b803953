//! MTCNN's proposal network (Zhang et al. 2016, "Joint Face Detection and Alignment using
//! Multi-task Cascaded Convolutional Networks", §2.1 stage 1; facenet-pytorch's `PNet`): a fully
//! convolutional net slid over an image pyramid. Each output cell scores a 12×12 window as
//! face / not face and regresses its box: "we exploit a fully convolutional network, called
//! Proposal Network (P-Net), to obtain the candidate facial windows and their bounding box
//! regression vectors".

use burn::module::Module;
use burn::nn::PRelu;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::{conv, max_pool, prelu};

/// Box regression `[n, 4, h, w]` and face probability `[n, 2, h, w]` (channel 1: face).
#[derive(Debug, Clone)]
pub struct PNetOutput {
    pub regression: Tensor<4>,
    pub probability: Tensor<4>,
}

#[derive(Module, Debug)]
pub struct PNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub conv4_1: Conv2d,
    pub conv4_2: Conv2d,
}

impl PNet {
    pub fn new(device: &Device) -> Self {
        Self {
            conv1: conv(3, 10, 3, device),
            prelu1: prelu(10, device),
            pool1: max_pool(2, 2),
            conv2: conv(10, 16, 3, device),
            prelu2: prelu(16, device),
            conv3: conv(16, 32, 3, device),
            prelu3: prelu(32, device),
            conv4_1: conv(32, 2, 1, device),
            conv4_2: conv(32, 4, 1, device),
        }
    }

    /// `image`: `[n, 3, h, w]`, pixels as `(v − 127.5) / 128`.
    pub fn forward(&self, image: Tensor<4>) -> PNetOutput {
        let x = self.prelu1.forward(self.conv1.forward(image));
        let x = self.pool1.forward(x);
        let x = self.prelu2.forward(self.conv2.forward(x));
        let x = self.prelu3.forward(self.conv3.forward(x));
        PNetOutput {
            probability: softmax(self.conv4_1.forward(x.clone()), 1),
            regression: self.conv4_2.forward(x),
        }
    }
}
