//! Faces: MTCNN's three-stage detector (boxes, scores, five landmarks) as facenet-pytorch 2.6.0
//! runs it, and the geometry that crops a face square the way FOMM's `crop-video.py` does and
//! pastes an animated crop back into the photo.
//!
//! One file per network ([`pnet`], [`rnet`], [`onet`]), the cascade in [`mtcnn`], the crop and
//! paste-back in [`crop`], and how an animation is framed by them in [`framing`]. The weights are facenet-pytorch's (`assets/models/mtcnn/`), loaded by
//! [`crate::import::load_face_detector`].

pub mod crop;
pub mod framing;
pub mod mtcnn;
pub mod onet;
pub mod pnet;
pub mod rnet;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PRelu, PReluConfig};
use burn::tensor::{Device, Tensor};

pub use crop::{ClipFaceBox, FaceCrop, FaceMode, clip_face_box, paste_back};
pub use framing::{Framing, detect_scaled, detect_within, track_clip};
pub use mtcnn::{FaceDetector, MtcnnConfig};
pub use onet::ONet;
pub use pnet::PNet;
pub use rnet::RNet;

/// One detected face, in the image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// `[x0, y0, x1, y1]`.
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner (as MTCNN orders them), `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    /// What facenet-pytorch orders faces by (largest first).
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
}

/// The largest face, which face-aware animation follows (facenet-pytorch's `select_largest`).
pub fn largest(faces: &[Face]) -> Option<&Face> {
    faces.iter().max_by(|a, b| a.area().total_cmp(&b.area()))
}

fn conv(input: usize, output: usize, kernel: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([input, output], [kernel, kernel]).init(device)
}

fn prelu(channels: usize, device: &Device) -> PRelu {
    PReluConfig::new().with_num_parameters(channels).init(device)
}

/// torch's `MaxPool2d(k, s, ceil_mode=True)`.
fn max_pool(kernel: usize, stride: usize) -> MaxPool2d {
    MaxPool2dConfig::new([kernel, kernel])
        .with_strides([stride, stride])
        .with_ceil_mode(true)
        .init()
}

fn linear(input: usize, output: usize, device: &Device) -> Linear {
    LinearConfig::new(input, output).init(device)
}

/// `x.permute(0, 3, 2, 1).contiguous().view(n, -1)`: R-Net's and O-Net's dense layers were
/// trained on features flattened width-major, a layout kept from the original Caffe model.
fn flatten_like_torch(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 3, 2, 1]).reshape([n, w * h * c])
}
