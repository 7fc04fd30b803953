//! FOMM's video-reconstruction protocol (`reconstruction.py`, the paper's §4.1): for each test
//! video the first frame is the source and every frame in turn the driving frame, moved with
//! absolute keypoints; each reconstruction is compared with the real frame. Per-frame results
//! are kept so that the summary carries 95% confidence intervals.
//!
//! Salient masks come from the dataset when it has them (the synthetic figures' coverage masks,
//! `truth/<split>/<video>/masks/NNNN.png`) or from a folder the user names in the same layout
//! (`<dir>/<video>/NNNN.png`). AKD/MKR/AED come from the [`Evaluators`] given (for the synthetic
//! figures, the colour joint detector); without one those columns stay empty and the report says
//! so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use image::{GrayImage, RgbImage};

use crate::data::dataset::{FramesDataset, Split};
use crate::data::read_image;
use crate::evaluators::{Evaluators, KeypointMetrics};
use crate::faces::{FaceCrop, FaceDetector, track_clip};
use crate::family::LoadedModel;
use crate::frames::{image_to_tensor, images_to_tensor, tensor_to_images};
use crate::metrics::{FrameMetrics, Interval, RegionMetrics, frame_and_region_metrics};
use crate::model::keypoints::Keypoints;
use crate::render::sheet::{DIFFERENCE_RANGE, difference_image, labelled_grid};
use crate::{EngineError, Result};

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// At most this many test videos (in name order); all when `None`.
    pub max_videos: Option<usize>,
    /// Salient masks as `<dir>/<video>/NNNN.png`; else the dataset's own, if any.
    pub masks: Option<PathBuf>,
    /// Driving frames reconstructed per forward pass.
    pub batch_size: usize,
    /// The middle frame of each of the first this many videos is kept in the report (real and
    /// reconstructed), so that figures show the same frames for every model.
    pub keep_middle: usize,
    /// Raised by someone else to stop between batches ([`EngineError::Cancelled`]).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Cut each test video around its face track (`crop-video.py`'s square for the whole
    /// clip) before the protocol: for talking-head clips that are not cropped as VoxCeleb's
    /// are. A video with no face is evaluated whole, with a warning.
    pub face_crop: Option<FaceDetector>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            max_videos: None,
            masks: None,
            batch_size: 8,
            keep_middle: 0,
            cancel: None,
            face_crop: None,
        }
    }
}

/// One test video's per-frame results.
#[derive(Debug, Clone)]
pub struct VideoEval {
    pub name: String,
    /// The first frame: the source the protocol animates.
    pub source: RgbImage,
    pub frames: Vec<FrameMetrics>,
    /// Per frame (salient, rest); empty when the video has no masks.
    pub regions: Vec<(RegionMetrics, RegionMetrics)>,
    /// Per frame AKD, MKR and AED (each `None` without its evaluator).
    pub keypoints: Vec<KeypointMetrics>,
    /// The frame reconstructed worst (highest L1), and the middle frame when asked for
    /// (`keep_middle`).
    pub worst: Option<KeptFrame>,
    pub middle: Option<KeptFrame>,
}

/// A real frame and its reconstruction, kept for showing.
#[derive(Debug, Clone)]
pub struct KeptFrame {
    pub index: usize,
    pub real: RgbImage,
    pub reconstruction: RgbImage,
}

impl VideoEval {
    pub fn mean_l1(&self) -> f64 {
        self.frames.iter().map(|f| f.l1).sum::<f64>() / self.frames.len().max(1) as f64
    }

    /// The frame reconstructed worst (highest L1).
    pub fn worst_frame(&self) -> Option<usize> {
        (0..self.frames.len()).max_by(|&a, &b| self.frames[a].l1.total_cmp(&self.frames[b].l1))
    }
}

