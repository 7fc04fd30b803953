//! The face square FOMM's models expect, cut out of a photo or a video the way FOMM's
//! `crop-video.py` frames VoxCeleb-style clips, and an animated square pasted back into the
//! photo.
//!
//! `crop-video.py` grows the face box by `increase_area` (0.1) on each side and, for a box that
//! is not square, more on its short sides: `width_increase = max(0.1, (1.2·h − w) / 2w)`, and the
//! same for the height. Both give the square of side `1.2 · max(w, h)` on the box's centre,
//! which is what [`FaceCrop::around`] computes. Where that square passes the image's border,
//! `crop-video.py` clips it (and its ffmpeg `scale` then stretches the face); here the square
//! stays square and the missing part is filled by repeating the border pixels.

use std::fmt;
use std::str::FromStr;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::Face;
use crate::frames::resize_to;

/// `crop-video.py`'s `--increase` default.
pub const INCREASE_AREA: f32 = 0.1;

/// `crop-video.py`'s `--iou_with_initial`: a frame's face belongs to the clip's track when it
/// overlaps the first box by more than this.
pub const IOU_WITH_INITIAL: f32 = 0.25;

/// What face-aware animation does with the photo and the driving video (`--face`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceMode {
    /// Animate the face square and paste it back: the output has the photo's size. With no
    /// face in the photo, the whole photo is animated and scaled back to its size.
    #[default]
    Auto,
    /// The whole photo and the whole driving frame, squeezed to the model's size (no detection).
    Off,
    /// Only the animated face square, at the model's size.
    Crop,
}

impl FaceMode {
    pub const ALL: [FaceMode; 3] = [FaceMode::Auto, FaceMode::Off, FaceMode::Crop];

    pub fn name(self) -> &'static str {
        match self {
            FaceMode::Auto => "auto",
            FaceMode::Off => "off",
            FaceMode::Crop => "crop",
        }
    }
}

impl fmt::Display for FaceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaceMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaceMode::ALL
            .into_iter()
            .find(|mode| mode.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown face mode '{s}' (auto, off or crop)"))
    }
}

/// A square region of an image, in its pixels; it may reach past the image's borders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceCrop {
    pub x0: i64,
    pub y0: i64,
    pub side: u32,
}

impl FaceCrop {
    /// The square of side `(1 + 2·increase) · max(w, h)` centred on `bbox` (`[x0, y0, x1, y1]`).
    pub fn around(bbox: [f32; 4], increase: f32) -> Self {
        let [x0, y0, x1, y1] = bbox;
        let side = ((1.0 + 2.0 * increase) * (x1 - x0).max(y1 - y0)).round().max(1.0);
        let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        Self {
            x0: (cx - side / 2.0).round() as i64,
            y0: (cy - side / 2.0).round() as i64,
            side: side as u32,
        }
    }

    /// The region as an `[x0, y0, x1, y1]` box.
    pub fn bbox(&self) -> [f32; 4] {
        let side = self.side as f32;
        let (x0, y0) = (self.x0 as f32, self.y0 as f32);
        [x0, y0, x0 + side, y0 + side]
    }

    /// Whether some of the square lies outside a `width × height` image.
    pub fn passes_border(&self, width: u32, height: u32) -> bool {
        let side = i64::from(self.side);
        self.x0 < 0 || self.y0 < 0 || self.x0 + side > i64::from(width) || self.y0 + side > i64::from(height)
    }

    /// The square cut out of `image`; outside the image, its nearest border pixel.
    pub fn cut(&self, image: &RgbImage) -> RgbImage {
        let (w, h) = image.dimensions();
        if w == 0 || h == 0 {
            return RgbImage::new(self.side, self.side);
        }
        let clamp = |v: i64, len: u32| v.clamp(0, i64::from(len) - 1) as u32;
        RgbImage::from_fn(self.side, self.side, |x, y| {
            *image.get_pixel(clamp(self.x0 + i64::from(x), w), clamp(self.y0 + i64::from(y), h))
        })
    }

    /// The square cut out and resized to the model's input (`size` = (width, height)).
    pub fn cut_resized(&self, image: &RgbImage, size: (u32, u32)) -> RgbImage {
        resize_to(&self.cut(image), size.0, size.1)
    }
}

