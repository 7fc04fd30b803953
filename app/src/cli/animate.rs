//! `prioritycut animate --checkpoint C --config Y --source IMG --driving VIDEO --out OUT`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use prioritycut_engine::animate::{Animator, find_best_frame, image_to_tensor, tensor_to_image};
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::checkpoint::FommModels;
use prioritycut_engine::data::{read_frames, read_image, resize_to, write_frames};
use prioritycut_engine::train::checkpoint::resolve_checkpoint_and_config;

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
    /// Driving video: a folder of frames, a GIF, or a PNG strip.
    #[arg(long)]
    pub driving: PathBuf,
    /// Output: a .gif file, or a folder for numbered PNG frames.
    #[arg(long)]
    pub out: PathBuf,
    /// Use the driving keypoints as they are instead of relative to the first frame
    /// (default: the config's `use_relative_movement`).
    #[arg(long)]
    pub absolute: bool,
    /// Scale the driving motion by the ratio of source to driving face sizes
    /// (default: the config's `adapt_movement_scale`).
    #[arg(long)]
    pub adapt_scale: bool,
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

pub fn run(args: AnimateArgs) -> anyhow::Result<ExitCode> {
    let (checkpoint, config) = resolve_checkpoint_and_config(&args.checkpoint, args.config.as_deref())?;
    // Read the inputs before the (slower) model load so a bad file fails fast.
    let source = read_image(&args.source)?;
    let driving = read_frames(&args.driving)?;
    let selected = super::open_device(args.backend)?;
    let device = &selected.device;
    let models = FommModels::load(&checkpoint, &config, device)?;

    let [h, w, _] = config.frame_shape;
    let to_tensor = |image: &image::RgbImage| image_to_tensor(&resize_to(image, w as u32, h as u32), device);
    // The config's `animate_params.normalization_params`, unless a flag says otherwise.
    let mut params = config.animate.clone();
    if args.absolute {
        params.use_relative_movement = false;
        params.use_relative_jacobian = false;
    }
    if args.adapt_scale {
        params.adapt_movement_scale = true;
    }
    let mut animator = Animator::new(&models, params, to_tensor(&source));

    let bar = super::progress_bar(driving.len(), "keypoints");
    let keypoints: Vec<_> = driving
        .iter()
        .map(|frame| {
            let kp = animator.keypoints(to_tensor(frame));
            bar.inc(1);
            kp
        })
        .collect();
    bar.finish_and_clear();
    let initial = if args.best_frame {
        find_best_frame(animator.kp_source(), &keypoints).unwrap_or(0)
    } else {
        0
    };
    if args.best_frame {
        eprintln!("relative motion from driving frame {initial} (best match to the source pose)");
    }
    animator.set_initial_keypoints(keypoints[initial].clone());

    let bar = super::progress_bar(keypoints.len(), "animating");
    let frames: Vec<_> = keypoints
        .iter()
        .map(|kp| {
            let frame = tensor_to_image(animator.animate_keypoints(kp).prediction);
            bar.inc(1);
            frame
        })
        .collect();
    bar.finish_and_clear();

    let bar = super::progress_bar(frames.len(), "writing");
    write_frames(&args.out, &frames, args.fps, |_| bar.inc(1))
        .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_and_clear();
    println!("wrote {} frames ({w}x{h}) to {}", frames.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
