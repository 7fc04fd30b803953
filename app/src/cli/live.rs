//! `prioritycut live --camera N | --camera-video V --source PHOTO [--face M] [--follow-face]
//! [--stream ADDR]`: puppeteering without a window, the frames served as MJPEG over HTTP for
//! OBS, VLC or ffmpeg.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use prioritycut_engine::faces::FaceMode;
use prioritycut_engine::live::CameraSource;
use prioritycut_engine::worker::{Command, Event};

use super::{DeviceArgs, ModelArgs};

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// The webcam to use (see the window's Live workspace for the list).
    #[arg(long, conflicts_with = "camera_video", required_unless_present = "camera_video")]
    pub camera: Option<u32>,
    /// A video file standing in for the camera, looped at its frame rate.
    #[arg(long)]
    pub camera_video: Option<PathBuf>,
    /// The photo to puppeteer (default: the bundled one, as the window opens on).
    #[arg(long)]
    pub source: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Serve the animated frames as MJPEG at http://ADDR/ (PORT alone: 127.0.0.1:PORT; port 0:
    /// any free one). Without it, only the frame rate is reported.
    #[arg(long, value_name = "ADDR")]
    pub stream: Option<String>,
    /// auto: the photo's face square is animated and pasted back into the photo (the stream
    /// has the photo's size); crop: the face square alone; off: the whole photo.
    #[arg(long, default_value = "auto")]
    pub face: FaceMode,
    /// The camera's crop square follows the face (smoothed), so the puppet keeps its place
    /// when the head moves across the frame.
    #[arg(long)]
    pub follow_face: bool,
    /// Move the photo by the model's AVD network (TPSMM's `avd` mode): it keeps its
    /// proportions and takes the camera's pose. Only for models whose checkpoint has one.
    #[arg(long)]
    pub avd: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: LiveArgs) -> anyhow::Result<ExitCode> {
    let camera = match (&args.camera_video, args.camera) {
        (Some(video), _) => CameraSource::VideoFile(video.clone()),
        (None, Some(index)) => CameraSource::Webcam { index },
        (None, None) => anyhow::bail!("give --camera N or --camera-video FILE"),
    };
    args.device.apply_precision()?;
    let stop = super::stop_on_ctrl_c("stopping (Ctrl-C again to quit at once)", "quitting")?;
    let framing = super::LiveFraming {
        face: args.face,
        follow_face: args.follow_face,
        stream: args.stream.clone(),
        avd: args.avd,
    };
    let (worker, events, url) = super::start_live(
        args.device.choice,
        args.model.checkpoint(),
        args.model.config.clone(),
        args.source
            .clone()
            .unwrap_or_else(|| crate::assets::Bundle::bundled().source),
        camera,
        framing,
    )?;
    if let Some(url) = &url {
        // Scripts read the address from this line (port 0 picks one).
        eprintln!("streaming MJPEG at {url}");
        eprintln!("  open it in OBS (Media Source, input {url}), VLC or `ffplay {url}`");
    }
    let started = Instant::now();
    let mut frames = 0u64;
    let mut last_report = Instant::now();
    let mut last_frames = 0u64;
    let result = loop {
        if stop.load(Ordering::SeqCst) || args.seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
            break Ok(());
        }
        let event = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Err(anyhow::anyhow!("the engine stopped")),
        };
        match event {
            Event::Error { job, message } => break Err(anyhow::anyhow!("{}: {message}", job.describe())),
            Event::LiveStopped { reason } => {
                break Err(anyhow::anyhow!("live stopped: {}", reason.unwrap_or_default()));
            }
            Event::ModelLoaded { description, .. } => eprintln!("model: {description}"),
            // The worker moves to the CPU and starts live again there by itself.
            Event::DeviceFallback { reason } => eprintln!("note: {reason}: live goes on on the CPU (flex)"),
            Event::LiveStarted { framing } => {
                match &framing.source_face {
                    Some((_, crop)) => eprintln!(
                        "photo: the face square {0}x{0} at ({1}, {2}) ({3})",
                        crop.side, crop.x0, crop.y0, framing.mode
                    ),
                    None => eprintln!("photo: the whole photo ({})", framing.mode),
                }
                for note in &framing.notes {
                    eprintln!("note: {note}");
                }
            }
            Event::Live(frame) => {
                frames += 1;
                if last_report.elapsed() >= Duration::from_secs(2) {
                    let rate = (frames - last_frames) as f64 / last_report.elapsed().as_secs_f64();
                    let clients = frame
                        .stream_clients
                        .map_or(String::new(), |n| format!(", {n} client(s)"));
                    let follow = if !args.follow_face {
                        ""
                    } else if frame.following {
                        ", following the face"
                    } else {
                        ", no face found"
                    };
                    eprintln!(
                        "{rate:.1} frames/s, latency {:.0} ms, {} camera frames dropped{follow}{clients}",
                        frame.latency.as_secs_f64() * 1000.0,
                        frame.dropped
                    );
                    last_report = Instant::now();
                    last_frames = frames;
                }
            }
            _ => {}
        }
    };
    worker.send(Command::StopLive);
    result?;
    println!(
        "live: {frames} frames in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        url.map_or(String::new(), |url| format!(", streamed at {url}"))
    );
    Ok(ExitCode::SUCCESS)
}
