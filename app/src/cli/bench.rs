//! `prioritycut bench animate | train | live`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use prioritycut_engine::backend::{BackendKind, Launches, SelectedDevice};
use prioritycut_engine::bench::{
    BenchPerceptual, BusyCores, CpuMachine, CpuPeak, ResidentMemory, RunPhases, bench_animate, bench_motion_model,
    bench_train, describe_busy, seeded_tpsmm, write_seeded_model, write_seeded_tpsmm,
};
use prioritycut_engine::config::tpsmm::{TpsmmConfigFile, is_tpsmm_file};
use prioritycut_engine::config::{FommConfig, Variant};
use prioritycut_engine::faces::FaceMode;
use prioritycut_engine::kernels::cpu::unsafe_simd::peak::MeasuredPeak;
use prioritycut_engine::kernels::gpu::{self, KernelChoice};
use prioritycut_engine::live::CameraSource;
use prioritycut_engine::train::TrainingConfig;
use prioritycut_engine::worker::{Command, Event};

use crate::assets::Bundle;

use super::DeviceArgs;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Milliseconds per animation frame: keypoints of the driving frame + generator, batch 1.
    Animate(BenchAnimateArgs),
    /// Training steps per second: generator step + discriminator step on one batch.
    Train(BenchTrainArgs),
    /// Live puppeteering as the window runs it: frames per second and latency, with a video
    /// played at a webcam's rate standing in for the camera (default: the bundled sample).
    Live(BenchLiveArgs),
}

#[derive(Debug, Args)]
pub struct BenchLiveArgs {
    /// A model: .pth.tar (with --config), .bpk, a run folder (default: a model of --config
    /// with seeded random weights: speed does not depend on their values).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// FOMM or TPSMM YAML config (default: FOMM's vox-256 at 256x256).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The photo to animate (default: the bundled sample photo).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// The video standing in for the camera (default: the bundled driving clip).
    #[arg(long)]
    pub camera_video: Option<PathBuf>,
    /// The rate the stand-in camera delivers frames at.
    #[arg(long, default_value_t = 30.0)]
    pub camera_fps: f64,
    /// How long to measure, after the first frames.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// The photo's framing, as `live --face` (default off: the model's own square, so that
    /// the figure is the model's); auto adds finding the photo's face once and pasting the
    /// animated square back into the photo at every frame.
    #[arg(long, default_value = "off")]
    pub face: FaceMode,
    /// Serve the frames as MJPEG as `live --stream` does, with a client of the bench's own
    /// reading them, so that every frame's JPEG is part of the figure.
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// FOMM's or TPSMM's YAML config (default: FOMM's vox-256). A TPSMM config is timed at the
    /// first epoch of its steady state (background motion on, dropout over).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Frame side, overriding the config's frame_shape (e.g. 64 or 256).
    #[arg(long)]
    pub size: Option<usize>,
    /// Batch size (default: the config's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// fomm | fomm-adv | unet | unet-cutmix | unet-prioritycut (fomm with a TPSMM config:
    /// TPSMM as published)
    #[arg(long, default_value = "unet-prioritycut", value_parser = super::train::parse_variant)]
    pub variant: Variant,
    /// Time FOMM's VGG19 perceptual loss with these torchvision weights (default: VGG19 with
    /// seeded random weights, which times the same).
    #[arg(long, conflicts_with = "pixel_loss")]
    pub vgg19: Option<PathBuf>,
    /// Time the pixel-pyramid fallback (training without VGG19 weights) instead of VGG19.
    #[arg(long)]
    pub pixel_loss: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Untimed steps first (kernel compilation, autotuning, allocator warm-up). Two: at vox-256
    /// the second step still faults in much of the step's ~4 GB of memory for the first time
    /// (measured on a 2-core VM: 10–12 s against a steady 7.2–7.6 s for TPSMM's).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

#[derive(Debug, Args)]
pub struct BenchAnimateArgs {
    /// FOMM or TPSMM YAML config (default: FOMM's vox-256 at 256x256). A TPSMM config (its
    /// `vox-256.yaml`, say) times TPSMM through the model-family interface: keypoints, the
    /// source's encoding and the generation.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Untimed runs first (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Recompute the source (keypoints, encoding) every frame, as the official
    /// `make_animation` does, instead of once per photo.
    #[arg(long)]
    pub cold: bool,
    /// Run the networks as trained (eval-mode batch norms) instead of their inference form
    /// (folded batch norms, Winograd on the CPU): for comparison.
    #[arg(long)]
    pub training_form: bool,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

/// Whose GPU kernels run, for timing ours against burn's on one card.
#[derive(Debug, Args)]
pub struct KernelArgs {
    /// On a GPU: `auto` ours except on a software adapter (burn's there), `ours` everywhere
    /// (3×3 convolutions by Winograd's F(4×4, 3×3), those of few outputs directly, others by
    /// unfold + matmul), `unfold` ours with the 3×3 convolutions by unfold + matmul too, `burn`
    /// burn's own (its direct convolution).
    #[arg(long, value_enum, default_value_t = GpuKernels::Auto)]
    pub gpu_kernels: GpuKernels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpuKernels {
    Auto,
    Ours,
    Unfold,
    Burn,
}

impl KernelArgs {
    /// Applies the choice to the process.
    fn apply(&self) {
        gpu::choose(match self.gpu_kernels {
            GpuKernels::Auto => KernelChoice::Auto,
            GpuKernels::Ours => KernelChoice::Ours,
            GpuKernels::Unfold => KernelChoice::Unfold,
            GpuKernels::Burn => KernelChoice::Burn,
        });
    }

