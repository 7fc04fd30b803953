//! `prioritycut bench animate`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use prioritycut_engine::backend::BackendChoice;
use prioritycut_engine::bench::bench_animate;
use prioritycut_engine::config::FommConfig;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Milliseconds per animation frame: keypoints of the driving frame + generator, batch 1.
    Animate(BenchAnimateArgs),
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
    let BenchCommand::Animate(args) = command;
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
