//! Framing an animation by its faces (`--face auto|off|crop`): where the photo's face square
//! is, where the driving clip's is, what goes into the model and how its output becomes the
//! result.

use image::RgbImage;
use image::imageops::FilterType;

use super::crop::{ClipFaceBox, FaceCrop, FaceMode, INCREASE_AREA, clip_face_box, paste_back};
use super::{Face, FaceDetector, largest};
use crate::frames::resize_to;
use crate::{EngineError, Result};

/// `crop-video.py` finds faces on frames no larger than this (longer side), then scales the
/// boxes back: faces are large enough there, and detection stays fast on HD clips.
pub const DETECTION_SIDE: u32 = 640;

/// How an animation is framed. Made by [`Framing::plan`] (or [`Framing::whole`] with no
/// detection); then [`Framing::source_input`] and [`Framing::driving_input`] give the model's
/// inputs and [`Framing::compose`] turns each animated frame into the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Framing {
    pub mode: FaceMode,
    /// The photo's size.
    pub photo_size: (u32, u32),
    /// The face animation follows, and the square around it; `None`: the whole photo.
    pub source_face: Option<(Face, FaceCrop)>,
    /// The clip's face track and its square; `None`: the whole frame.
    pub driving_face: Option<(ClipFaceBox, FaceCrop)>,
    /// What a user should hear about (a fallback, a face at the border, several faces).
    pub notes: Vec<String>,
}

impl Framing {
    /// No detection: the photo and the frames as they are (`--face off`).
    pub fn whole(photo: &RgbImage) -> Self {
        Self {
            mode: FaceMode::Off,
            photo_size: photo.dimensions(),
            source_face: None,
            driving_face: None,
            notes: Vec::new(),
        }
    }

    /// Finds the photo's face and the driving clip's track. `Auto` falls back to the whole
    /// photo (or frame) when there is no face, or no detector, and says so; `Crop` needs both.
    /// `on_frame(done, total)` after each driving frame's detection.
    pub fn plan(
        detector: Option<&FaceDetector>,
        mode: FaceMode,
        photo: &RgbImage,
        driving: &[RgbImage],
        mut on_frame: impl FnMut(usize, usize),
        cancelled: impl Fn() -> bool,
    ) -> Result<Self> {
        let mut framing = Self::plan_photo(detector, mode, photo)?;
        let Some(detector) = detector.filter(|_| mode != FaceMode::Off) else {
            return Ok(framing);
        };
        match track_clip(detector, driving, &mut on_frame, &cancelled)? {
            Some((track, crop)) => {
                if track.frames_tracked < driving.len() {
                    framing.notes.push(format!(
                        "the driving face was found in {} of {} frames; the square holds where it is not",
                        track.frames_tracked,
                        driving.len()
                    ));
                }
                framing.driving_face = Some((track, crop));
            }
            None => framing
                .notes
                .push("no face found in the driving video: using whole frames".into()),
        }
        Ok(framing)
    }

    /// The photo's side of [`Framing::plan`]: its face and square, the whole photo where
    /// there is none. Live puppeteering frames the camera itself.
    pub fn plan_photo(detector: Option<&FaceDetector>, mode: FaceMode, photo: &RgbImage) -> Result<Self> {
        let mut framing = Self::whole(photo);
        framing.mode = mode;
        let detector = match (mode, detector) {
            (FaceMode::Off, _) => return Ok(framing),
            (_, Some(detector)) => detector,
            (FaceMode::Crop, None) => {
                return Err(EngineError::Invalid(
                    "--face crop needs the face detector's weights".into(),
                ));
            }
            (FaceMode::Auto, None) => {
                framing
                    .notes
                    .push("no face detector loaded: animating the whole photo".into());
                return Ok(framing);
            }
        };
        let (w, h) = photo.dimensions();
        let faces = detect_scaled(detector, photo);
        match largest(&faces) {
            Some(face) => {
                let crop = FaceCrop::around(face.bbox, INCREASE_AREA);
                if faces.len() > 1 {
                    framing
                        .notes
                        .push(format!("the photo has {} faces: animating the largest", faces.len()));
                }
                if crop.passes_border(w, h) {
                    framing
                        .notes
                        .push("the photo's face square passes its border: filled from the border pixels".into());
                }
                framing.source_face = Some((*face, crop));
            }
            None if mode == FaceMode::Crop => {
                return Err(EngineError::Invalid(
                    "no face found in the photo: --face crop needs one (use --face auto or off)".into(),
                ));
            }
            None => framing
                .notes
                .push("no face found in the photo: animating the whole photo".into()),
        }
        Ok(framing)
    }

