//! MTCNN's cascade as facenet-pytorch 2.6.0's `detect_face` runs it (its defaults, its integer
//! rounding and its crops), so that boxes, scores and landmarks agree with `MTCNN.detect`:
//!
//! 1. an image pyramid (scales `12/min_face_size · factor^k` while the short side stays ≥ 12
//!    pixels, resized by area averaging), P-Net on each level, cells above the first threshold
//!    as boxes, non-maximum suppression at IoU 0.5 per level and 0.7 over all levels, then each
//!    box moved by its regression and made square;
//! 2. each box cut out (clipped to the image), resized to 24×24, rescored and regressed by R-Net;
//! 3. the same at 48×48 by O-Net, which also places the five landmarks; a last suppression by
//!    intersection over the smaller box ("Min") at 0.7.
//!
//! The networks run on the engine's device; the bookkeeping between them is on the CPU.

use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;

use super::{Face, ONet, PNet, RNet};
use crate::frames::tensor_values;

/// facenet-pytorch's `MTCNN` defaults.
#[derive(Config, Debug)]
pub struct MtcnnConfig {
    /// Smallest face searched for, in pixels.
    #[config(default = 20.0)]
    pub min_face_size: f64,
    /// Face-probability thresholds of P-Net, R-Net and O-Net.
    #[config(default = 0.6)]
    pub pnet_threshold: f32,
    #[config(default = 0.7)]
    pub rnet_threshold: f32,
    #[config(default = 0.7)]
    pub onet_threshold: f32,
    /// Scale step between pyramid levels.
    #[config(default = 0.709)]
    pub factor: f64,
}

/// The three networks and the cascade's settings.
#[derive(Debug, Clone)]
pub struct FaceDetector {
    pub pnet: PNet,
    pub rnet: RNet,
    pub onet: ONet,
    pub config: MtcnnConfig,
    device: Device,
}

/// The image as facenet-pytorch holds it: planar RGB floats in 0..255.
struct Planar {
    data: Vec<f32>,
    width: usize,
    height: usize,
}

/// A candidate between stages: box, score, and the regression that will move it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    bbox: [f32; 4],
    score: f32,
    regression: [f32; 4],
}

impl FaceDetector {
    /// The cascade over loaded networks ([`crate::import::load_face_detector`] reads
    /// facenet-pytorch's), with its default settings.
    pub fn new(pnet: PNet, rnet: RNet, onet: ONet, device: &Device) -> Self {
        Self {
            pnet,
            rnet,
            onet,
            config: MtcnnConfig::new(),
            device: device.clone(),
        }
    }

    /// Every face in `image`, largest first.
    pub fn detect(&self, image: &RgbImage) -> Vec<Face> {
        let planar = Planar::from_image(image);
        if planar.width == 0 || planar.height == 0 {
            return Vec::new();
        }
        let candidates = self.propose(&planar);
        let candidates = self.refine(&planar, candidates);
        let mut faces = self.output(&planar, candidates);
        // `np.argsort(area)[::-1]`: largest first.
        faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
        faces
    }

    /// Stage 1: P-Net over the pyramid.
    fn propose(&self, image: &Planar) -> Vec<Candidate> {
        let (h, w) = (image.height as f64, image.width as f64);
        let m = 12.0 / self.config.min_face_size;
        let mut min_side = h.min(w) * m;
        let mut scale = m;
        let mut scales = Vec::new();
        while min_side >= 12.0 {
            scales.push(scale);
            scale *= self.config.factor;
            min_side *= self.config.factor;
        }
        let mut candidates = Vec::new();
        for scale in scales {
            let (sh, sw) = ((h * scale + 1.0) as usize, (w * scale + 1.0) as usize);
            let level = normalized(image.area_resize(0, 0, image.width, image.height, sh, sw));
            let input = Tensor::<4>::from_data(TensorData::new(level, [1, 3, sh, sw]), &self.device);
            let output = self.pnet.forward(input);
            let [_, _, oh, ow] = output.probability.dims();
            let probability = tensor_values(output.probability.narrow(1, 1, 1));
            let regression = tensor_values(output.regression);
            let plane = oh * ow;
            let scale = scale as f32;
            let mut level_boxes = Vec::new();
            // Cells in `nonzero()` order: row by row.
            for y in 0..oh {
                for x in 0..ow {
                    let i = y * ow + x;
                    let score = probability[i];
                    if score >= self.config.pnet_threshold {
                        let (bx, by) = (x as f32, y as f32);
                        level_boxes.push(Candidate {
                            bbox: [
                                ((2.0 * bx + 1.0) / scale).floor(),
                                ((2.0 * by + 1.0) / scale).floor(),
                                ((2.0 * bx + 12.0) / scale).floor(),
                                ((2.0 * by + 12.0) / scale).floor(),
                            ],
                            score,
                            regression: std::array::from_fn(|k| regression[k * plane + i]),
                        });
                    }
                }
            }
            let keep = nms(&level_boxes, 0.5, Overlap::Union);
            candidates.extend(keep.into_iter().map(|k| level_boxes[k]));
        }
        let keep = nms(&candidates, 0.7, Overlap::Union);
        keep.into_iter()
            .map(|k| {
                let c = candidates[k];
                let [x0, y0, x1, y1] = c.bbox;
                let (rw, rh) = (x1 - x0, y1 - y0);
                let r = c.regression;
                Candidate {
                    bbox: square([x0 + r[0] * rw, y0 + r[1] * rh, x1 + r[2] * rw, y1 + r[3] * rh]),
                    ..c
                }
            })
            .collect()
    }

