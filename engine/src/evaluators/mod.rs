//! The evaluators behind the paper's AKD, MKR and AED columns (FOMM's §4.1): a keypoint detector
//! run on the real and the reconstructed frame, and an identity embedding of each.
//!
//! Both are traits, so that a user's own detector (a pose network, a face re-identifier) plugs in.
//! The engine ships evaluators that need no downloaded weights for the synthetic figures only:
//! [`FigureJoints`] finds the figures' joints by their part colours, and [`FigureProportions`]
//! describes a figure by its build. For faces, [`FaceLandmarks`] gives AKD and MKR over MTCNN's
//! five landmarks (the bundled face detector); AED needs an identity network this project does
//! not ship, so that column stays empty outside the synthetic figures.

use std::fmt::Debug;
use std::path::Path;

use burn::tensor::Device;
use image::RgbImage;

use crate::Result;
use crate::faces::FaceDetector;

mod face_landmarks;
mod figure_joints;

pub use face_landmarks::FaceLandmarks;
pub use figure_joints::{FigureJoints, FigureProportions, PartFit, fit_parts};

/// Finds a fixed list of keypoints in any image (real or generated).
pub trait KeypointEvaluator: Debug + Send + Sync {
    /// What it is, for the report.
    fn describe(&self) -> String;
    /// The keypoints' names; [`KeypointEvaluator::detect`] answers one slot per name.
    fn keypoint_names(&self) -> Vec<String>;
    /// Each keypoint's position in pixels (x right, y down, pixel centres at whole numbers), or
    /// `None` where it was not found.
    fn detect(&self, image: &RgbImage) -> Vec<Option<[f32; 2]>>;
}

/// Describes who is in an image by a vector; the distance between vectors is the identity error.
pub trait IdentityEvaluator: Debug + Send + Sync {
    fn describe(&self) -> String;
    /// The embedding, or `None` where nobody was found.
    fn embed(&self, image: &RgbImage) -> Option<Vec<f32>>;
}

/// The evaluators of one evaluation; either may be missing.
#[derive(Debug, Default)]
pub struct Evaluators {
    pub keypoints: Option<Box<dyn KeypointEvaluator>>,
    pub identity: Option<Box<dyn IdentityEvaluator>>,
}

impl Evaluators {
    /// Those that suit the dataset at `root`: the figure evaluators for a synthetic dataset
    /// (it has `synthetic.json`), none otherwise.
    pub fn for_dataset(root: &Path) -> Self {
        if root.join("synthetic.json").is_file() {
            Self {
                keypoints: Some(Box::new(FigureJoints::default())),
                identity: Some(Box::new(FigureProportions::default())),
            }
        } else {
            Self::default()
        }
    }

    /// Faces' landmarks for AKD and MKR where the dataset brings no keypoint evaluator of its
    /// own (real talking-head videos).
    pub fn with_faces(mut self, detector: FaceDetector) -> Self {
        if self.keypoints.is_none() {
            self.keypoints = Some(Box::new(FaceLandmarks::new(detector)));
        }
        self
    }

    /// [`Evaluators::for_dataset`], and where that brings no keypoint evaluator, faces'
    /// landmarks by the face detector in `face_weights` (a folder with MTCNN's `pnet.pt`,
    /// `rnet.pt`, `onet.pt`), loaded only then. What `eval`, the window's Evaluate and `ablate`
    /// use.
    pub fn for_dataset_or_faces(root: &Path, face_weights: Option<&Path>, device: &Device) -> Result<Self> {
        let evaluators = Self::for_dataset(root);
        match face_weights {
            Some(weights) if evaluators.keypoints.is_none() => {
                Ok(evaluators.with_faces(crate::import::load_face_detector(weights, device)?))
            }
            _ => Ok(evaluators),
        }
    }

