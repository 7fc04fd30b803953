//! `prioritycut eval --checkpoint C [--config Y] --dataset DIR [--videos N] [--out DIR]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use prioritycut_engine::burn::tensor::Device;
use prioritycut_engine::eval::{EvalOptions, EvalReport, evaluate};
use prioritycut_engine::evaluators::Evaluators;

use super::{DeviceArgs, ModelArgs};

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A dataset in FOMM's layout: its test/ videos are reconstructed.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Evaluate the first N test videos only.
    #[arg(long)]
    pub videos: Option<usize>,
    /// Salient masks as DIR/<video>/NNNN.png (default: the dataset's own truth/, if any).
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Driving frames per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// The row's name in the table (default: the checkpoint's path).
    #[arg(long)]
    pub name: Option<String>,
    /// Also write table.md, table.csv, frames.csv (every frame's metrics) and worst.png (the
    /// worst-reconstructed frames with their difference heatmaps) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave AKD and MKR empty on a dataset of real videos instead of measuring them over
    /// MTCNN's five face landmarks.
    #[arg(long)]
    pub no_face_keypoints: bool,
    /// Cut each test video around its face track (crop-video.py's square for the clip) before
    /// reconstructing it: for talking-head clips not cropped as VoxCeleb's are.
    #[arg(long)]
    pub face_crop: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut selected = args.device.open()?;
    let report = super::on_device_or_cpu(&mut selected, "evaluating", |device| evaluate_on(&args, device))?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let summary = report.summary();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.model.checkpoint().display().to_string());
    println!("{}", summary.markdown_table(&name));
    println!(
        "{} test videos, {} frames ({} with a salient mask) | {} | {} | backend {}",
        report.videos.len(),
        summary.frames,
        summary.masked_frames,
        report.masks,
        report.evaluators,
        selected.description
    );
    if let Some(worst) = report.videos.iter().max_by(|a, b| a.mean_l1().total_cmp(&b.mean_l1())) {
        println!(
            "worst video: {} (mean L1 {:.4}; worst frame {})",
            worst.name,
            worst.mean_l1(),
            worst.worst_frame().unwrap_or(0)
        );
    }
    if let Some(out) = &args.out {
        report.write(out, &name)?;
        println!(
            "wrote table.md, table.csv, frames.csv and worst.png to {}",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the model and the evaluators onto `device` and evaluates there, with a progress bar.
fn evaluate_on(args: &EvalArgs, device: &Device) -> anyhow::Result<EvalReport> {
    let model = args.model.open(device)?;
    super::report_ignored_keys(&model.ignored_config_keys);
    let options = EvalOptions {
        max_videos: args.videos,
        masks: args.masks.clone(),
        batch_size: args.batch,
        face_crop: match args.face_crop {
            true => Some(super::faces::face_detector(None, device)?),
            false => None,
        },
        ..EvalOptions::default()
    };
    if args.face_crop {
        eprintln!("cropping each test video around its face track");
    }
    // AKD/MKR/AED: the synthetic figures' evaluators when the dataset is synthetic; otherwise
    // faces' landmarks (MTCNN) for AKD/MKR, unless --no-face-keypoints.
    let face_weights = (!args.no_face_keypoints).then(super::bundled_face_weights);
    let evaluators = Evaluators::for_dataset_or_faces(&args.dataset, face_weights.as_deref(), device)?;
    eprintln!("evaluators: {}", evaluators.describe());
    let mut bar = None;
    let report = evaluate(&model, &args.dataset, &options, &evaluators, device, |done, total| {
        bar.get_or_insert_with(|| super::progress_bar(total, "videos"))
            .set_position(done as u64);
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}
