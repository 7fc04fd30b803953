//! A keypoint evaluator for faces: MTCNN's five landmarks (eyes, nose, mouth corners) of the
//! largest face. FOMM measures AKD and MKR on VoxCeleb with a 68-point facial landmark detector
//! (face-alignment); MTCNN's five points are the landmark detector this project ships weights
//! for, so its AKD is over those five and not directly comparable with the paper's numbers.

use image::RgbImage;

use super::KeypointEvaluator;
use crate::faces::{FaceDetector, largest};

#[derive(Debug)]
pub struct FaceLandmarks {
    detector: FaceDetector,
}

impl FaceLandmarks {
    pub fn new(detector: FaceDetector) -> Self {
        Self { detector }
    }
}

impl KeypointEvaluator for FaceLandmarks {
    fn describe(&self) -> String {
        "MTCNN's five face landmarks (facenet-pytorch's weights; the largest face)".into()
    }

    fn keypoint_names(&self) -> Vec<String> {
        ["left eye", "right eye", "nose", "mouth left", "mouth right"]
            .map(String::from)
            .to_vec()
    }

    fn detect(&self, image: &RgbImage) -> Vec<Option<[f32; 2]>> {
        let faces = self.detector.detect(image);
        match largest(&faces) {
            Some(face) => face.landmarks.iter().map(|&p| Some(p)).collect(),
            None => vec![None; 5],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::Device;

    use super::*;
    use crate::evaluators::Evaluators;

    fn weights() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/mtcnn")
    }

    fn evaluator() -> FaceLandmarks {
        FaceLandmarks::new(crate::import::load_face_detector(&weights(), &Device::flex()).expect("weights"))
    }

    #[test]
    fn faces_stand_in_only_where_the_dataset_has_no_evaluator() {
        let device = Device::flex();
        let dir = crate::test_support::temp_dir("evaluators-choice");
        let real = dir.join("real");
        std::fs::create_dir_all(&real).expect("dir");
        let chosen = Evaluators::for_dataset_or_faces(&real, Some(&weights()), &device).expect("faces");
        assert!(
            chosen.describe().starts_with("AKD/MKR by MTCNN"),
            "{}",
            chosen.describe()
        );
        let none = Evaluators::for_dataset_or_faces(&real, None, &device).expect("none");
        assert!(none.keypoints.is_none());
        // Bad weights are an error naming them, where they are needed...
        let missing = dir.join("no-weights");
        let error = Evaluators::for_dataset_or_faces(&real, Some(&missing), &device).expect_err("missing");
        assert!(error.to_string().contains("no-weights"), "{error}");
        // ...and not read where the dataset brings its own (synthetic figures).
        let synthetic = dir.join("synthetic");
        std::fs::create_dir_all(&synthetic).expect("dir");
        std::fs::write(synthetic.join("synthetic.json"), "{}").expect("marker");
        let figures = Evaluators::for_dataset_or_faces(&synthetic, Some(&missing), &device).expect("figures");
        assert!(figures.describe().contains("joint"), "{}", figures.describe());
    }

    #[test]
    fn akd_of_a_shifted_face_is_the_shift_and_a_lost_face_counts_as_missing() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mtcnn");
        let photo = image::open(fixtures.join("astronaut.png")).expect("photo").to_rgb8();
        // The photo moved 6 pixels right (the left edge repeated).
        let shifted = RgbImage::from_fn(photo.width(), photo.height(), |x, y| {
            *photo.get_pixel(x.saturating_sub(6), y)
        });
        let evaluators = Evaluators {
            keypoints: Some(Box::new(evaluator())),
            identity: None,
        };
        let same = evaluators.compare(&photo, &photo);
        assert_eq!(same.akd, Some(0.0));
        assert_eq!(same.mkr, Some(0.0));
        let moved = evaluators.compare(&photo, &shifted);
        let akd = moved.akd.expect("akd");
        assert!((akd - 6.0).abs() < 1.5, "AKD {akd} for a 6-pixel shift");
        let blank = RgbImage::from_pixel(photo.width(), photo.height(), image::Rgb([90, 90, 90]));
        let lost = evaluators.compare(&photo, &blank);
        assert_eq!(lost.mkr, Some(1.0));
        assert!(evaluators.describe().contains("MTCNN"));
    }
}