    /// Stage 2: R-Net on 24×24 windows.
    fn refine(&self, image: &Planar, candidates: Vec<Candidate>) -> Vec<Candidate> {
        let (candidates, windows) = windows(image, candidates, RNet::INPUT);
        if candidates.is_empty() {
            return candidates;
        }
        let input = Tensor::<4>::from_data(
            TensorData::new(windows, [candidates.len(), 3, RNet::INPUT, RNet::INPUT]),
            &self.device,
        );
        let output = self.rnet.forward(input);
        let probability = tensor_values(output.probability);
        let regression = tensor_values(output.regression);
        let passed: Vec<Candidate> = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| probability[2 * i + 1] > self.config.rnet_threshold)
            .map(|(i, c)| Candidate {
                bbox: c.bbox,
                score: probability[2 * i + 1],
                regression: std::array::from_fn(|k| regression[4 * i + k]),
            })
            .collect();
        nms(&passed, 0.7, Overlap::Union)
            .into_iter()
            .map(|k| {
                let c = passed[k];
                Candidate {
                    bbox: square(regress(c.bbox, c.regression)),
                    ..c
                }
            })
            .collect()
    }

    /// Stage 3: O-Net on 48×48 windows; landmarks; the final "Min" suppression.
    fn output(&self, image: &Planar, candidates: Vec<Candidate>) -> Vec<Face> {
        let (candidates, windows) = windows(image, candidates, ONet::INPUT);
        if candidates.is_empty() {
            return Vec::new();
        }
        let input = Tensor::<4>::from_data(
            TensorData::new(windows, [candidates.len(), 3, ONet::INPUT, ONet::INPUT]),
            &self.device,
        );
        let output = self.onet.forward(input);
        let probability = tensor_values(output.probability);
        let regression = tensor_values(output.regression);
        let points = tensor_values(output.landmarks);
        let mut passed = Vec::new();
        let mut faces = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let score = probability[2 * i + 1];
            if score <= self.config.onet_threshold {
                continue;
            }
            let [x0, y0, x1, y1] = c.bbox;
            let (w, h) = (x1 - x0 + 1.0, y1 - y0 + 1.0);
            let p = &points[10 * i..10 * i + 10];
            let landmarks = std::array::from_fn(|k| [w * p[k] + x0 - 1.0, h * p[5 + k] + y0 - 1.0]);
            let bbox = regress(c.bbox, std::array::from_fn(|k| regression[4 * i + k]));
            passed.push(Candidate {
                bbox,
                score,
                regression: [0.0; 4],
            });
            faces.push(Face { bbox, score, landmarks });
        }
        nms(&passed, 0.7, Overlap::Min).into_iter().map(|k| faces[k]).collect()
    }
}