/// `animated` (any size; resized to the square) laid into `photo` over `crop`, blended into the
/// photo over a feathered band along the square's edges that lie inside the photo, so no seam
/// shows. Edges on the photo's border need no band: the square was filled there by repeating
/// the border. Everything outside the square is the photo's own pixels.
pub fn paste_back(photo: &RgbImage, crop: &FaceCrop, animated: &RgbImage) -> RgbImage {
    let side = crop.side;
    let animated = if animated.dimensions() == (side, side) {
        animated.clone()
    } else {
        image::imageops::resize(animated, side, side, FilterType::CatmullRom)
    };
    let (w, h) = photo.dimensions();
    let mut out = photo.clone();
    // Wide enough to hide the seam, narrow enough to keep the animated face whole.
    let feather = (side as f32 * 0.08).max(2.0);
    let inside_left = crop.x0 > 0;
    let inside_top = crop.y0 > 0;
    let inside_right = crop.x0 + i64::from(side) < i64::from(w);
    let inside_bottom = crop.y0 + i64::from(side) < i64::from(h);
    let edge = |inside: bool, distance: f32| if inside { distance } else { f32::INFINITY };
    for y in 0..side {
        let py = crop.y0 + i64::from(y);
        if py < 0 || py >= i64::from(h) {
            continue;
        }
        for x in 0..side {
            let px = crop.x0 + i64::from(x);
            if px < 0 || px >= i64::from(w) {
                continue;
            }
            let (u, v) = (x as f32 + 0.5, y as f32 + 0.5);
            let distance = edge(inside_left, u)
                .min(edge(inside_right, side as f32 - u))
                .min(edge(inside_top, v))
                .min(edge(inside_bottom, side as f32 - v));
            let t = (distance / feather).clamp(0.0, 1.0);
            let alpha = t * t * (3.0 - 2.0 * t);
            let a = animated.get_pixel(x, y);
            let p = out.get_pixel_mut(px as u32, py as u32);
            *p = Rgb(std::array::from_fn(|c| {
                (alpha * f32::from(a[c]) + (1.0 - alpha) * f32::from(p[c])).round() as u8
            }));
        }
    }
    out
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes (`crop-video.py`'s
/// `bb_intersection_over_union`, without its +1 pixel counts: MTCNN's boxes are not integers).
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// The face track of a whole clip as `crop-video.py` makes one: the largest face of the first
/// frame that has one starts the track; a later frame's face joins it when it overlaps that
/// first box by more than [`IOU_WITH_INITIAL`]; the clip's box is the union of the track's boxes
/// ("tube"), so one square frames the whole clip without jitter. Frames where the face is not
/// found keep the square. `None` when no frame has a face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipFaceBox {
    pub bbox: [f32; 4],
    /// Frames whose face joined the track.
    pub frames_tracked: usize,
    /// The first of them.
    pub first_frame: usize,
}

pub fn clip_face_box(faces_per_frame: &[Vec<Face>]) -> Option<ClipFaceBox> {
    let (first_frame, initial) = faces_per_frame
        .iter()
        .enumerate()
        .find_map(|(i, faces)| super::largest(faces).map(|face| (i, face.bbox)))?;
    let mut tube = initial;
    let mut frames_tracked = 0;
    for faces in &faces_per_frame[first_frame..] {
        let best = faces
            .iter()
            .map(|face| (iou(initial, face.bbox), face.bbox))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((overlap, bbox)) = best
            && overlap > IOU_WITH_INITIAL
        {
            tube = [
                tube[0].min(bbox[0]),
                tube[1].min(bbox[1]),
                tube[2].max(bbox[2]),
                tube[3].max(bbox[3]),
            ];
            frames_tracked += 1;
        }
    }
    Some(ClipFaceBox {
        bbox: tube,
        frames_tracked,
        first_frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4]) -> Face {
        Face {
            bbox,
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn the_square_is_crop_video_s_increase_of_the_longer_side() {
        // 40 × 60 box centred on (120, 80): side 1.2 · 60 = 72.
        let crop = FaceCrop::around([100.0, 50.0, 140.0, 110.0], INCREASE_AREA);
        assert_eq!(
            crop,
            FaceCrop {
                x0: 84,
                y0: 44,
                side: 72
            }
        );
        // crop-video.py's own arithmetic on the same box gives the same square.
        let (w, h, inc) = (40.0f32, 60.0f32, 0.1f32);
        let wi = inc.max(((1.0 + 2.0 * inc) * h - w) / (2.0 * w));
        let hi = inc.max(((1.0 + 2.0 * inc) * w - h) / (2.0 * h));
        assert!((w * (1.0 + 2.0 * wi) - 72.0).abs() < 1e-4);
        assert!((h * (1.0 + 2.0 * hi) - 72.0).abs() < 1e-4);
        assert_eq!(crop.bbox(), [84.0, 44.0, 156.0, 116.0]);
    }

    /// A synthetic photo: a gradient, and a known square painted in one colour.
    fn photo() -> RgbImage {
        RgbImage::from_fn(200, 150, |x, y| Rgb([x as u8, y as u8, 50]))
    }

    #[test]
    fn cut_takes_the_square_and_repeats_the_border_outside() {
        let photo = photo();
        let inside = FaceCrop {
            x0: 20,
            y0: 30,
            side: 40,
        };
        let cut = inside.cut(&photo);
        assert_eq!(cut.dimensions(), (40, 40));
        assert_eq!(*cut.get_pixel(0, 0), Rgb([20, 30, 50]));
        assert_eq!(*cut.get_pixel(39, 39), Rgb([59, 69, 50]));
        assert!(!inside.passes_border(200, 150));
        // A face at the top-left corner: the square passes the border and is padded.
        let corner = FaceCrop {
            x0: -10,
            y0: -5,
            side: 30,
        };
        assert!(corner.passes_border(200, 150));
        let cut = corner.cut(&photo);
        assert_eq!(*cut.get_pixel(0, 0), Rgb([0, 0, 50]));
        assert_eq!(*cut.get_pixel(10, 5), Rgb([0, 0, 50]));
        assert_eq!(*cut.get_pixel(12, 9), Rgb([2, 4, 50]));
    }

    #[test]
    fn paste_back_changes_only_the_square_and_feathers_its_inner_edges() {
        let photo = photo();
        let crop = FaceCrop {
            x0: 60,
            y0: 40,
            side: 50,
        };
        let white = RgbImage::from_pixel(50, 50, Rgb([255, 255, 255]));
        let out = paste_back(&photo, &crop, &white);
        assert_eq!(out.dimensions(), photo.dimensions());
        for (x, y, p) in out.enumerate_pixels() {
            let inside = (60..110).contains(&x) && (40..90).contains(&y);
            if !inside {
                assert_eq!(p, photo.get_pixel(x, y), "outside the square at ({x}, {y})");
            }
        }
        // The centre is the animated pixel; the edge is mostly the photo; in between, a blend.
        assert_eq!(*out.get_pixel(85, 65), Rgb([255, 255, 255]));
        let edge = out.get_pixel(60, 65);
        let photo_edge = photo.get_pixel(60, 65);
        assert!(edge[2] < 90 && edge[2] >= photo_edge[2], "edge {edge:?}");
        let band = out.get_pixel(62, 65)[2];
        assert!(band > edge[2] && band < 255, "band {band}");
    }

    #[test]
    fn paste_back_at_the_border_needs_no_band_there() {
        let photo = photo();
        let crop = FaceCrop {
            x0: -10,
            y0: 0,
            side: 60,
        };
        let animated = RgbImage::from_pixel(30, 30, Rgb([255, 255, 255]));
        let out = paste_back(&photo, &crop, &animated);
        // The photo's left border is inside the square's padded part: fully animated there.
        assert_eq!(*out.get_pixel(0, 30), Rgb([255, 255, 255]));
        // Its right edge (x = 50) lies inside the photo: feathered towards the photo.
        assert!(out.get_pixel(49, 30)[2] < 120);
        assert_eq!(out.get_pixel(51, 30), photo.get_pixel(51, 30));
    }

    #[test]
    fn a_clip_s_box_is_the_union_of_its_tracked_faces() {
        let frames = vec![
            vec![],
            vec![face([10.0, 10.0, 50.0, 60.0]), face([100.0, 100.0, 110.0, 110.0])],
            vec![face([14.0, 8.0, 54.0, 58.0])],
            vec![], // the face is lost for a frame: the box holds
            // A face elsewhere does not join the track.
            vec![face([150.0, 10.0, 190.0, 60.0])],
            vec![face([8.0, 12.0, 48.0, 62.0])],
        ];
        let track = clip_face_box(&frames).expect("a track");
        assert_eq!(track.first_frame, 1);
        assert_eq!(track.frames_tracked, 3);
        assert_eq!(track.bbox, [8.0, 8.0, 54.0, 62.0]);
        assert!(clip_face_box(&[vec![], vec![]]).is_none());
    }

    #[test]
    fn face_modes_parse_and_print() {
        for mode in FaceMode::ALL {
            assert_eq!(mode.name().parse::<FaceMode>(), Ok(mode));
        }
        assert_eq!("AUTO".parse::<FaceMode>(), Ok(FaceMode::Auto));
        assert!("faces".parse::<FaceMode>().is_err());
    }
}
