//! What a training snapshot holds: the batch's first pair as images, the paper's maps, and the
//! keypoints. Which images and maps there are, what each lies over and how it is coloured is
//! said once here, for the sheets the engine writes and for the window.

use image::RgbImage;

use super::colormap::Colormap;
use crate::config::Variant;

/// The images of a snapshot, in the order they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotImage {
    Source,
    Driving,
    /// The source warped by the dense motion.
    Deformed,
    Prediction,
    /// The mix the discriminator saw, or the PriorityCut mix for display.
    Cutmix,
}

impl SnapshotImage {
    pub const ALL: [SnapshotImage; 5] = [
        SnapshotImage::Source,
        SnapshotImage::Driving,
        SnapshotImage::Deformed,
        SnapshotImage::Prediction,
        SnapshotImage::Cutmix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SnapshotImage::Source => "source",
            SnapshotImage::Driving => "driving",
            SnapshotImage::Deformed => "deformed",
            SnapshotImage::Prediction => "prediction",
            SnapshotImage::Cutmix => "cutmix",
        }
    }
}

/// The single-channel maps of a snapshot, at image resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotMap {
    /// TPSMM's coarser occlusion masks, one per inpainting level below the finest (Ô is the
    /// finest): at ⅛, ¼ and ½ of the image's side.
    OcclusionEighth,
    OcclusionQuarter,
    OcclusionHalf,
    /// Ô, the generator's occlusion map (TPSMM's finest).
    Occlusion,
    /// M_bg, the dense-motion mask's background channel.
    Background,
    /// The binary M_bg.
    BackgroundBinary,
    /// Ô_fg (Eq. 1).
    ForegroundOcclusion,
    PrioritycutMask,
    CutmixMask,
    /// The U-Net decoder's per-pixel real/fake scores on the real, the generated and the mixed
    /// image (U-Net variants only).
    DecoderReal,
    DecoderFake,
    DecoderMixed,
}