impl Planar {
    fn from_image(image: &RgbImage) -> Self {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let plane = width * height;
        let mut data = vec![0.0; 3 * plane];
        for (i, pixel) in image.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + i] = f32::from(pixel[c]);
            }
        }
        Self { data, width, height }
    }

    /// The region `[x0, x0 + w) × [y0, y0 + h)` resized to `out_h × out_w` by torch's
    /// `interpolate(mode="area")` (= `adaptive_avg_pool2d`: output cell `i` averages input rows
    /// `⌊i·h/out_h⌋ .. ⌈(i+1)·h/out_h⌉`), planar.
    fn area_resize(&self, x0: usize, y0: usize, w: usize, h: usize, out_h: usize, out_w: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(3 * out_h * out_w);
        let plane = self.width * self.height;
        let rows: Vec<(usize, usize)> = (0..out_h).map(|i| pool_range(i, out_h, h)).collect();
        let cols: Vec<(usize, usize)> = (0..out_w).map(|j| pool_range(j, out_w, w)).collect();
        for c in 0..3 {
            let channel = &self.data[c * plane..(c + 1) * plane];
            for &(r0, r1) in &rows {
                for &(c0, c1) in &cols {
                    let mut sum = 0.0f32;
                    for y in r0..r1 {
                        let row = &channel[(y0 + y) * self.width + x0..];
                        for &v in &row[c0..c1] {
                            sum += v;
                        }
                    }
                    out.push(sum / ((r1 - r0) * (c1 - c0)) as f32);
                }
            }
        }
        out
    }
}

/// torch's adaptive pooling window of output index `i` of `out` over `len` inputs.
fn pool_range(i: usize, out: usize, len: usize) -> (usize, usize) {
    (i * len / out, ((i + 1) * len).div_ceil(out))
}

/// `(v − 127.5) · 0.0078125`, MTCNN's input scaling.
fn normalized(mut values: Vec<f32>) -> Vec<f32> {
    for v in &mut values {
        *v = (*v - 127.5) * 0.0078125;
    }
    values
}

/// Cuts each candidate's box out of the image (facenet-pytorch's `pad`: truncated to integers,
/// clipped to the image) and resizes it to `size × size`. Boxes entirely outside the image are
/// dropped (facenet-pytorch skips their window too).
fn windows(image: &Planar, candidates: Vec<Candidate>, size: usize) -> (Vec<Candidate>, Vec<f32>) {
    let mut kept = Vec::with_capacity(candidates.len());
    let mut data = Vec::with_capacity(candidates.len() * 3 * size * size);
    for c in candidates {
        let [x0, y0, x1, y1] = c.bbox.map(|v| v.trunc() as i64);
        let (x, y) = (x0.max(1), y0.max(1));
        let (ex, ey) = (x1.min(image.width as i64), y1.min(image.height as i64));
        if ey > y - 1 && ex > x - 1 {
            let (left, top) = ((x - 1) as usize, (y - 1) as usize);
            let (w, h) = (ex as usize - left, ey as usize - top);
            data.extend(normalized(image.area_resize(left, top, w, h, size, size)));
            kept.push(c);
        }
    }
    (kept, data)
}

/// `rerec`: the square of side max(w, h) on the box's centre.
fn square([x0, y0, x1, y1]: [f32; 4]) -> [f32; 4] {
    let (w, h) = (x1 - x0, y1 - y0);
    let side = w.max(h);
    let (x0, y0) = (x0 + w * 0.5 - side * 0.5, y0 + h * 0.5 - side * 0.5);
    [x0, y0, x0 + side, y0 + side]
}

/// `bbreg`: the box moved by its regression, in units of the box's size (+1, as MTCNN counts).
fn regress([x0, y0, x1, y1]: [f32; 4], r: [f32; 4]) -> [f32; 4] {
    let (w, h) = (x1 - x0 + 1.0, y1 - y0 + 1.0);
    [x0 + r[0] * w, y0 + r[1] * h, x1 + r[2] * w, y1 + r[3] * h]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    /// torchvision's `nms`: intersection over union, areas without +1.
    Union,
    /// facenet-pytorch's `nms_numpy(..., 'Min')`: intersection over the smaller box, +1 areas.
    Min,
}