    /// " | GPU kernels: …" naming which kernels run on `selected`, once applied; nothing off a GPU.
    fn describe(&self, selected: &SelectedDevice) -> &'static str {
        if selected.kind != BackendKind::Wgpu {
            ""
        } else if self.gpu_kernels == GpuKernels::Burn {
            " | GPU kernels: burn's own (--gpu-kernels burn)"
        } else if !gpu::serves(&selected.device) {
            " | GPU kernels: burn's own (a software adapter; --gpu-kernels ours to run ours)"
        } else if !gpu::winograd() {
            " | GPU kernels: ours where they apply (convolutions: few outputs direct, others unfold + matmul, --gpu-kernels unfold)"
        } else {
            " | GPU kernels: ours where they apply (3×3 convolutions: Winograd F(4×4, 3×3); few outputs: direct; others: unfold + matmul)"
        }
    }
}

/// ", N launches" where the GPU's launches were counted.
fn launch_count(launches: Option<&Launches>) -> String {
    launches.map_or_else(String::new, |l| format!(", {} launches", l.total))
}

/// The config file given, or FOMM's vox-256; and how to name it.
fn config_or_vox256(path: Option<&Path>) -> anyhow::Result<(FommConfig, String)> {
    if let Some(path) = path
        && is_tpsmm_file(path)?
    {
        anyhow::bail!("{} is a TPSMM config, which this bench does not take", path.display());
    }
    Ok(match path {
        Some(path) => (FommConfig::from_yaml_file(path)?, path.display().to_string()),
        None => (FommConfig::vox256(), "vox-256 (built in)".to_string()),
    })
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Animate(args) => animate(args),
        BenchCommand::Train(args) => train(args),
        BenchCommand::Live(args) => live(args),
    }
}

/// A scratch folder, removed however the bench ends.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn live(args: BenchLiveArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::bundled();
    let source = args.source.unwrap_or(bundle.source);
    let clip = args.camera_video.unwrap_or(bundle.driving);
    anyhow::ensure!(
        args.camera_fps > 0.0 && args.seconds > 0.0,
        "--camera-fps and --seconds must be positive"
    );
    // Without a checkpoint, the config's networks with seeded weights, loaded as a user's are.
    let seeded_dir = RemovedOnDrop(std::env::temp_dir().join(format!("prioritycut-bench-live-{}", std::process::id())));
    let (checkpoint, config, model_name) = match args.checkpoint {
        Some(checkpoint) => {
            let name = checkpoint.display().to_string();
            (checkpoint, args.config, name)
        }
        None => match args.config.as_deref() {
            Some(path) if is_tpsmm_file(path)? => {
                write_seeded_tpsmm(&TpsmmConfigFile::read(path)?.config, &seeded_dir.0)?;
                let name = format!("TPSMM {}, seeded random weights", path.display());
                (seeded_dir.0.clone(), None, name)
            }
            _ => {
                let (config, name) = config_or_vox256(args.config.as_deref())?;
                write_seeded_model(&config, &seeded_dir.0)?;
                (seeded_dir.0.clone(), None, format!("{name}, seeded random weights"))
            }
        },
    };

