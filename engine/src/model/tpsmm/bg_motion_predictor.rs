//! TPSMM's background motion predictor (§3.2, `modules/bg_motion_predictor.py`): a ResNet-18 on
//! the source and driving frames side by side regresses the background's affine transformation
//! `A_bg`, a 3×3 matrix whose last row is `[0 0 1]`. Training uses it from `bg_start` on; the
//! official demo animates without it.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::resnet::ResNet18;
use crate::model::InferenceForm;

#[derive(Module, Debug)]
pub struct BgMotionPredictor {
    pub bg_encoder: ResNet18,
}

impl BgMotionPredictor {
    /// `num_channels` per frame (the encoder reads both frames, 2·num_channels); its head starts
    /// at the identity transformation (zero weights, bias `[1 0 0 0 1 0]`), as TPSMM's does.
    pub fn new(num_channels: usize, resnet_width: usize, device: &Device) -> Self {
        let mut bg_encoder = ResNet18::new(2 * num_channels, resnet_width, 6, device);
        bg_encoder.fc.weight = bg_encoder.fc.weight.map(|w| w.zeros_like());
        bg_encoder.fc.bias = bg_encoder
            .fc
            .bias
            .map(|b| b.map(|b| Tensor::from_floats([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &b.device())));
        Self { bg_encoder }
    }

    /// Source and driving [b, c, h, w] → `A_bg` [b, 3, 3].
    pub fn forward(&self, source: Tensor<4>, driving: Tensor<4>) -> Tensor<3> {
        let [b, _, _, _] = source.dims();
        let device = source.device();
        let prediction = self.bg_encoder.forward(Tensor::cat(vec![source, driving], 1));
        let last_row = Tensor::<2>::from_floats([[0.0, 0.0, 1.0]], &device)
            .reshape([1, 1, 3])
            .repeat_dim(0, b);
        Tensor::cat(vec![prediction.reshape([b, 2, 3]), last_row], 1)
    }
}

impl InferenceForm for BgMotionPredictor {
    fn into_inference_form(mut self) -> Self {
        self.bg_encoder = self.bg_encoder.into_inference_form();
        self
    }
}