/// The paper's table row, each column a mean with its 95% interval over all frames; `None`
/// where nothing could be measured.
#[derive(Debug, Clone)]
pub struct EvalSummary {
    pub l1: Option<Interval>,
    pub psnr: Option<Interval>,
    pub psnr_salient: Option<Interval>,
    pub psnr_rest: Option<Interval>,
    pub ssim: Option<Interval>,
    pub ssim_salient: Option<Interval>,
    pub ssim_rest: Option<Interval>,
    /// Pixels, fraction of joints, embedding distance.
    pub akd: Option<Interval>,
    pub mkr: Option<Interval>,
    pub aed: Option<Interval>,
    /// Frames evaluated, and how many of them had a salient mask.
    pub frames: usize,
    pub masked_frames: usize,
}

#[derive(Debug, Clone)]
pub struct EvalReport {
    pub videos: Vec<VideoEval>,
    /// Where the salient masks came from, or why there are none.
    pub masks: String,
    /// The evaluators behind AKD, MKR and AED, or why those columns are empty.
    pub evaluators: String,
    /// What the dataset skipped (unreadable or too short test videos).
    pub warnings: Vec<String>,
}

impl EvalReport {
    pub fn summary(&self) -> EvalSummary {
        let frames: Vec<&FrameMetrics> = self.videos.iter().flat_map(|v| &v.frames).collect();
        let regions: Vec<&(RegionMetrics, RegionMetrics)> = self.videos.iter().flat_map(|v| &v.regions).collect();
        let keypoints: Vec<&KeypointMetrics> = self.videos.iter().flat_map(|v| &v.keypoints).collect();
        let of = |values: Vec<f64>| Interval::of(&values);
        EvalSummary {
            l1: of(frames.iter().map(|f| f.l1).collect()),
            psnr: of(frames.iter().map(|f| f.psnr).collect()),
            psnr_salient: of(regions.iter().filter_map(|r| r.0.psnr).collect()),
            psnr_rest: of(regions.iter().filter_map(|r| r.1.psnr).collect()),
            ssim: of(frames.iter().map(|f| f.ssim).collect()),
            ssim_salient: of(regions.iter().filter_map(|r| r.0.ssim).collect()),
            ssim_rest: of(regions.iter().filter_map(|r| r.1.ssim).collect()),
            akd: of(keypoints.iter().filter_map(|k| k.akd).collect()),
            mkr: of(keypoints.iter().filter_map(|k| k.mkr).collect()),
            aed: of(keypoints.iter().filter_map(|k| k.aed).collect()),
            frames: frames.len(),
            masked_frames: regions.len(),
        }
    }

    /// The videos reconstructed worst (highest mean L1) first, at most `count`, each with its
    /// worst frame kept.
    pub fn worst_videos(&self, count: usize) -> Vec<&VideoEval> {
        let mut videos: Vec<&VideoEval> = self.videos.iter().filter(|v| v.worst.is_some()).collect();
        videos.sort_by(|a, b| b.mean_l1().total_cmp(&a.mean_l1()));
        videos.truncate(count);
        videos
    }

    /// The worst-reconstructed frame of each of the (at most six) worst videos: real frame,
    /// reconstruction and their difference heatmap, a row each.
    pub fn worst_sheet(&self) -> RgbImage {
        let rows: Vec<Vec<(String, RgbImage)>> = self
            .worst_videos(6)
            .into_iter()
            .filter_map(|video| {
                let worst = video.worst.as_ref()?;
                Some(vec![
                    (format!("{} #{}", video.name, worst.index), worst.real.clone()),
                    (
                        format!("L1 {:.4}", video.frames.get(worst.index)?.l1),
                        worst.reconstruction.clone(),
                    ),
                    (
                        "|difference|".to_string(),
                        difference_image(&worst.real, &worst.reconstruction),
                    ),
                ])
            })
            .collect();
        labelled_grid(
            &format!("worst frames: real | reconstruction | difference (magma, 0 to {DIFFERENCE_RANGE})"),
            &rows,
        )
    }

