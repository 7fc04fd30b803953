//! TPSMM's animation-via-disentanglement network (§3.4, `modules/avd_network.py`): encodes the
//! source's keypoints as identity and the driving keypoints as pose, each by an MLP, and
//! decodes keypoints that keep the source's shape and take the driving pose, for animating a
//! source whose proportions differ from the driver's (the demo's `avd` mode).
//!
//! Each MLP is torch's `nn.Sequential(Linear, BatchNorm1d, ReLU, …, Linear)`; here its linear
//! layers and batch norms are two lists (the importer maps the sequential's indices).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::POINTS_PER_TPS;
use crate::model::Keypoints;
use crate::model::blocks::BatchNorm2d;

/// The official hidden widths of the encoders (the decoder's are reversed).
pub const AVD_HIDDEN: [usize; 3] = [256, 512, 1024];

/// `Linear → BatchNorm1d → ReLU` per hidden layer, then a last `Linear`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub linears: Vec<Linear>,
    pub norms: Vec<BatchNorm2d>,
}

impl Mlp {
    fn new(input: usize, hidden: &[usize], output: usize, device: &Device) -> Self {
        let widths: Vec<usize> = std::iter::once(input)
            .chain(hidden.iter().copied())
            .chain([output])
            .collect();
        Self {
            linears: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
            norms: hidden.iter().map(|&h| BatchNorm2d::new(h, device)).collect(),
        }
    }

    /// [b, input] → [b, output]
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut x = x;
        for (linear, norm) in self.linears.iter().zip(&self.norms) {
            let y = linear.forward(x);
            let [b, c] = y.dims();
            // BatchNorm1d on [b, c] is the 2-d one on [b, c, 1, 1].
            x = relu(norm.forward(y.reshape([b, c, 1, 1]))).reshape([b, c]);
        }
        let last = self.linears.last().expect("an MLP has its output layer");
        last.forward(x)
    }

    /// torch's index in the `nn.Sequential` of each part: (linear k, batch norm k) at 3k, 3k+1.
    pub fn sequential_indices(hidden_layers: usize) -> impl Iterator<Item = (usize, &'static str, usize)> {
        (0..=hidden_layers).flat_map(move |k| {
            let linear = std::iter::once((3 * k, "linears", k));
            let norm = (k < hidden_layers).then_some((3 * k + 1, "norms", k));
            linear.chain(norm)
        })
    }
}

#[derive(Module, Debug)]
pub struct AvdNetwork {
    pub id_encoder: Mlp,
    pub pose_encoder: Mlp,
    pub decoder: Mlp,
    pub num_tps: usize,
}

impl AvdNetwork {
    pub fn new(
        num_tps: usize,
        id_bottle_size: usize,
        pose_bottle_size: usize,
        hidden: &[usize],
        device: &Device,
    ) -> Self {
        let input = POINTS_PER_TPS * 2 * num_tps;
        let reversed: Vec<usize> = hidden.iter().rev().copied().collect();
        Self {
            id_encoder: Mlp::new(input, hidden, id_bottle_size, device),
            pose_encoder: Mlp::new(input, hidden, pose_bottle_size, device),
            decoder: Mlp::new(pose_bottle_size + id_bottle_size, &reversed, input, device),
            num_tps,
        }
    }

    /// The source's identity with the driving pose: keypoints [b, K·5, 2].
    pub fn forward(&self, kp_source: &Keypoints, kp_driving: &Keypoints) -> Keypoints {
        let [b, n, _] = kp_source.value.dims();
        let pose = self.pose_encoder.forward(kp_driving.value.clone().reshape([b, n * 2]));
        let id = self.id_encoder.forward(kp_source.value.clone().reshape([b, n * 2]));
        let value = self.decoder.forward(Tensor::cat(vec![pose, id], 1)).reshape([b, n, 2]);
        Keypoints { value, jacobian: None }
    }
}