/// Greedy non-maximum suppression: indices of the kept boxes, best score first. A box is
/// dropped when its overlap with a kept one exceeds `threshold`.
fn nms(candidates: &[Candidate], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let one = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &[f32; 4]| (b[2] - b[0] + one) * (b[3] - b[1] + one);
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // torchvision sorts stably, descending.
    order.sort_by(|&a, &b| candidates[b].score.total_cmp(&candidates[a].score));
    let mut suppressed = vec![false; candidates.len()];
    let mut keep = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &candidates[i].bbox;
        let area_a = area(a);
        for &j in &order[n + 1..] {
            if suppressed[j] {
                continue;
            }
            let b = &candidates[j].bbox;
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + one).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + one).max(0.0);
            let inter = w * h;
            let ratio = match overlap {
                Overlap::Union => inter / (area_a + area(b) - inter),
                Overlap::Min => inter / area_a.min(area(b)),
            };
            if ratio > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::faces::crop::iou;
    use crate::npy::NpyArray;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mtcnn")
    }

    fn detector() -> FaceDetector {
        let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/mtcnn");
        crate::import::load_face_detector(&weights, &Device::flex()).expect("bundled MTCNN weights")
    }

    fn npy(name: &str) -> NpyArray {
        NpyArray::read(&fixtures().join(format!("{name}.npy"))).expect("fixture")
    }

    fn tensor<const D: usize>(array: &NpyArray) -> Tensor<D> {
        let shape: [usize; D] = array.shape.clone().try_into().expect("rank");
        Tensor::from_data(TensorData::new(array.data.clone(), shape), &Device::flex())
    }

    fn assert_close<const D: usize>(ours: Tensor<D>, name: &str) {
        let golden = npy(name);
        assert_eq!(ours.dims().to_vec(), golden.shape, "{name} shape");
        let worst = tensor_values(ours)
            .iter()
            .zip(&golden.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{name}: worst difference {worst}");
    }

    #[test]
    fn the_three_networks_match_facenet_pytorch() {
        let detector = detector();
        let p = detector.pnet.forward(tensor(&npy("pnet_input")));
        assert_close(p.regression, "pnet_reg");
        assert_close(p.probability, "pnet_prob");
        let r = detector.rnet.forward(tensor(&npy("rnet_input")));
        assert_close(r.regression, "rnet_reg");
        assert_close(r.probability, "rnet_prob");
        let o = detector.onet.forward(tensor(&npy("onet_input")));
        assert_close(o.regression, "onet_reg");
        assert_close(o.landmarks, "onet_points");
        assert_close(o.probability, "onet_prob");
    }

    /// `MTCNN(keep_all=True).detect(image, landmarks=True)` of facenet-pytorch 2.6.0 on real
    /// photos and clip frames, two faces, a turned face and none (`make_fixture.py`).
    /// Tolerances: every box corner and landmark within 0.05 pixel, score within 1e-4 (measured:
    /// 1.5e-5 px, 3.1e-5 px, 0). The cascade truncates boxes to whole pixels between stages, so
    /// a change that moves a box across an integer shows here as a whole-pixel jump.
    #[test]
    fn detections_match_facenet_pytorch_on_real_images() {
        let detector = detector();
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("golden.json")).expect("golden.json"))
                .expect("json");
        let golden = golden.as_object().expect("object");
        assert_eq!(golden.len(), 7);
        let mut worst = (0.0f32, 0.0f32, 0.0f32, 1.0f32);
        for (name, expected) in golden {
            let image = image::open(fixtures().join(name)).expect("image").to_rgb8();
            let faces = detector.detect(&image);
            let expected = expected["faces"].as_array().expect("faces");
            assert_eq!(faces.len(), expected.len(), "{name}: {faces:?}");
            for (face, want) in faces.iter().zip(expected) {
                let floats = |v: &serde_json::Value| -> Vec<f32> {
                    v.as_array()
                        .expect("array")
                        .iter()
                        .flat_map(|x| match x.as_array() {
                            Some(pair) => pair.iter().filter_map(|p| p.as_f64()).collect::<Vec<_>>(),
                            None => x.as_f64().into_iter().collect(),
                        })
                        .map(|x| x as f32)
                        .collect()
                };
                let bbox: [f32; 4] = floats(&want["box"]).try_into().expect("box");
                let landmarks = floats(&want["landmarks"]);
                let score = want["score"].as_f64().expect("score") as f32;
                let corner = face
                    .bbox
                    .iter()
                    .zip(&bbox)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                let landmark = face
                    .landmarks
                    .iter()
                    .flatten()
                    .zip(&landmarks)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                let overlap = iou(face.bbox, bbox);
                let score_error = (face.score - score).abs();
                assert!(
                    overlap >= 0.999 && corner <= 0.05 && landmark <= 0.05 && score_error <= 1e-4,
                    "{name}: ours {face:?}, facenet-pytorch box {bbox:?} score {score} landmarks {landmarks:?}"
                );
                worst = (
                    worst.0.max(corner),
                    worst.1.max(landmark),
                    worst.2.max(score_error),
                    worst.3.min(overlap),
                );
            }
        }
        eprintln!(
            "worst: box corner {:.2e} px, landmark {:.2e} px, score {:.2e}, IoU {:.5}",
            worst.0, worst.1, worst.2, worst.3
        );
    }
}
