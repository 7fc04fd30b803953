//! Command-line interface: `prioritycut` alone opens the window; subcommands
//! `verify-reference | animate | train | make-dataset | eval | ablate | export-model | faces |
//! live | bench | devices` run headless.

mod ablate;
mod animate;
mod bench;
mod devices;
mod eval;
mod export_model;
mod faces;
mod live;
mod make_dataset;
mod train;
mod verify;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;

use anyhow::Context;

use crate::assets::Bundle;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use prioritycut_engine::EngineError;
use prioritycut_engine::animate::AnimateOptions;
use prioritycut_engine::backend::{self, BackendChoice, SelectedDevice};
use prioritycut_engine::family::LoadedModel;
use prioritycut_engine::kernels::precision::{half_precision_on, supports};
use prioritycut_engine::kernels::{Precision, set_precision};
use prioritycut_engine::live::CameraSource;
use prioritycut_engine::worker::{Command as WorkerCommand, Event, Worker};

#[derive(Debug, Parser)]
#[command(
    name = "prioritycut",
    version,
    about = "PriorityCut Studio: animate a photo by the motion of a video (FOMM + PriorityCut)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[cfg(feature = "window")]
    #[command(flatten)]
    pub window: WindowArgs,
}

/// Options of the desktop window (no subcommand).
#[cfg(feature = "window")]
#[derive(Debug, clap::Args)]
pub struct WindowArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The workspace to open: animate | train | live | evaluate.
    #[arg(long)]
    pub workspace: Option<crate::gui::Workspace>,
    /// Save a PNG of the window after --screenshot-after seconds, then close (for scripts).
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Seconds before --screenshot is taken (the window settles, a run gets going).
    #[arg(long, default_value_t = 20.0)]
    pub screenshot_after: f64,
    /// Start as on a fresh machine: ignore remembered files and settings.
    #[arg(long)]
    pub fresh: bool,
    /// Start training this dataset at once (with --train-run; the Train workspace's config).
    #[arg(long, requires = "train_run")]
    pub train_dataset: Option<PathBuf>,
    /// The run folder --train-dataset trains into (a new run).
    #[arg(long)]
    pub train_run: Option<PathBuf>,
    /// The YAML config --train-dataset trains with, FOMM's or TPSMM's layout (default: the Train
    /// workspace's).
    #[arg(long, requires = "train_dataset")]
    pub train_config: Option<PathBuf>,
    /// Train only the AVD network of this trained TPSMM model (a checkpoint or run; with
    /// --train-config its TPSMM config), as `train --mode train-avd --checkpoint` does.
    #[arg(long, requires = "train_dataset")]
    pub train_avd_from: Option<PathBuf>,
    /// Start puppeteering at once with this video standing in for the camera.
    #[arg(long)]
    pub live_video: Option<PathBuf>,
    /// Evaluate the Evaluate workspace's checkpoint (at first start, the bundled model) on this
    /// dataset at once.
    #[arg(long)]
    pub evaluate_dataset: Option<PathBuf>,
    /// Open the Animate workspace on this checkpoint (FOMM's or TPSMM's; with --config where it
    /// needs one) and animate the photo and video at once.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The YAML config of --checkpoint.
    #[arg(long, requires = "checkpoint")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the engine against golden outputs of the official FOMM or TPSMM implementation.
    VerifyReference(verify::VerifyArgs),
    /// Animate a source image by a driving video and write the frames (PNG folder or GIF).
    Animate(animate::AnimateArgs),
    /// Train FOMM / FOMM+ / U-Net / U-Net+CutMix / U-Net+PriorityCut on a dataset.
    Train(train::TrainArgs),
    /// Write a dataset (a synthetic one of articulated figures).
    MakeDataset(make_dataset::MakeDatasetArgs),
    /// Video reconstruction metrics of a checkpoint on a dataset's test videos (the paper's table row).
    Eval(eval::EvalArgs),
    /// The paper's ablation: train the five models alike on a dataset, evaluate each, write the
    /// table and a side-by-side figure.
    Ablate(ablate::AblateArgs),
    /// Write what animation needs of a checkpoint (keypoint detector and generator; TPSMM's
    /// without the background predictor) with its config.
    ExportModel(export_model::ExportModelArgs),
    /// Find faces (MTCNN: boxes, scores, five landmarks) in a photo or every frame of a video.
    Faces(faces::FacesArgs),
    /// Puppeteer a photo with a camera (or a video standing in for one) without a window;
    /// `--stream` serves the frames as MJPEG over HTTP (OBS, VLC, ffmpeg).
    Live(live::LiveArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// List the GPU adapters wgpu finds and say which device `--backend auto` chooses.
    Devices(devices::DevicesArgs),
}