    /// The photo as the model gets it (`size` = the model's (width, height)).
    pub fn source_input(&self, photo: &RgbImage, size: (u32, u32)) -> RgbImage {
        match &self.source_face {
            Some((_, crop)) => crop.cut_resized(photo, size),
            None => resize_to(photo, size.0, size.1),
        }
    }

    /// A driving frame as the model gets it.
    pub fn driving_input(&self, frame: &RgbImage, size: (u32, u32)) -> RgbImage {
        match &self.driving_face {
            Some((_, crop)) => crop.cut_resized(frame, size),
            None => resize_to(frame, size.0, size.1),
        }
    }

    /// One animated frame (the model's size) as the result: pasted back into the photo
    /// (`auto` with a face), scaled back to the photo's size (`auto` without), or as it is
    /// (`off`, `crop`).
    pub fn compose(&self, photo: &RgbImage, animated: RgbImage) -> RgbImage {
        match (self.mode, &self.source_face) {
            (FaceMode::Auto, Some((_, crop))) => paste_back(photo, crop, &animated),
            (FaceMode::Auto, None) => {
                let (w, h) = self.photo_size;
                image::imageops::resize(&animated, w, h, FilterType::CatmullRom)
            }
            _ => animated,
        }
    }
}

/// A clip's face track ([`clip_face_box`]) and the square that frames the whole clip, `None`
/// when no frame has a face. `on_frame(done, total)` after each frame's detection.
pub fn track_clip(
    detector: &FaceDetector,
    frames: &[RgbImage],
    mut on_frame: impl FnMut(usize, usize),
    cancelled: impl Fn() -> bool,
) -> Result<Option<(ClipFaceBox, FaceCrop)>> {
    let mut per_frame = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        if cancelled() {
            return Err(EngineError::Cancelled("the face search"));
        }
        per_frame.push(detect_scaled(detector, frame));
        on_frame(i + 1, frames.len());
    }
    Ok(clip_face_box(&per_frame).map(|track| (track, FaceCrop::around(track.bbox, INCREASE_AREA))))
}

/// Faces of `image`, found on a copy no larger than [`DETECTION_SIDE`], in `image`'s pixels.
pub fn detect_scaled(detector: &FaceDetector, image: &RgbImage) -> Vec<Face> {
    detect_within(detector, image, DETECTION_SIDE)
}

/// Faces of `image`, found on a copy whose longer side is at most `side`, in `image`'s pixels.
pub fn detect_within(detector: &FaceDetector, image: &RgbImage, side: u32) -> Vec<Face> {
    let (w, h) = image.dimensions();
    let longer = w.max(h);
    if longer <= side {
        return detector.detect(image);
    }
    let scale = longer as f32 / side.max(1) as f32;
    let small = resize_to(
        image,
        ((w as f32 / scale) as u32).max(1),
        ((h as f32 / scale) as u32).max(1),
    );
    detector
        .detect(&small)
        .into_iter()
        .map(|face| Face {
            bbox: face.bbox.map(|v| v * scale),
            score: face.score,
            landmarks: face.landmarks.map(|p| p.map(|v| v * scale)),
        })
        .collect()
}
