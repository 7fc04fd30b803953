//! `prioritycut faces IMAGE_OR_VIDEO [--json]`: MTCNN's faces of a photo or of every frame of a
//! video, in the input's pixels.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::data::video::{IMAGE_EXTENSIONS, extension};
use prioritycut_engine::data::{read_frames, read_image};
use prioritycut_engine::faces::{Face, FaceDetector};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct FacesArgs {
    /// A photo (.png, .jpg) or a video (a compressed video, a folder of frames, a GIF).
    pub input: PathBuf,
    /// One JSON object per line per frame: {"frame", "faces": [{"box", "score", "landmarks"}]}.
    #[arg(long)]
    pub json: bool,
    /// Folder with MTCNN's weights (pnet.pt, rnet.pt, onet.pt); default: the bundled ones.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// auto | wgpu | wgpu:N | cpu | flex: the device the detector runs on (here flex unless asked).
    #[arg(long, default_value = "flex", value_parser = super::parse_backend)]
    pub backend: BackendChoice,
}

#[derive(Serialize)]
struct FrameFaces<'a> {
    frame: usize,
    faces: Vec<FaceJson<'a>>,
}

#[derive(Serialize)]
struct FaceJson<'a> {
    #[serde(rename = "box")]
    bbox: &'a [f32; 4],
    score: f32,
    landmarks: &'a [[f32; 2]; 5],
}

/// The bundled detector, or the one in `weights`.
pub(super) fn face_detector(
    weights: Option<&Path>,
    device: &prioritycut_engine::burn::tensor::Device,
) -> anyhow::Result<FaceDetector> {
    let dir = weights.map_or_else(super::bundled_face_weights, Path::to_path_buf);
    prioritycut_engine::import::load_face_detector(&dir, device)
        .with_context(|| format!("loading the face detector from {}", dir.display()))
}

pub fn run(args: FacesArgs) -> anyhow::Result<ExitCode> {
    match report(args) {
        // A reader that stops early (`| head`) is not an error.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

fn report(args: FacesArgs) -> anyhow::Result<ExitCode> {
    // A .png is a photo here, not FOMM's strip of frames side by side.
    let is_image = IMAGE_EXTENSIONS.contains(&extension(&args.input).as_str()) && args.input.is_file();
    let frames = if is_image {
        vec![read_image(&args.input)?]
    } else {
        read_frames(&args.input)?
    };
    let selected = super::open_device(args.backend)?;
    let detector = face_detector(args.weights.as_deref(), &selected.device)?;
    let bar = (!args.json && frames.len() > 1).then(|| super::progress_bar(frames.len(), "faces"));
    let mut stdout = std::io::stdout().lock();
    let mut counts = Vec::with_capacity(frames.len());
    for (index, frame) in frames.iter().enumerate() {
        let faces = detector.detect(frame);
        if args.json {
            let line = FrameFaces {
                frame: index,
                faces: faces
                    .iter()
                    .map(|face| FaceJson {
                        bbox: &face.bbox,
                        score: face.score,
                        landmarks: &face.landmarks,
                    })
                    .collect(),
            };
            writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
        } else if frames.len() == 1 {
            print_faces(&mut stdout, &faces)?;
        }
        counts.push(faces.len());
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !args.json {
        let (w, h) = frames[0].dimensions();
        if frames.len() > 1 {
            let with = counts.iter().filter(|&&n| n > 0).count();
            let most = counts.iter().copied().max().unwrap_or(0);
            writeln!(
                stdout,
                "{}: {} frames ({w}x{h}); a face in {with} of them, at most {most} in one frame",
                args.input.display(),
                frames.len()
            )?;
            let missing: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] == 0).collect();
            if !missing.is_empty() && missing.len() < frames.len() {
                writeln!(stdout, "no face in frames {}", ranges(&missing))?;
            }
        } else {
            writeln!(stdout, "{} ({w}x{h}): {} face(s)", args.input.display(), counts[0])?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_faces(out: &mut impl Write, faces: &[Face]) -> std::io::Result<()> {
    for (i, face) in faces.iter().enumerate() {
        let [x0, y0, x1, y1] = face.bbox;
        writeln!(
            out,
            "face {}: box ({x0:.1}, {y0:.1})-({x1:.1}, {y1:.1}), {:.0}x{:.0} px, score {:.4}",
            i + 1,
            face.width(),
            face.height(),
            face.score
        )?;
        let names = ["left eye", "right eye", "nose", "mouth left", "mouth right"];
        let points: Vec<String> = names
            .iter()
            .zip(&face.landmarks)
            .map(|(name, [x, y])| format!("{name} ({x:.1}, {y:.1})"))
            .collect();
        writeln!(out, "  {}", points.join(", "))?;
    }
    Ok(())
}

/// `[1, 2, 3, 7, 9, 10]` → `1-3, 7, 9-10`.
fn ranges(frames: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let start = frames[i];
        while i + 1 < frames.len() && frames[i + 1] == frames[i] + 1 {
            i += 1;
        }
        parts.push(if frames[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", frames[i])
        });
        i += 1;
    }
    parts.join(", ")
}