/// Parses `args` and runs the command.
pub fn run<I, T>(args: I) -> anyhow::Result<ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    // A GPU that fails under a command (out of memory, a lost device) ends it with one line
    // saying what to do, not CubeCL's report of dozens (`animate` goes on on the CPU itself).
    let advice = match &cli.command {
        Some(Command::Train(_)) | Some(Command::Ablate(_)) => {
            "the run keeps its last checkpoint: continue it with --resume on --backend flex, or with a smaller --batch"
        }
        Some(Command::Bench(bench::BenchCommand::Train(_))) => "time a smaller --batch or --size, or --backend flex",
        _ => "run it again with --backend flex",
    };
    match backend::catch_any_gpu_failure(|| dispatch(cli)) {
        // Raised on a thread of the command's own (training's), the failure comes back an error.
        Ok(outcome) => outcome.map_err(|error| match error.downcast_ref::<EngineError>() {
            Some(EngineError::Gpu(failure)) => anyhow::anyhow!("{failure}: {advice}"),
            _ => error,
        }),
        Err(failure) => anyhow::bail!("{failure}: {advice}"),
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(not(feature = "window"))]
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            anyhow::bail!("this build has no window (built without the `window` feature): give a subcommand")
        }
        #[cfg(feature = "window")]
        None => {
            let w = cli.window;
            w.device.apply_precision()?;
            let mut options = crate::gui::GuiOptions::new(w.device.choice);
            options.workspace = w.workspace;
            options.screenshot = w.screenshot.map(|path| (path, w.screenshot_after));
            options.fresh = w.fresh;
            options.train = w.train_dataset.zip(w.train_run);
            options.train_config = w.train_config;
            options.train_avd_from = w.train_avd_from;
            options.live_video = w.live_video;
            options.evaluate_dataset = w.evaluate_dataset;
            options.model = w.checkpoint.map(|checkpoint| (checkpoint, w.config));
            crate::gui::run(options)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::VerifyReference(args)) => verify::run(args),
        Some(Command::Animate(args)) => animate::run(args),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::MakeDataset(args)) => make_dataset::run(args),
        Some(Command::ExportModel(args)) => export_model::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Ablate(args)) => ablate::run(args),
        Some(Command::Faces(args)) => faces::run(args),
        Some(Command::Live(args)) => live::run(args),
        Some(Command::Bench(command)) => bench::run(command),
        Some(Command::Devices(args)) => devices::run(args),
    }
}

/// The model a subcommand loads: flattened into each that loads one.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// An official FOMM or TPSMM checkpoint (.pth.tar, with --config), our own (.bpk), a
    /// training run folder (its latest checkpoint) or one of its checkpoint folders (default: the
    /// bundled model).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The YAML config the checkpoint was trained with, FOMM's or TPSMM's layout (the family is
    /// told by its keys; a .bpk or a run folder carries its own).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ModelArgs {
    /// The checkpoint given, else the bundled model.
    pub fn checkpoint(&self) -> PathBuf {
        self.checkpoint.clone().unwrap_or_else(bundled_model)
    }

    pub fn open(&self, device: &prioritycut_engine::burn::tensor::Device) -> anyhow::Result<LoadedModel> {
        Ok(LoadedModel::open(&self.checkpoint(), self.config.as_deref(), device)?)
    }
}

