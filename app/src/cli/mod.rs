//! Command-line interface: `prioritycut verify-reference | animate | train | make-dataset | bench`.

mod animate;
mod bench;
mod make_dataset;
mod train;
mod verify;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use prioritycut_engine::backend::{self, BackendChoice, SelectedDevice};

#[derive(Debug, Parser)]
#[command(
    name = "prioritycut",
    version,
    about = "PriorityCut Studio: animate a photo by the motion of a video (FOMM + PriorityCut)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the engine against golden outputs of the official FOMM implementation.
    VerifyReference(verify::VerifyArgs),
    /// Animate a source image by a driving video and write the frames (PNG folder or GIF).
    Animate(animate::AnimateArgs),
    /// Train FOMM / FOMM+ / U-Net / U-Net+CutMix / U-Net+PriorityCut on a dataset.
    Train(train::TrainArgs),
    /// Write a dataset (a synthetic one of articulated figures).
    MakeDataset(make_dataset::MakeDatasetArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Parses `args` and runs the command.
pub fn run<I, T>(args: I) -> anyhow::Result<ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::VerifyReference(args) => verify::run(args),
        Command::Animate(args) => animate::run(args),
        Command::Train(args) => train::run(args),
        Command::MakeDataset(args) => make_dataset::run(args),
        Command::Bench(command) => bench::run(command),
    }
}

/// `--backend` value parser.
fn parse_backend(text: &str) -> Result<BackendChoice, String> {
    text.parse().map_err(|e: prioritycut_engine::EngineError| e.to_string())
}

/// Opens the device and says which one it is, on stderr so stdout stays for results.
fn open_device(choice: BackendChoice) -> anyhow::Result<SelectedDevice> {
    let selected = backend::select(choice)?;
    eprintln!("backend: {selected}");
    Ok(selected)
}

fn progress_bar(len: usize, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}
