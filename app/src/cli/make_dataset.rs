//! `prioritycut make-dataset --synthetic OUT`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use prioritycut_engine::data::synthetic::{SyntheticConfig, generate};

#[derive(Debug, Args)]
pub struct MakeDatasetArgs {
    /// Write a synthetic dataset of articulated figures (FOMM's layout, ground truth in truth/).
    #[arg(long, value_name = "OUT")]
    pub synthetic: PathBuf,
    /// Frame side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Videos in train/.
    #[arg(long, default_value_t = 24)]
    pub train_videos: usize,
    /// Videos in test/.
    #[arg(long, default_value_t = 6)]
    pub test_videos: usize,
    /// Frames per video.
    #[arg(long, default_value_t = 32)]
    pub frames: usize,
    /// Random seed of the figures and their motion: same seed, same dataset.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: MakeDatasetArgs) -> anyhow::Result<ExitCode> {
    let config = SyntheticConfig {
        size: args.size,
        train_videos: args.train_videos,
        test_videos: args.test_videos,
        frames: args.frames,
        seed: args.seed,
    };
    let bar = super::progress_bar(args.train_videos + args.test_videos, "videos");
    let summary = generate(&args.synthetic, &config, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    println!(
        "wrote {} train and {} test videos of {} frames ({}x{}) to {}",
        summary.train_videos,
        summary.test_videos,
        summary.frames,
        args.size,
        args.size,
        summary.root.display()
    );
    Ok(ExitCode::SUCCESS)
}