    /// Writes `dir/table.md` and `dir/table.csv` (the row named `model`), `dir/frames.csv` and
    /// `dir/worst.png` ([`EvalReport::worst_sheet`]), each atomically.
    pub fn write(&self, dir: &Path, model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let summary = self.summary();
        let files = [
            ("table.md", summary.markdown_table(model)),
            (
                "table.csv",
                format!("{}\n{}\n", EvalSummary::CSV_HEADER, summary.csv_row(model)),
            ),
            ("frames.csv", self.frames_csv()),
        ];
        for (name, text) in files {
            crate::files::write_atomic(&dir.join(name), text.as_bytes())?;
        }
        crate::files::write_png(&dir.join("worst.png"), &self.worst_sheet())
    }

    /// Per-frame results as CSV: video,frame,l1,psnr,ssim,psnr_salient,psnr_rest,ssim_salient,
    /// ssim_rest,akd,mkr,aed.
    pub fn frames_csv(&self) -> String {
        let mut csv =
            String::from("video,frame,l1,psnr,ssim,psnr_salient,psnr_rest,ssim_salient,ssim_rest,akd,mkr,aed\n");
        let cell = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for video in &self.videos {
            for (i, f) in video.frames.iter().enumerate() {
                let (salient, rest) = video.regions.get(i).copied().unzip();
                let k = video.keypoints.get(i).copied().unwrap_or_default();
                csv += &format!(
                    "{},{i},{},{},{},{},{},{},{},{},{},{}\n",
                    video.name,
                    f.l1,
                    f.psnr,
                    f.ssim,
                    cell(salient.and_then(|r| r.psnr)),
                    cell(rest.and_then(|r| r.psnr)),
                    cell(salient.and_then(|r| r.ssim)),
                    cell(rest.and_then(|r| r.ssim)),
                    cell(k.akd),
                    cell(k.mkr),
                    cell(k.aed),
                );
            }
        }
        csv
    }
}

impl EvalSummary {
    /// The header of the paper's table (Tables 1–3), Markdown.
    pub const MARKDOWN_HEADER: &'static str = "| Model | L1 ↓ | PSNR ↑ | PSNR salient ↑ | PSNR ¬salient ↑ | SSIM ↑ | SSIM salient ↑ | SSIM ¬salient ↑ | AKD ↓ | MKR ↓ | AED ↓ |\n|---|---|---|---|---|---|---|---|---|---|---|";
    pub const CSV_HEADER: &'static str = "model,l1,l1_ci,psnr,psnr_ci,psnr_salient,psnr_salient_ci,psnr_rest,psnr_rest_ci,ssim,ssim_ci,ssim_salient,ssim_salient_ci,ssim_rest,ssim_rest_ci,akd,akd_ci,mkr,mkr_ci,aed,aed_ci";

    /// The table's measured columns in order, each with the decimals it is printed with.
    pub fn columns(&self) -> [(Option<Interval>, usize); 10] {
        [
            (self.l1, 4),
            (self.psnr, 2),
            (self.psnr_salient, 2),
            (self.psnr_rest, 2),
            (self.ssim, 3),
            (self.ssim_salient, 3),
            (self.ssim_rest, 3),
            (self.akd, 3),
            (self.mkr, 3),
            (self.aed, 4),
        ]
    }

    /// The header and this one row, Markdown.
    pub fn markdown_table(&self, model: &str) -> String {
        format!("{}\n{}\n", Self::MARKDOWN_HEADER, self.markdown_row(model))
    }

    /// One Markdown row; unmeasured columns are empty.
    pub fn markdown_row(&self, model: &str) -> String {
        let cells: Vec<String> = self
            .columns()
            .iter()
            .map(|(i, d)| i.map(|i| i.format(*d)).unwrap_or_default())
            .collect();
        format!("| {model} | {} |", cells.join(" | "))
    }

