//! TPSMM's keypoint detector (§3.1, `modules/keypoint_detector.py`): a ResNet-18 regresses
//! `K × N` keypoints directly, K thin-plate-spline transformations of N = 5 control points each,
//! `p = 2 σ(ResNet(x)) − 1` in [−1, 1]. No heatmaps and no Jacobians (unlike FOMM's).

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::POINTS_PER_TPS;
use super::resnet::ResNet18;
use crate::model::InferenceForm;
use crate::model::Keypoints;

#[derive(Module, Debug)]
pub struct KpDetector {
    pub fg_encoder: ResNet18,
    pub num_tps: usize,
}

impl KpDetector {
    pub fn new(num_tps: usize, num_channels: usize, resnet_width: usize, device: &Device) -> Self {
        Self {
            fg_encoder: ResNet18::new(num_channels, resnet_width, num_tps * POINTS_PER_TPS * 2, device),
            num_tps,
        }
    }

    /// [b, c, h, w] → keypoints [b, K·5, 2] (TPSMM's `fg_kp`).
    pub fn forward(&self, image: Tensor<4>) -> Keypoints {
        let [b, _, _, _] = image.dims();
        let raw = self.fg_encoder.forward(image);
        let value = (sigmoid(raw) * 2.0 - 1.0).reshape([b, self.num_tps * POINTS_PER_TPS, 2]);
        Keypoints { value, jacobian: None }
    }
}

impl InferenceForm for KpDetector {
    fn into_inference_form(mut self) -> Self {
        self.fg_encoder = self.fg_encoder.into_inference_form();
        self
    }
}