/// Where the engine computes: flattened into every subcommand that computes.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// auto | wgpu | wgpu:N | cpu | flex: the device the engine computes on (auto: wgpu on a
    /// hardware GPU, else flex on the CPU; wgpu:N: adapter N of `prioritycut devices`).
    #[arg(long = "backend", value_name = "BACKEND", default_value = "auto", value_parser = parse_backend)]
    pub choice: BackendChoice,
    /// f32 | bf16 | f16: what animation computes in. bf16, on the CPU (AVX512-BF16: Zen 4 and
    /// later, Intel since Cooper Lake): residual blocks' 3×3 products; f16, on a GPU whose
    /// adapter has SHADER_F16 (`prioritycut devices`): the model's weights and feature maps.
    /// Both are faster and approximate: sums stay f32, but frames move by up to a few 255ths
    /// (README, "Precision"). Training is f32 whatever is chosen.
    #[arg(long, value_name = "PRECISION", default_value = "f32")]
    pub precision: Precision,
}

impl DeviceArgs {
    /// Sets the precision, opens the device and says which one it is, on stderr so stdout
    /// stays for results.
    pub fn open(&self) -> anyhow::Result<SelectedDevice> {
        self.apply_precision()?;
        let selected = open_device(self.choice)?;
        anyhow::ensure!(
            self.precision != Precision::F16 || half_precision_on(&selected.device),
            "--precision f16 needs a GPU whose adapter computes in f16 (SHADER_F16: `prioritycut devices` says \"f16 yes\"), and the engine runs on {}: use f32{}",
            selected.description,
            if supports(Precision::Bf16) { " or bf16" } else { "" }
        );
        Ok(selected)
    }

    /// [`DeviceArgs::open`] for a command that trains: its arithmetic is f32 only.
    pub fn open_for_training(&self) -> anyhow::Result<SelectedDevice> {
        anyhow::ensure!(
            self.precision == Precision::F32,
            "--precision {} is for animating: training runs in f32",
            self.precision
        );
        open_device(self.choice)
    }

    /// Sets the process's precision (refused where the CPU lacks its instructions) and says a
    /// reduced one on stderr.
    pub fn apply_precision(&self) -> anyhow::Result<()> {
        set_precision(self.precision)?;
        match self.precision {
            Precision::F32 => {}
            Precision::Bf16 => eprintln!(
                "precision: bf16 products in residual blocks' 3×3 convolutions on the CPU, sums in f32 (approximate; on a GPU, f32)"
            ),
            Precision::F16 => eprintln!(
                "precision: a FOMM model's weights and feature maps in f16 on a GPU with SHADER_F16, sums in f32 (approximate; TPSMM's and the CPU's in f32)"
            ),
        }
        Ok(())
    }
}

/// Runs `work` on `selected`'s device; when the GPU itself fails under it (out of its memory, the
/// device lost), says so in one note ("… {doing} on the CPU (flex) instead") and runs it again
/// there, `selected` then naming the CPU.
fn on_device_or_cpu<T>(
    selected: &mut SelectedDevice,
    doing: &str,
    mut work: impl FnMut(&prioritycut_engine::burn::tensor::Device) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    match backend::catch_gpu_failure(&selected.device, || work(&selected.device)) {
        Ok(outcome) => outcome,
        Err(failure) => {
            eprintln!("note: {failure}: {doing} on the CPU (flex) instead");
            *selected = backend::select(BackendChoice::Flex)?;
            work(&selected.device)
        }
    }
}

/// `--backend` value parser.
fn parse_backend(text: &str) -> Result<BackendChoice, String> {
    text.parse().map_err(|e: EngineError| e.to_string())
}

/// Opens the device and says which one it is, on stderr so stdout stays for results.
fn open_device(choice: BackendChoice) -> anyhow::Result<SelectedDevice> {
    let selected = backend::select(choice)?;
    eprintln!("backend: {selected}");
    Ok(selected)
}

/// The bundled model, what commands animate with when no `--checkpoint` is given.
fn bundled_model() -> PathBuf {
    Bundle::bundled().model_dir
}

/// The bundled face detector's weights (MTCNN, from facenet-pytorch).
fn bundled_face_weights() -> PathBuf {
    Bundle::bundled().face_weights
}