    /// One CSV row: each metric's mean and interval half-width; unmeasured cells empty.
    pub fn csv_row(&self, model: &str) -> String {
        let mut cells = vec![model.replace(',', ";")];
        for (interval, _) in self.columns() {
            match interval {
                Some(i) => {
                    cells.push(i.mean.to_string());
                    cells.push(if i.half_width.is_finite() {
                        i.half_width.to_string()
                    } else {
                        String::new()
                    });
                }
                None => cells.extend([String::new(), String::new()]),
            }
        }
        cells.join(",")
    }
}

/// The salient mask at `path` at `size`, if there is one.
fn salient_mask(path: &Path, framing: Option<&VideoFraming>, size: (u32, u32)) -> Result<Option<GrayImage>> {
    if !path.is_file() {
        return Ok(None);
    }
    let nearest = image::imageops::FilterType::Nearest;
    let mut mask = read_image(path)?;
    if let Some(VideoFraming {
        crop,
        stored_size: (w, h),
    }) = framing
    {
        // The mask belongs to the stored frame: cut it with the frame's square.
        mask = crop.cut(&image::imageops::resize(&mask, *w, *h, nearest));
    }
    let mask = image::imageops::resize(&mask, size.0, size.1, nearest);
    Ok(Some(image::DynamicImage::ImageRgb8(mask).to_luma8()))
}

/// A test video cut around its face track: the square, in the stored frames' pixels.
struct VideoFraming {
    crop: FaceCrop,
    stored_size: (u32, u32),
}

/// Video `index`'s frames at the model's size, cut around its face track when asked.
fn read_test_video(
    dataset: &FramesDataset,
    index: usize,
    options: &EvalOptions,
    warnings: &mut Vec<String>,
) -> Result<(Vec<RgbImage>, Option<VideoFraming>)> {
    let Some(detector) = &options.face_crop else {
        return Ok((dataset.read_video(index)?, None));
    };
    let name = &dataset.videos[index].name;
    let stored = dataset.read_video_as_stored(index)?;
    let cancelled = || options.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    let [h, w, _] = dataset.frame_shape;
    let size = (w as u32, h as u32);
    match track_clip(detector, &stored, |_, _| {}, cancelled)? {
        Some((track, crop)) => {
            if track.frames_tracked < stored.len() {
                warnings.push(format!(
                    "{name}: the face was found in {} of {} frames; its square holds where it is not",
                    track.frames_tracked,
                    stored.len()
                ));
            }
            let frames = stored.iter().map(|frame| crop.cut_resized(frame, size)).collect();
            let stored_size = stored.first().map_or((0, 0), RgbImage::dimensions);
            Ok((frames, Some(VideoFraming { crop, stored_size })))
        }
        None => {
            warnings.push(format!("{name}: no face found, evaluated as whole frames"));
            Ok((stored.iter().map(|frame| dataset.resized(frame)).collect(), None))
        }
    }
}