    /// One line for the report: which columns are measured and by what.
    pub fn describe(&self) -> String {
        let keypoints = match &self.keypoints {
            Some(k) => format!("AKD/MKR by {}", k.describe()),
            None => "no keypoint evaluator for this dataset: AKD and MKR are left empty".into(),
        };
        let identity = match &self.identity {
            Some(i) => format!("AED by {}", i.describe()),
            None => "no identity evaluator for this dataset: AED is left empty".into(),
        };
        format!("{keypoints}; {identity}")
    }

    /// AKD, MKR and AED of one reconstructed frame against its real frame (FOMM's definitions):
    /// AKD, the mean distance in pixels between keypoints found in both; MKR, the share of the
    /// keypoints found in the real frame that are missing from the reconstruction; AED, the
    /// distance between the two identity embeddings. `None` where it cannot be measured.
    pub fn compare(&self, real: &RgbImage, fake: &RgbImage) -> KeypointMetrics {
        let (mut akd, mut mkr) = (None, None);
        if let Some(detector) = &self.keypoints {
            let (a, b) = (detector.detect(real), detector.detect(fake));
            // Per keypoint found in the real frame: is it found in the reconstruction too?
            let kept: Vec<bool> = a
                .iter()
                .zip(&b)
                .filter(|(a, _)| a.is_some())
                .map(|(_, b)| b.is_some())
                .collect();
            if !kept.is_empty() {
                let missing = kept.iter().filter(|&&k| !k).count();
                mkr = Some(missing as f64 / kept.len() as f64);
            }
            let distances: Vec<f64> = a
                .iter()
                .zip(&b)
                .filter_map(|(a, b)| Some(distance(a.as_ref()?, b.as_ref()?)))
                .collect();
            if !distances.is_empty() {
                akd = Some(distances.iter().sum::<f64>() / distances.len() as f64);
            }
        }
        let aed = self.identity.as_ref().and_then(|identity| {
            let (a, b) = (identity.embed(real)?, identity.embed(fake)?);
            let squared: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
            Some(squared.sqrt())
        });
        KeypointMetrics { akd, mkr, aed }
    }
}

fn distance(a: &[f32; 2], b: &[f32; 2]) -> f64 {
    f64::from((a[0] - b[0]).hypot(a[1] - b[1]))
}

/// A frame's AKD (pixels), MKR (fraction) and AED; `None` where not measurable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeypointMetrics {
    pub akd: Option<f64>,
    pub mkr: Option<f64>,
    pub aed: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finds two fixed points, the second only in images whose first pixel is white.
    #[derive(Debug)]
    struct TwoPoints;

    impl KeypointEvaluator for TwoPoints {
        fn describe(&self) -> String {
            "two points".into()
        }
        fn keypoint_names(&self) -> Vec<String> {
            vec!["a".into(), "b".into()]
        }
        fn detect(&self, image: &RgbImage) -> Vec<Option<[f32; 2]>> {
            let shift = f32::from(image.get_pixel(1, 0)[0]) / 255.0 * 3.0;
            let white = image.get_pixel(0, 0)[0] == 255;
            vec![Some([shift, 4.0]), white.then_some([1.0, 1.0])]
        }
    }

    #[test]
    fn akd_and_mkr_follow_fomms_definitions() {
        let evaluators = Evaluators {
            keypoints: Some(Box::new(TwoPoints)),
            identity: None,
        };
        let mut real = RgbImage::new(4, 4);
        real.put_pixel(0, 0, image::Rgb([255, 255, 255]));
        let same = evaluators.compare(&real, &real);
        assert_eq!(
            same,
            KeypointMetrics {
                akd: Some(0.0),
                mkr: Some(0.0),
                aed: None
            }
        );
        // The reconstruction moves the first point by 3 px and loses the second.
        let mut fake = RgbImage::new(4, 4);
        fake.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        let m = evaluators.compare(&real, &fake);
        assert_eq!(m.akd, Some(3.0));
        assert_eq!(m.mkr, Some(0.5));
        // A keypoint the real frame lacks is not missing from the reconstruction.
        let m = evaluators.compare(&fake, &real);
        assert_eq!(m.mkr, Some(0.0));
        assert!(Evaluators::default().describe().contains("left empty"));
    }
}