/// How a headless live run frames the photo and the camera, and where it streams.
#[derive(Debug, Clone, Default)]
struct LiveFraming {
    /// The photo: its face square pasted back (`auto`), the square alone (`crop`), or whole.
    face: prioritycut_engine::faces::FaceMode,
    /// The camera's crop square follows the face.
    follow_face: bool,
    /// `PORT` or `HOST:PORT` to serve MJPEG at.
    stream: Option<String>,
    /// Move the photo by the model's AVD network (TPSMM's `avd` mode).
    avd: bool,
}

/// A worker puppeteering `source` with `camera` as the window's Live does; the backend is said
/// on stderr. A stream is bound first, so that a port in use is reported before the model
/// loads; its URL is returned.
fn start_live(
    backend: BackendChoice,
    checkpoint: PathBuf,
    config: Option<PathBuf>,
    source: PathBuf,
    camera: CameraSource,
    framing: LiveFraming,
) -> anyhow::Result<(Worker, Receiver<Event>, Option<String>)> {
    let (worker, events) = Worker::spawn(backend, || {})?;
    eprintln!("backend: {}", worker.device());
    let mut url = None;
    if let Some(address) = &framing.stream {
        worker.send(WorkerCommand::SetLiveStream(Some(address.clone())));
        // Wait for the answer before loading anything: a port in use is said at once.
        loop {
            match events.recv_timeout(std::time::Duration::from_secs(10)) {
                Ok(Event::LiveStream { error: Some(error), .. } | Event::Error { message: error, .. }) => {
                    anyhow::bail!(error)
                }
                Ok(Event::LiveStream { url: served, .. }) => {
                    url = served;
                    break;
                }
                Ok(_) => {}
                Err(_) => anyhow::bail!("the engine did not answer the stream request"),
            }
        }
    }
    if framing.face != prioritycut_engine::faces::FaceMode::Off || framing.follow_face {
        worker.send(WorkerCommand::LoadFaceDetector(bundled_face_weights()));
    }
    worker.send(WorkerCommand::LoadModel { checkpoint, config });
    worker.send(WorkerCommand::LoadSource(source));
    worker.send(WorkerCommand::SetLiveView {
        mirror: false,
        crop: prioritycut_engine::live::CropBox::default(),
        follow_face: framing.follow_face,
    });
    worker.send(WorkerCommand::StartLive {
        camera,
        options: AnimateOptions {
            face: framing.face,
            disentangled: framing.avd,
            ..AnimateOptions::default()
        },
    });
    Ok((worker, events, url))
}

/// A flag raised by the first Ctrl-C (saying `first`), for work that stops cleanly between steps;
/// a second Ctrl-C says `second` and exits at once.
fn stop_on_ctrl_c(first: &'static str, second: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\n{second}");
            std::process::exit(130);
        }
        eprintln!("\n{first}");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// Says which keys of a config file the engine left unread (a typo, or an option not built).
fn report_ignored_keys(keys: &[String]) {
    if !keys.is_empty() {
        let verb = if keys.len() == 1 { "is" } else { "are" };
        eprintln!(
            "note: {} in the config {verb} not used by this engine (a typo, or an option it does not implement)",
            keys.join(", ")
        );
    }
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag of every subcommand says what it is for (`--help` is the CLI's manual).
    #[test]
    fn every_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "prioritycut", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }

    /// `--backend` is one argument group, the same everywhere it is taken.
    #[test]
    fn the_backend_flag_reads_the_same_everywhere() {
        let command = Cli::command();
        let helps: std::collections::BTreeSet<String> = command
            .get_subcommands()
            .flat_map(|sub| std::iter::once(sub).chain(sub.get_subcommands()))
            .filter(|sub| sub.get_name() != "faces")
            .flat_map(|sub| sub.get_arguments())
            .filter(|arg| arg.get_long() == Some("backend"))
            .map(|arg| arg.get_help().map(ToString::to_string).unwrap_or_default())
            .collect();
        assert_eq!(helps.len(), 1, "{helps:#?}");
    }
}
