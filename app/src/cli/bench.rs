//! `prioritycut bench animate | train`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::bench::{bench_animate, bench_train};
use prioritycut_engine::config::FommConfig;
use prioritycut_engine::train::Variant;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Milliseconds per animation frame: keypoints of the driving frame + generator, batch 1.
    Animate(BenchAnimateArgs),
    /// Training steps per second: generator step + discriminator step on one batch.
    Train(BenchTrainArgs),
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// FOMM YAML config (default: FOMM's vox-256).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Frame side, overriding the config's frame_shape (e.g. 64 or 256).
    #[arg(long)]
    pub size: Option<usize>,
    /// Batch size (default: the config's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// fomm | fomm-adv | unet | unet-cutmix | unet-prioritycut
    #[arg(long, default_value = "unet-prioritycut", value_parser = super::train::parse_variant)]
    pub variant: Variant,
    /// Time FOMM's VGG19 perceptual loss with these torchvision weights (default: the pixel
    /// fallback, which is much cheaper).
    #[arg(long)]
    pub vgg19: Option<PathBuf>,
    /// auto | wgpu | cpu | flex
    #[arg(long, default_value = "auto", value_parser = super::parse_backend)]
    pub backend: BackendChoice,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

#[derive(Debug, Args)]
pub struct BenchAnimateArgs {
    /// FOMM YAML config (default: FOMM's vox-256 at 256x256).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// auto | wgpu | cpu | flex
    #[arg(long, default_value = "auto", value_parser = super::parse_backend)]
    pub backend: BackendChoice,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed runs first (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Animate(args) => animate(args),
        BenchCommand::Train(args) => train(args),
    }
}

fn train(args: BenchTrainArgs) -> anyhow::Result<ExitCode> {
    let (mut config, name) = match &args.config {
        Some(path) => (FommConfig::from_yaml_file(path)?, path.display().to_string()),
        None => (FommConfig::vox256(), "vox-256 (built in)".to_string()),
    };
    if let Some(size) = args.size {
        config.frame_shape = [size, size, 3];
        // Same checks as a config file with that frame size.
        config = FommConfig::from_yaml_str(&config.to_yaml()).map_err(|e| anyhow::anyhow!("size {size}: {e}"))?;
    }
    if let Some(batch) = args.batch {
        config.train.batch_size = batch;
    }
    anyhow::ensure!(
        args.runs > 0 && config.train.batch_size > 0,
        "--runs and --batch must be at least 1"
    );
    config.prioritycut.variant = args.variant;
    let selected = super::open_device(args.backend)?;
    let bar = super::progress_bar(args.runs, "timing");
    let report = bench_train(
        &config,
        &selected.device,
        args.vgg19.as_deref(),
        args.warmup,
        args.runs,
        |_| bar.inc(1),
    )?;
    bar.finish_and_clear();
    let runs: Vec<String> = report.runs_ms.iter().map(|ms| format!("{:.0}", ms)).collect();
    println!(
        "bench train | config {name} | variant {} | {}x{} batch {} | backend {} | {:.0} ms/step median of {} after {} warm-up ({:.3} steps/s, {:.2} pairs/s) | perceptual: {} | runs ms: {}",
        report.variant,
        report.width,
        report.height,
        report.batch_size,
        selected.description,
        report.median_ms(),
        report.runs_ms.len(),
        report.warmup,
        report.steps_per_second(),
        report.steps_per_second() * report.batch_size as f64,
        report.perceptual,
        runs.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

fn animate(args: BenchAnimateArgs) -> anyhow::Result<ExitCode> {
    let (config, name) = match &args.config {
        Some(path) => (FommConfig::from_yaml_file(path)?, path.display().to_string()),
        None => (FommConfig::vox256(), "vox-256 (built in)".to_string()),
    };
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let selected = super::open_device(args.backend)?;
    let bar = super::progress_bar(args.runs, "timing");
    let report = bench_animate(&config, &selected.device, args.warmup, args.runs, |_| bar.inc(1));
    bar.finish_and_clear();
    let runs: Vec<String> = report.runs_ms.iter().map(|ms| format!("{ms:.1}")).collect();
    let stages: Vec<String> = report
        .stages
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.1} ms"))
        .collect();
    println!(
        "bench animate | config {name} | {}x{} batch 1 | backend {} | {:.1} ms/frame median of {} after {} warm-up ({:.2} frames/s) | {} | runs ms: {}",
        report.width,
        report.height,
        selected.description,
        report.median_ms(),
        report.runs_ms.len(),
        report.warmup,
        report.frames_per_second(),
        stages.join(", "),
        runs.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}
