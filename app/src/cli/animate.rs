//! `prioritycut animate --checkpoint C --config Y --source IMG --driving VIDEO --out OUT`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use image::RgbImage;
use prioritycut_engine::animate::{AnimateOptions, AnimatedClip, animate_clip};
use prioritycut_engine::burn::tensor::Device;
use prioritycut_engine::data::{Soundtrack, check_output, read_image, read_video, write_frames_with_audio};
use prioritycut_engine::faces::{FaceMode, Framing};

use super::{DeviceArgs, ModelArgs};

#[derive(Debug, Args)]
pub struct AnimateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Photo to animate.
    #[arg(long)]
    pub source: PathBuf,
    /// Driving video: a compressed video, a folder of frames, a GIF, or a PNG strip.
    #[arg(long)]
    pub driving: PathBuf,
    /// Output: .mp4, .gif, or a folder for numbered PNG frames.
    #[arg(long)]
    pub out: PathBuf,
    /// Use the driving keypoints as they are instead of relative to the initial frame
    /// (default: the config's `use_relative_movement`).
    #[arg(long, conflicts_with = "relative")]
    pub absolute: bool,
    /// Move the source relative to the initial driving frame, whatever the config says.
    #[arg(long)]
    pub relative: bool,
    /// Scale the driving motion by the ratio of source to driving face sizes
    /// (default: the config's `adapt_movement_scale`).
    #[arg(long, conflicts_with = "no_adapt_scale")]
    pub adapt_scale: bool,
    /// Do not scale the driving motion, whatever the config says.
    #[arg(long)]
    pub no_adapt_scale: bool,
    /// Start relative motion from the driving frame whose pose best matches the source.
    #[arg(long)]
    pub best_frame: bool,
    /// Move the source by the model's AVD network (TPSMM's `avd` mode): the photo keeps its
    /// proportions and takes the driving pose. Only for models whose checkpoint has one.
    #[arg(long, conflicts_with_all = ["absolute", "relative", "best_frame"])]
    pub avd: bool,
    /// auto: find the face, animate the square around it (as FOMM's crop-video.py frames
    /// VoxCeleb) and paste it back into the photo, at the photo's size (no face: the whole
    /// photo, scaled back to its size); crop: only the animated face square, at the model's
    /// size; off: the whole photo and frames squeezed to the model's size.
    #[arg(long, default_value = "auto")]
    pub face: FaceMode,
    /// Folder with MTCNN's weights (pnet.pt, rnet.pt, onet.pt); default: the bundled ones.
    #[arg(long)]
    pub face_weights: Option<PathBuf>,
    /// Frames per second of the output (default: the driving video's own, which keeps an MP4's
    /// sound in sync; 25 for a folder of frames).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Leave the driving video's sound out of an MP4 output.
    #[arg(long)]
    pub no_audio: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

impl AnimateArgs {
    /// The flags given; what is not given stays the config's.
    fn options(&self) -> AnimateOptions {
        let flag = |on: bool, off: bool| (on || off).then_some(on);
        AnimateOptions {
            relative: flag(self.relative, self.absolute),
            adapt_scale: flag(self.adapt_scale, self.no_adapt_scale),
            best_frame: self.best_frame,
            disentangled: self.avd,
            face: self.face,
        }
    }
}

pub fn run(args: AnimateArgs) -> anyhow::Result<ExitCode> {
    // Check the output and read the inputs before the (slower) model load: a bad path fails fast.
    check_output(&args.out)?;
    let source = read_image(&args.source)?;
    let (driving, driving_fps) = read_video(&args.driving)?;
    let mut selected = args.device.open()?;
    let clip = super::on_device_or_cpu(&mut selected, "animating", |device| {
        animate_on(&args, &source, &driving, device)
    })?;
    describe_framing(&clip.framing);
    if args.best_frame {
        eprintln!(
            "relative motion from driving frame {} (best match to the source pose)",
            clip.initial_frame
        );
    }

    let fps = args.fps.unwrap_or(driving_fps);
    // Sound only plays in sync at the clip's own rate.
    let same_rate = (fps - driving_fps).abs() <= 1e-3 * driving_fps;
    let audio = (!args.no_audio && same_rate && args.driving.is_file()).then_some(args.driving.as_path());
    let bar = super::progress_bar(clip.frames.len(), "writing");
    let soundtrack = write_frames_with_audio(&args.out, &clip.frames, fps, audio, |_| bar.inc(1))
        .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_and_clear();
    match soundtrack {
        Soundtrack::Copied { codec, seconds } => {
            eprintln!("sound: {seconds:.2} s of the driving video's {codec} audio")
        }
        Soundtrack::LeftOut(why) => eprintln!("note: no sound: {why}"),
        Soundtrack::NotAsked if !same_rate && !args.no_audio && args.driving.is_file() => eprintln!(
            "note: no sound: --fps {fps} differs from the driving video's {driving_fps:.3} frames/s, so its audio would not be in sync"
        ),
        Soundtrack::NotAsked => {}
    }
    let (w, h) = clip.frames[0].dimensions();
    println!("wrote {} frames ({w}x{h}) to {}", clip.frames.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Loads the model (and the face detector) onto `device` and animates there, with a progress bar.
fn animate_on(
    args: &AnimateArgs,
    source: &RgbImage,
    driving: &[RgbImage],
    device: &Device,
) -> anyhow::Result<AnimatedClip> {
    let model = args.model.open(device)?;
    super::report_ignored_keys(&model.ignored_config_keys);
    let faces = match args.face {
        FaceMode::Off => None,
        _ => Some(super::faces::face_detector(args.face_weights.as_deref(), device)?),
    };
    let bar = super::progress_bar(driving.len(), "keypoints");
    let mut stage_now = None;
    let clip = animate_clip(
        &model,
        faces.as_ref(),
        source,
        driving,
        args.options(),
        device,
        |stage, done, _| {
            if stage_now != Some(stage) {
                stage_now = Some(stage);
                bar.reset();
                bar.set_message(stage.describe());
            }
            bar.set_position(done as u64);
        },
        || false,
    );
    bar.finish_and_clear();
    Ok(clip?)
}

/// Where the faces were found, on stderr.
fn describe_framing(framing: &Framing) {
    if let Some((face, crop)) = &framing.source_face {
        let [x0, y0, x1, y1] = face.bbox;
        let (side, x, y) = (crop.side, crop.x0, crop.y0);
        eprintln!(
            "photo: face at ({x0:.0}, {y0:.0})-({x1:.0}, {y1:.0}); animating the {side}x{side} square at ({x}, {y})"
        );
    }
    if let Some((track, crop)) = &framing.driving_face {
        let (frames, side, x, y) = (track.frames_tracked, crop.side, crop.x0, crop.y0);
        eprintln!("driving: face tracked in {frames} frames; one {side}x{side} square at ({x}, {y}) for the clip");
    }
    for note in &framing.notes {
        eprintln!("note: {note}");
    }
}