    args.device.apply_precision()?;
    args.kernels.apply();
    let framing = super::LiveFraming {
        face: args.face,
        stream: args.stream.then(|| "0".to_string()),
        ..Default::default()
    };
    let (worker, events, url) = super::start_live(
        args.device.choice,
        checkpoint,
        config,
        source,
        CameraSource::Clip {
            path: clip,
            fps: args.camera_fps,
        },
        framing,
    )?;
    let viewer = url.as_deref().map(StreamViewer::start).transpose()?;
    let mut size = [0, 0];
    let warmup = 3;
    let mut seen = 0usize;
    let mut started: Option<(Instant, u64, BusyCores)> = None;
    let mut latencies = Vec::new();
    let mut dropped_at_end: u64;
    let bar = super::progress_bar((args.seconds * 10.0) as usize, "live");
    let deadline_for_first = Instant::now() + Duration::from_secs(120);
    loop {
        let event = match events.recv_timeout(Duration::from_secs(5)) {
            Ok(event) => event,
            Err(_) if started.is_none() && Instant::now() < deadline_for_first => continue,
            Err(_) => anyhow::bail!("the live loop stopped sending frames"),
        };
        match event {
            Event::ModelLoaded { frame_size, .. } => size = frame_size,
            Event::Error { job, message } => anyhow::bail!("{}: {message}", job.describe()),
            Event::LiveStopped { reason } => anyhow::bail!("live stopped: {}", reason.unwrap_or_default()),
            // Timing the CPU under the GPU's name would mislead: stop instead.
            Event::DeviceFallback { reason } => anyhow::bail!("{reason}: time it with --backend flex"),
            Event::Live(frame) => {
                seen += 1;
                if seen == warmup {
                    started = Some((Instant::now(), frame.dropped, BusyCores::start()));
                } else if let Some((at, ..)) = started {
                    latencies.push(frame.latency.as_secs_f64() * 1000.0);
                    dropped_at_end = frame.dropped;
                    let elapsed = at.elapsed().as_secs_f64();
                    bar.set_position(((elapsed * 10.0) as u64).min(bar.length().unwrap_or(0)));
                    if elapsed >= args.seconds {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    bar.finish_and_clear();
    // Read while the live loop still holds the model and its inference form.
    let memory = describe_memory(ResidentMemory::read());
    let cores_busy = describe_busy(started.and_then(|(_, _, busy)| busy.busy()));
    worker.send(Command::StopLive);
    let streamed = match viewer {
        Some(viewer) => format!(
            " | streamed as MJPEG, {} KB read by the bench's client",
            viewer.stop() / 1000
        ),
        None => String::new(),
    };
    let Some((at, dropped_at_start, _)) = started else {
        anyhow::bail!("no live frames came")
    };
    let elapsed = at.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let median = latencies.get(latencies.len() / 2).copied().unwrap_or(f64::NAN);
    let dropped = dropped_at_end.saturating_sub(dropped_at_start);
    let cpu = CpuMachine::detect().describe();
    let precision = prioritycut_engine::kernels::precision();
    println!(
        "bench live | model {model_name} | {}x{} | face {}{streamed} | backend {}{} | precision {precision} | CPU {cpu} | {:.2} frames/s over {:.1} s ({} frames) | latency median {:.0} ms | camera {:.0} fps, {} camera frames dropped | {memory} | {cores_busy} while live",
        size[1],
        size[0],
        args.face,
        worker.device(),
        args.kernels.describe(&worker.device()),
        latencies.len() as f64 / elapsed,
        elapsed,
        latencies.len(),
        median,
        args.camera_fps,
        dropped
    );
    Ok(ExitCode::SUCCESS)
}

/// A client of the live stream, as OBS would be one: it reads every byte served until stopped.
struct StreamViewer {
    stop: Arc<AtomicBool>,
    reading: std::thread::JoinHandle<u64>,
}

impl StreamViewer {
    fn start(url: &str) -> anyhow::Result<Self> {
        use std::io::{Read, Write};
        let address = url.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = std::net::TcpStream::connect(address)
            .map_err(|e| anyhow::anyhow!("cannot connect to the live stream at {url} ({e})"))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        write!(stream, "GET / HTTP/1.1\r\nHost: {address}\r\n\r\n")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let reading = std::thread::spawn(move || {
            let (mut buffer, mut read) = (vec![0u8; 1 << 16], 0u64);
            while !stopped.load(Ordering::Relaxed) {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => read += n as u64,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            read
        });
        Ok(Self { stop, reading })
    }

    /// Stops reading; the bytes read.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.reading.join().unwrap_or(0)
    }
}

/// The training config `bench train` times: FOMM's or TPSMM's file, or FOMM's vox-256, at
/// `--size` (checked as a file with that frame size would be); and how to name it.
fn training_config(path: Option<&Path>, size: Option<usize>) -> anyhow::Result<(TrainingConfig, String)> {
    let (config, name) = match path {
        Some(path) => {
            let (config, _) = TrainingConfig::read_yaml_file(path)?;
            let name = match config.family() {
                "FOMM" => path.display().to_string(),
                family => format!("{family} {}", path.display()),
            };
            (config, name)
        }
        None => (FommConfig::vox256().into(), "vox-256 (built in)".to_string()),
    };
    match size {
        Some(size) => Ok((
            config.resized(size).map_err(|e| anyhow::anyhow!("size {size}: {e}"))?,
            name,
        )),
        None => Ok((config, name)),
    }
}

fn train(args: BenchTrainArgs) -> anyhow::Result<ExitCode> {
    let (mut config, name) = training_config(args.config.as_deref(), args.size)?;
    anyhow::ensure!(
        args.runs > 0 && args.batch != Some(0),
        "--runs and --batch must be at least 1"
    );
    config.set_batches(args.batch, None);
    config.set_variant(args.variant);
    args.kernels.apply();
    let selected = args.device.open_for_training()?;
    let kernels = args.kernels.describe(&selected);
    let bar = super::progress_bar(args.runs, "timing");
    let perceptual = match (args.vgg19, args.pixel_loss) {
        (Some(path), _) => BenchPerceptual::Vgg19File(path),
        (None, true) => BenchPerceptual::PixelPyramid,
        (None, false) => BenchPerceptual::Vgg19Seeded,
    };
    let report = bench_train(&config, &selected.device, &perceptual, args.warmup, args.runs, |_| {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    let runs: Vec<String> = report.runs_ms.iter().map(|ms| format!("{:.0}", ms)).collect();
    let cpu = CpuMachine::detect().describe();
    let epoch = match report.family {
        "TPSMM" => format!(" (epoch {}: background motion on, no dropout)", report.epoch),
        _ => String::new(),
    };
    println!(
        "bench train | config {name} | variant {}{epoch} | {}x{} batch {} | backend {}{kernels} | CPU {cpu} | {:.0} ms/step median of {} after {} warm-up ({:.3} steps/s, {:.2} pairs/s) | perceptual: {}{} | {} over the timed steps | runs ms: {}{}",
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
        match &report.launches {
            Some(launches) => format!(" | {} kernel launches/step", launches.total),
            None => String::new(),
        },
        describe_busy(report.cores_busy),
        runs.join(" "),
        if report.stages_ms.is_empty() {
            String::new()
        } else {
            format!(
                " | one more step by stage, each waited for: {}",
                report.describe_stages()
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn animate(args: BenchAnimateArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.config
        && is_tpsmm_file(path)?
    {
        return animate_tpsmm(&args, path);
    }
    let (config, name) = config_or_vox256(args.config.as_deref())?;
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    args.kernels.apply();
    let selected = args.device.open()?;
    let kernels = args.kernels.describe(&selected);
    let bar = super::progress_bar(args.runs, "timing");
    let report = bench_animate(
        &config,
        &selected.device,
        args.warmup,
        args.runs,
        args.cold,
        args.training_form,
        |_| bar.inc(1),
    );
    bar.finish_and_clear();
    // The CPU's peak, measured right after the timed frames (the machine's speed drifts), where
    // the counts of executed arithmetic hold: the CPU's inference kernels.
    let on_cpu = selected.description.starts_with("flex") || selected.description.starts_with("cpu");
    let peak = (on_cpu && report.inference_form)
        .then(prioritycut_engine::kernels::cpu::unsafe_simd::peak::measure)
        .flatten();
    let runs: Vec<String> = report.runs_ms.iter().map(|ms| format!("{ms:.1}")).collect();
    let stages: Vec<String> = report
        .stages
        .iter()
        .map(|s| {
            let executed = match peak {
                Some(peak) => format!(
                    ", executed {:.2} GFLOP at {:.0}% of the peak",
                    s.work.executed_gflop,
                    100.0 * s.executed_gflops_per_second() / peak.f32_gflops
                ),
                None => String::new(),
            };
            format!(
                "{} {:.1} ms ({:.2} GFLOP, {:.1} GFLOP/s{executed}, {:.1} MB, {:.2} GB/s{})",
                s.name,
                s.ms,
                s.work.gflop,
                s.gflops_per_second(),
                s.work.megabytes,
                s.gigabytes_per_second(),
                launch_count(s.launches.as_ref())
            )
        })
        .collect();
    let launches = match &report.launches {
        Some(launches) => format!(
            " | {} kernel launches/frame, most launched: {}",
            launches.total,
            launches.top(6)
        ),
        None => String::new(),
    };
    let read_back = match &report.read_back {
        Some(check) if check.passed() => format!(
            " | read-back check: PASS (frames read without waiting equal the synced ones; the two driving frames' outputs differ by {:.1e})",
            check.between_drivings
        ),
        Some(check) if check.unsynced_vs_synced != 0.0 => format!(
            " | read-back check: FAILED (a frame read without waiting differs from the synced one by {:.3e}: reads can return stale frames)",
            check.unsynced_vs_synced
        ),
        Some(_) => " | read-back check: inconclusive (the two driving frames gave the same output)".to_string(),
        None => String::new(),
    };
    // The share of the machine: only meaningful where the CPU computes.
    let nominal = CpuPeak::estimate();
    let machine = match peak {
        Some(peak) => {
            let executed = report.work_per_frame().executed_gflop;
            let per_second = executed * report.frames_per_second();
            format!(
                "executed {executed:.1} GFLOP/frame ({per_second:.1} GFLOP/s in f32 multiply-add slots: Winograd's products, bf16's dot products at 2 a slot) = {:.1}% of {}",
                100.0 * per_second / peak.f32_gflops,
                describe_peak(&peak, &nominal)
            )
        }
        None if on_cpu => {
            let share = 100.0 * report.gflops_per_second() / nominal.gflops();
            let beyond = if share > 100.0 {
                ": beyond 100% the kernels do less arithmetic than counted"
            } else {
                ""
            };
            format!("{share:.1}% of {}{beyond}", nominal.describe())
        }
        None => "GPU peak not estimated".to_string(),
    };
    let phases = RunPhases::mean(&report.phases_ms);
    let stalls = match report.stalled_runs() {
        0 => String::new(),
        n => format!(", {n} of {} runs over twice the median", report.runs_ms.len()),
    };
    let timing = format!(
        "mean {:.1} ms/frame ({:.2} frames/s){stalls}; a run's mean: recording {:.1} ms, waiting for the device {:.1} ms, reading back {:.1} ms",
        report.mean_ms(),
        1000.0 / report.mean_ms(),
        phases.record,
        phases.wait,
        phases.read
    );
    let cpu = CpuMachine::detect().describe();
    let memory = describe_memory(report.memory);
    let busy = describe_busy(report.cores_busy);
    let precision = prioritycut_engine::kernels::precision();
    println!(
        "bench animate | config {name} | {}x{} batch 1 | {} | {} | backend {}{kernels} | precision {precision} | CPU {cpu} | {:.1} ms/frame median of {} after {} warm-up ({:.2} frames/s) | {timing} | {:.1} GFLOP/frame{}, {:.1} GFLOP/s effective, {machine} | {:.1} MB/frame logical (convolutions' inputs, weights, outputs once) | {memory} | {busy} over the timed frames | {}{launches}{read_back} | runs ms: {}",
        report.width,
        report.height,
        if report.cold {
            "source recomputed every frame (--cold)"
        } else {
            "source computed once"
        },
        if report.inference_form {
            "inference form (folded batch norms, Winograd 3x3)"
        } else {
            "training form (eval mode)"
        },
        selected.description,
        report.median_ms(),
        report.runs_ms.len(),
        report.warmup,
        report.frames_per_second(),
        report.gflop_per_frame(),
        if report.inference_form {
            " counted as direct convolutions"
        } else {
            ""
        },
        report.gflops_per_second(),
        report.work_per_frame().megabytes,
        stages.join(", "),
        runs.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

/// A measured peak, beside the estimate from the nominal clock it replaces.
fn describe_peak(peak: &MeasuredPeak, nominal: &CpuPeak) -> String {
    let bf16 = peak
        .bf16_gflops
        .map_or_else(String::new, |bf16| format!(", bf16 dot products {bf16:.0}"));
    format!(
        "the FP32 peak measured right after: {:.0} GFLOP/s ({}-lane FMA chains on {} threads{bf16}; {:.0} estimated at the cpuinfo clock of {:.2} GHz)",
        peak.f32_gflops,
        peak.f32_lanes,
        peak.threads,
        nominal.gflops(),
        nominal.ghz
    )
}

/// `bench animate` of a TPSMM config: seeded weights, the family's interface.
fn animate_tpsmm(args: &BenchAnimateArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let config = TpsmmConfigFile::read(path)?.config;
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    args.kernels.apply();
    let selected = args.device.open()?;
    let model = seeded_tpsmm(&config, &selected.device, args.training_form);
    let bar = super::progress_bar(args.runs, "timing");
    let report = bench_motion_model(
        &model,
        config.frame_shape,
        &selected.device,
        args.warmup,
        args.runs,
        args.cold,
        |_| bar.inc(1),
    );
    bar.finish_and_clear();
    let [h, w, _] = config.frame_shape;
    let median = report.median_ms();
    let runs: Vec<String> = report.runs_ms.iter().map(|ms| format!("{ms:.1}")).collect();
    let precision = prioritycut_engine::kernels::precision();
    println!(
        "bench animate | TPSMM config {} ({} TPS transformations) | {w}x{h} batch 1 | {} | {} | backend {} | precision {precision} | CPU {} | {median:.1} ms/frame median of {} after {} warm-up ({:.2} frames/s) | stages: driving keypoints {:.1} ms, source encoding {:.1} ms (once per photo), generation {:.1} ms | {} | {} over the timed frames | runs ms: {}",
        path.display(),
        config.num_tps,
        if report.cold {
            "source recomputed every frame (--cold)"
        } else {
            "source computed once"
        },
        if args.training_form {
            "training form"
        } else {
            "inference form"
        },
        selected.description,
        CpuMachine::detect().describe(),
        report.runs_ms.len(),
        report.warmup,
        1000.0 / median,
        report.keypoints_ms,
        report.source_ms,
        report.generate_ms,
        describe_memory(report.memory),
        describe_busy(report.cores_busy),
        runs.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The process's memory for a bench line.
fn describe_memory(memory: Option<ResidentMemory>) -> String {
    match memory {
        Some(memory) => format!("process memory: {}", memory.describe()),
        None => "process memory: not reported on this OS".to_string(),
    }
}
