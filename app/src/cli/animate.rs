//! `prioritycut animate --checkpoint C --config Y --source IMG --driving VIDEO --out OUT`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use prioritycut_engine::animate::{AnimateOptions, ClipStage, animate_clip};
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::checkpoint::LoadedModel;
use prioritycut_engine::data::{read_frames, read_image, write_frames};

#[derive(Debug, Args)]
pub struct AnimateArgs {
    /// Official FOMM checkpoint (.pth.tar), our own (.bpk), or a training run folder (its
    /// latest checkpoint) or one of its checkpoint folders.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// FOMM YAML config the checkpoint was trained with (default: the run's own config.yaml).
    #[arg(long)]
    pub config: Option<PathBuf>,
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
    /// Frames per second of a GIF output.
    #[arg(long, default_value_t = 25.0)]
    pub fps: f64,
    /// auto | wgpu | cpu | flex
    #[arg(long, default_value = "auto", value_parser = super::parse_backend)]
    pub backend: BackendChoice,
}

impl AnimateArgs {
    /// The flags given; what is not given stays the config's.
    fn options(&self) -> AnimateOptions {
        let flag = |on: bool, off: bool| (on || off).then_some(on);
        AnimateOptions {
            relative: flag(self.relative, self.absolute),
            adapt_scale: flag(self.adapt_scale, self.no_adapt_scale),
            best_frame: self.best_frame,
        }
    }
}

pub fn run(args: AnimateArgs) -> anyhow::Result<ExitCode> {
    // Read the inputs before the (slower) model load so a bad file fails fast.
    let source = read_image(&args.source)?;
    let driving = read_frames(&args.driving)?;
    let selected = super::open_device(args.backend)?;
    let model = LoadedModel::open(&args.checkpoint, args.config.as_deref(), &selected.device)?;
    super::report_ignored_keys(&model.ignored_config_keys);

    let bar = super::progress_bar(driving.len(), "keypoints");
    let clip = animate_clip(
        &model,
        &source,
        &driving,
        args.options(),
        &selected.device,
        |stage, done, _| {
            if stage == ClipStage::Generating && done == 1 {
                bar.reset();
                bar.set_message("animating");
            }
            bar.set_position(done as u64);
        },
        || false,
    )?;
    bar.finish_and_clear();
    if args.best_frame {
        eprintln!(
            "relative motion from driving frame {} (best match to the source pose)",
            clip.initial_frame
        );
    }

    let bar = super::progress_bar(clip.frames.len(), "writing");
    write_frames(&args.out, &clip.frames, args.fps, |_| bar.inc(1))
        .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_and_clear();
    let (w, h) = model.frame_size();
    println!("wrote {} frames ({w}x{h}) to {}", clip.frames.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