/// Runs the protocol over the test split of `dataset_root`; `progress(videos done, videos)`.
pub fn evaluate(
    model: &LoadedModel,
    dataset_root: &Path,
    options: &EvalOptions,
    evaluators: &Evaluators,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    if options.batch_size == 0 {
        return Err(EngineError::Invalid(
            "the evaluation batch size must be at least 1".into(),
        ));
    }
    let models = &*model.models;
    let (dataset, mut warnings) = FramesDataset::open(dataset_root, Split::Test, model.frame_shape, &model.dataset)?;
    let count = options.max_videos.unwrap_or(usize::MAX).min(dataset.videos.len());
    if count == 0 {
        return Err(EngineError::Invalid("no test video to evaluate (--videos 0?)".into()));
    }
    let dataset_masks = dataset_root.join("truth").join(Split::Test.name());
    if let Some(dir) = &options.masks
        && !dir.is_dir()
    {
        return Err(EngineError::media(
            dir,
            "is not a folder of salient masks (<dir>/<video>/NNNN.png)",
        ));
    }
    // The user's masks are <dir>/<video>/NNNN.png; the synthetic dataset's truth/test/<video>/masks/NNNN.png.
    let mask_path = |video: &str, index: usize| match &options.masks {
        Some(dir) => dir.join(video).join(format!("{index:04}.png")),
        None => dataset_masks.join(video).join("masks").join(format!("{index:04}.png")),
    };
    let mut results = Vec::with_capacity(count);
    for index in 0..count {
        let name = &dataset.videos[index].name;
        let (frames, framing) = read_test_video(&dataset, index, options, &mut warnings)?;
        let source = image_to_tensor(&frames[0], device);
        let kp_source = models.keypoints(source.clone());
        // The source is fixed for the whole video: its encoding is computed once.
        let encoded = models.encode_source(source);
        let mut reconstructions = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(options.batch_size) {
            if options.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(EngineError::Cancelled("the evaluation"));
            }
            let n = chunk.len();
            let driving = images_to_tensor(chunk, device);
            let kp_driving = models.keypoints(driving);
            let kp_source_batch = Keypoints {
                value: kp_source.value.clone().repeat_dim(0, n),
                jacobian: kp_source.jacobian.clone().map(|j| j.repeat_dim(0, n)),
            };
            // Absolute motion, as FOMM's reconstruction: the driving keypoints as they are.
            let out = models.generate(&encoded.repeat(n), &kp_driving, &kp_source_batch);
            reconstructions.extend(tensor_to_images(out.prediction));
        }
        let mut metrics = Vec::with_capacity(frames.len());
        let mut regions = Vec::new();
        let mut keypoints = Vec::with_capacity(frames.len());
        for (i, (real, fake)) in frames.iter().zip(&reconstructions).enumerate() {
            let mask = salient_mask(&mask_path(name, i), framing.as_ref(), real.dimensions())?;
            let (frame, split) = frame_and_region_metrics(real, fake, mask.as_ref())?;
            metrics.push(frame);
            regions.extend(split);
            keypoints.push(evaluators.compare(real, fake));
        }
        // Masks for some frames only would misalign the columns: all or none.
        if regions.len() != metrics.len() {
            regions.clear();
        }
        let keep = |i: usize| KeptFrame {
            index: i,
            real: frames[i].clone(),
            reconstruction: reconstructions[i].clone(),
        };
        let mut video = VideoEval {
            name: name.clone(),
            source: frames[0].clone(),
            frames: metrics,
            regions,
            keypoints,
            worst: None,
            middle: (index < options.keep_middle).then(|| keep(frames.len() / 2)),
        };
        video.worst = video.worst_frame().map(keep);
        results.push(video);
        progress(index + 1, count);
    }
    let masked = results.iter().filter(|v| !v.regions.is_empty()).count();
    let masks = match (&options.masks, masked) {
        (_, 0) => "no salient masks found: the salient columns are empty".to_string(),
        (Some(dir), n) => format!("salient masks from {} ({n} of {} videos)", dir.display(), results.len()),
        (None, n) => format!(
            "salient masks from the dataset's truth/ ({n} of {} videos)",
            results.len()
        ),
    };
    Ok(EvalReport {
        videos: results,
        masks,
        evaluators: evaluators.describe(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{SyntheticConfig, generate};

    fn fixture_model() -> LoadedModel {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fomm-small");
        LoadedModel::open(
            &dir.join("checkpoint.pth.tar"),
            Some(&dir.join("config.yaml")),
            &Device::flex(),
        )
        .expect("model")
    }

    /// `face_crop`: the protocol sees each video cut to its face track's square, and the
    /// masks are cut with it (a mask that is the square itself covers the whole cut frame).
    #[test]
    fn face_crop_cuts_the_frames_and_their_masks_around_the_face_track() {
        let root = crate::test_support::temp_dir("eval-face-crop");
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mtcnn");
        let detector = crate::import::load_face_detector(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/models/mtcnn"),
            &Device::flex(),
        )
        .expect("detector");
        let names = ["carphone-000.png", "carphone-060.png", "carphone-119.png"];
        let stored: Vec<RgbImage> = names
            .iter()
            .map(|n| image::open(fixtures.join(n)).expect("frame").to_rgb8())
            .collect();
        let (_, crop) = track_clip(&detector, &stored, |_, _| {}, || false)
            .expect("track")
            .expect("a face");
        let masks = root.join("masks/carphone");
        std::fs::create_dir_all(&masks).expect("dir");
        for split in ["train", "test"] {
            let dir = root.join(split).join("carphone");
            std::fs::create_dir_all(&dir).expect("dir");
            for (i, frame) in stored.iter().enumerate() {
                frame.save(dir.join(format!("{i:04}.png"))).expect("frame");
            }
        }
        let (w, h) = stored[0].dimensions();
        let square = RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (i64::from(x), i64::from(y));
            let inside = x >= crop.x0
                && y >= crop.y0
                && x < crop.x0 + i64::from(crop.side)
                && y < crop.y0 + i64::from(crop.side);
            image::Rgb(if inside { [255; 3] } else { [0; 3] })
        });
        for i in 0..stored.len() {
            square.save(masks.join(format!("{i:04}.png"))).expect("mask");
        }
        let model = fixture_model();
        let run = |face_crop: Option<FaceDetector>| {
            let options = EvalOptions {
                masks: Some(root.join("masks")),
                face_crop,
                ..EvalOptions::default()
            };
            evaluate(
                &model,
                &root,
                &options,
                &Evaluators::default(),
                &Device::flex(),
                |_, _| {},
            )
            .expect("evaluate")
        };
        let [fh, fw, _] = model.frame_shape;
        let cropped = run(Some(detector));
        let video = &cropped.videos[0];
        assert_eq!(video.source, crop.cut_resized(&stored[0], (fw as u32, fh as u32)));
        assert!(
            cropped.warnings.iter().all(|w| !w.contains("no face")),
            "{:?}",
            cropped.warnings
        );
        // The mask was the square: after the cut, nothing is left outside the salient region.
        let (salient, rest) = video.regions[0];
        assert!(salient.psnr.is_some() && rest.psnr.is_none(), "{salient:?} {rest:?}");
        let whole = run(None);
        assert_eq!(
            whole.videos[0].source,
            crate::frames::resize_to(&stored[0], fw as u32, fh as u32)
        );
        assert!(whole.videos[0].regions[0].1.psnr.is_some(), "whole frames have a rest");
    }

    #[test]
    fn reconstruction_protocol_with_dataset_masks() {
        let root = crate::test_support::temp_dir("eval");
        let synthetic = SyntheticConfig {
            size: 64,
            train_videos: 1,
            test_videos: 3,
            frames: 5,
            seed: 4,
        };
        generate(&root, &synthetic, |_, _| {}).expect("dataset");
        let model = fixture_model();
        let options = EvalOptions {
            max_videos: Some(2),
            batch_size: 2,
            keep_middle: 1,
            ..EvalOptions::default()
        };
        let mut calls = Vec::new();
        let report = evaluate(
            &model,
            &root,
            &options,
            &Evaluators::for_dataset(&root),
            &Device::flex(),
            |d, t| calls.push((d, t)),
        )
        .expect("evaluate");
        assert_eq!(calls, vec![(1, 2), (2, 2)]);
        assert_eq!(report.videos.len(), 2);
        let summary = report.summary();
        assert_eq!((summary.frames, summary.masked_frames), (10, 10));
        assert!(report.masks.contains("truth"), "{}", report.masks);
        let l1 = summary.l1.expect("l1");
        assert!(l1.mean > 0.0 && l1.mean < 1.0 && l1.half_width.is_finite(), "{l1:?}");
        for column in [
            summary.psnr_salient,
            summary.psnr_rest,
            summary.ssim_salient,
            summary.ssim_rest,
        ] {
            assert!(column.is_some_and(|c| c.count == 10));
        }
        // Batched frames equal frames done one by one.
        let single = evaluate(
            &model,
            &root,
            &EvalOptions {
                max_videos: Some(1),
                batch_size: 1,
                ..EvalOptions::default()
            },
            &Evaluators::default(),
            &Device::flex(),
            |_, _| {},
        )
        .expect("evaluate");
        for (a, b) in single.videos[0].frames.iter().zip(&report.videos[0].frames) {
            assert!((a.l1 - b.l1).abs() < 2e-3, "{a:?} vs {b:?}");
        }
        let row = summary.markdown_row("fixture");
        assert_eq!(row.matches('|').count(), 12, "{row}");
        assert_eq!(
            row.matches('|').count(),
            EvalSummary::MARKDOWN_HEADER
                .lines()
                .next()
                .map_or(0, |h| h.matches('|').count())
        );
        assert_eq!(
            summary.csv_row("fixture").split(',').count(),
            EvalSummary::CSV_HEADER.split(',').count()
        );
        assert_eq!(report.frames_csv().lines().count(), 11);
        assert!(report.frames_csv().lines().all(|l| l.split(',').count() == 12));
        // The synthetic dataset brings the figure evaluators: every real frame has joints, so
        // MKR is measured on every frame, whatever the model draws.
        assert!(report.evaluators.contains("joint detector"), "{}", report.evaluators);
        assert_eq!(summary.mkr.map(|m| m.count), Some(10));
        assert!(single.summary().mkr.is_none() && single.evaluators.contains("left empty"));
        // Kept frames: the middle one of the first video only, and each video's worst.
        let middles: Vec<Option<usize>> = report
            .videos
            .iter()
            .map(|v| v.middle.as_ref().map(|k| k.index))
            .collect();
        assert_eq!(middles, vec![Some(2), None]);
        let worst = report.videos[0].worst.as_ref().expect("worst frame");
        assert_eq!(Some(worst.index), report.videos[0].worst_frame());
        assert_eq!(worst.reconstruction.dimensions(), (64, 64));
    }

    #[test]
    fn bad_requests_are_errors() {
        let root = crate::test_support::temp_dir("eval-bad");
        let synthetic = SyntheticConfig {
            size: 64,
            train_videos: 1,
            test_videos: 1,
            frames: 3,
            seed: 1,
        };
        generate(&root, &synthetic, |_, _| {}).expect("dataset");
        let model = fixture_model();
        let device = Device::flex();
        let none = EvalOptions {
            max_videos: Some(0),
            ..EvalOptions::default()
        };
        assert!(evaluate(&model, &root, &none, &Evaluators::default(), &device, |_, _| {}).is_err());
        let masks = EvalOptions {
            masks: Some(root.join("no-such-masks")),
            ..EvalOptions::default()
        };
        let err = evaluate(&model, &root, &masks, &Evaluators::default(), &device, |_, _| {}).expect_err("masks");
        assert!(err.to_string().contains("no-such-masks"), "{err}");
        let cancelled = EvalOptions {
            cancel: Some(Arc::new(AtomicBool::new(true))),
            ..EvalOptions::default()
        };
        let err =
            evaluate(&model, &root, &cancelled, &Evaluators::default(), &device, |_, _| {}).expect_err("cancelled");
        assert!(matches!(err, EngineError::Cancelled(_)), "{err}");
        let err = evaluate(
            &model,
            &root.join("missing"),
            &EvalOptions::default(),
            &Evaluators::default(),
            &device,
            |_, _| {},
        );
        assert!(err.is_err());
    }
}