impl SnapshotMap {
    pub const ALL: [SnapshotMap; 12] = [
        SnapshotMap::OcclusionEighth,
        SnapshotMap::OcclusionQuarter,
        SnapshotMap::OcclusionHalf,
        SnapshotMap::Occlusion,
        SnapshotMap::Background,
        SnapshotMap::BackgroundBinary,
        SnapshotMap::ForegroundOcclusion,
        SnapshotMap::PrioritycutMask,
        SnapshotMap::CutmixMask,
        SnapshotMap::DecoderReal,
        SnapshotMap::DecoderFake,
        SnapshotMap::DecoderMixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SnapshotMap::OcclusionEighth => "occlusion_eighth",
            SnapshotMap::OcclusionQuarter => "occlusion_quarter",
            SnapshotMap::OcclusionHalf => "occlusion_half",
            SnapshotMap::Occlusion => "occlusion",
            SnapshotMap::Background => "background",
            SnapshotMap::BackgroundBinary => "background_binary",
            SnapshotMap::ForegroundOcclusion => "foreground_occlusion",
            SnapshotMap::PrioritycutMask => "prioritycut_mask",
            SnapshotMap::CutmixMask => "cutmix_mask",
            SnapshotMap::DecoderReal => "decoder_real",
            SnapshotMap::DecoderFake => "decoder_fake",
            SnapshotMap::DecoderMixed => "decoder_mixed",
        }
    }

    /// The image the map describes, which it is laid over.
    pub fn lies_over(self) -> SnapshotImage {
        match self {
            SnapshotMap::OcclusionEighth
            | SnapshotMap::OcclusionQuarter
            | SnapshotMap::OcclusionHalf
            | SnapshotMap::Occlusion
            | SnapshotMap::Background
            | SnapshotMap::BackgroundBinary => SnapshotImage::Source,
            SnapshotMap::ForegroundOcclusion | SnapshotMap::PrioritycutMask | SnapshotMap::DecoderReal => {
                SnapshotImage::Driving
            }
            SnapshotMap::DecoderFake => SnapshotImage::Prediction,
            SnapshotMap::CutmixMask | SnapshotMap::DecoderMixed => SnapshotImage::Cutmix,
        }
    }

    /// The U-Net decoder's maps: scores, coloured fake ↔ real; the rest are masks in [0, 1].
    pub fn is_decoder(self) -> bool {
        matches!(
            self,
            SnapshotMap::DecoderReal | SnapshotMap::DecoderFake | SnapshotMap::DecoderMixed
        )
    }

    /// TPSMM's occlusion masks below the finest, which the sheet gives a row of their own.
    pub fn is_coarser_occlusion(self) -> bool {
        matches!(
            self,
            SnapshotMap::OcclusionEighth | SnapshotMap::OcclusionQuarter | SnapshotMap::OcclusionHalf
        )
    }

    /// The coarser occlusion map `levels` halvings below the finest (1 = ½), where there is one.
    pub fn coarser_occlusion(levels: usize) -> Option<SnapshotMap> {
        match levels {
            1 => Some(SnapshotMap::OcclusionHalf),
            2 => Some(SnapshotMap::OcclusionQuarter),
            3 => Some(SnapshotMap::OcclusionEighth),
            _ => None,
        }
    }

    pub fn default_colormap(self) -> Colormap {
        if self.is_decoder() {
            Colormap::FakeReal
        } else {
            Colormap::Viridis
        }
    }

    /// What the map shows, for a tooltip.
    pub fn help(self) -> &'static str {
        match self {
            SnapshotMap::OcclusionEighth => {
                "TPSMM's occlusion mask at ⅛ size: weighs its inpainting's warped features there"
            }
            SnapshotMap::OcclusionQuarter => {
                "TPSMM's occlusion mask at ¼ size: weighs its inpainting's warped features there"
            }
            SnapshotMap::OcclusionHalf => {
                "TPSMM's occlusion mask at ½ size: weighs its inpainting's warped features there"
            }
            SnapshotMap::Occlusion => {
                "Occlusion map Ô: 1 where the warped source is visible, 0 where it must be inpainted"
            }
            SnapshotMap::Background => "M_bg: the dense-motion mask's background channel",
            SnapshotMap::BackgroundBinary => "binary M_bg: confident background (M_bg ≥ threshold)",
            SnapshotMap::ForegroundOcclusion => "Ô_fg = M_bg + (1 − M_bg) · Ô with the binary M_bg (Eq. 1)",
            SnapshotMap::PrioritycutMask => "PriorityCut mask: the top-k% most occluded foreground pixels",
            SnapshotMap::CutmixMask => "The CutMix mask the discriminator saw (1 = real pixels)",
            SnapshotMap::DecoderReal => "U-Net decoder on the real frame: red = judged real, blue = fake",
            SnapshotMap::DecoderFake => "U-Net decoder on the generated frame",
            SnapshotMap::DecoderMixed => "U-Net decoder on the CutMix image",
        }
    }
}

/// A single-channel map for display, row-major, with the range its values are meant in.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
    /// e.g. (0, 1) for masks and occlusion; LSGAN scores are meant around (0, 1) too.
    pub range: (f32, f32),
}

/// The first pair of a batch as a monitor shows it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub step: usize,
    pub variant: Variant,
    pub images: Vec<(SnapshotImage, RgbImage)>,
    /// The maps the variant has (no decoder maps without a U-Net discriminator).
    pub maps: Vec<(SnapshotMap, Map)>,
    /// Source and driving keypoints, (x, y) in [-1, 1].
    pub keypoints: Vec<(SnapshotImage, Vec<[f32; 2]>)>,
}

impl Snapshot {
    pub fn image(&self, which: SnapshotImage) -> Option<&RgbImage> {
        self.images.iter().find(|(n, _)| *n == which).map(|(_, i)| i)
    }

    pub fn map(&self, which: SnapshotMap) -> Option<&Map> {
        self.maps.iter().find(|(n, _)| *n == which).map(|(_, m)| m)
    }

    pub fn keypoints(&self, which: SnapshotImage) -> Option<&[[f32; 2]]> {
        self.keypoints
            .iter()
            .find(|(n, _)| *n == which)
            .map(|(_, k)| k.as_slice())
    }
}
