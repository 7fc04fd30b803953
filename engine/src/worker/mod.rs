//! The engine worker that a UI drives: [`Command`]s in, [`Event`]s out, all work on background
//! threads, so that the caller never blocks on tensors.
//!
//! - The *studio* thread owns the loaded model, the source photo, the driving video and the last
//!   animation: loading, animating and exporting run there, one job at a time, cancellable.
//! - A *training* thread exists while a run trains; it steps the [`Trainer`] and obeys pause,
//!   resume, stop and checkpoint-now between steps.
//! - A *live* thread exists while puppeteering: a capture thread keeps only the newest camera
//!   frame (older ones are dropped, never queued) and the live thread animates the photo by it.
//! - An *evaluation* thread exists while a checkpoint is put through the reconstruction protocol
//!   ([`crate::eval`]); it loads its own copy of the model, so animating goes on meanwhile.
//!
//! A job that fails or panics becomes an [`Event::Error`]; the worker keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor};
use image::RgbImage;

use crate::animate::{Animator, find_best_frame, image_to_tensor, tensor_to_image};
use crate::backend::{self, BackendChoice, SelectedDevice};
use crate::checkpoint::FommModels;
use crate::config::{AnimateParams, FommConfig};
use crate::data::synthetic::{SyntheticConfig, generate};
use crate::data::{read_image, read_video, resize_to, write_frames};
use crate::eval::{EvalOptions, EvalReport, evaluate};
use crate::evaluators::Evaluators;
use crate::live::{CameraSource, CropBox, LatestFrame, RateMeter};
use crate::train::checkpoint::resolve_checkpoint_and_config;
use crate::train::{Finish, TrainEvent, TrainOptions, Trainer};
use crate::{EngineError, Result};

/// How the driving motion is transferred to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnimateOptions {
    /// Relative motion (FOMM's `use_relative_movement` and `use_relative_jacobian`); else absolute.
    pub relative: bool,
    /// Scale the motion by the ratio of the source's and the driving frame's keypoint hulls.
    pub adapt_scale: bool,
    /// Start relative motion from the driving frame whose pose best matches the source.
    pub best_frame: bool,
}

impl Default for AnimateOptions {
    fn default() -> Self {
        Self {
            relative: true,
            adapt_scale: true,
            best_frame: false,
        }
    }
}

impl AnimateOptions {
    fn params(&self) -> AnimateParams {
        AnimateParams::new()
            .with_use_relative_movement(self.relative)
            .with_use_relative_jacobian(self.relative)
            .with_adapt_movement_scale(self.adapt_scale)
    }
}

/// What a training run needs.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: FommConfig,
    pub options: TrainOptions,
}

/// What an evaluation needs.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// As `LoadModel`: a checkpoint file, a run folder or one of its checkpoints.
    pub checkpoint: PathBuf,
    pub config: Option<PathBuf>,
    pub dataset: PathBuf,
    pub options: EvalOptions,
    /// Write a small synthetic test set (figures at the model's size) to `dataset` first, if
    /// there is none: a user without data can still see the protocol run.
    pub synthetic_if_missing: bool,
}

/// The synthetic test set made for an [`EvalRequest`] without data: 8 videos of 32 frames.
pub const SYNTHETIC_TEST_SET: (usize, usize) = (8, 32);

/// Commands from the UI.
#[derive(Debug, Clone)]
pub enum Command {
    /// An official FOMM `.pth.tar`, our `.bpk`, or a training run folder; the config is the
    /// given file, else the run's own.
    LoadModel {
        checkpoint: PathBuf,
        config: Option<PathBuf>,
    },
    LoadSource(PathBuf),
    LoadDriving(PathBuf),
    /// Animate the source by the driving video with the loaded model.
    Animate(AnimateOptions),
    /// Write the last animation: `.mp4` (H.264), `.gif`, or a folder of PNG frames.
    Export(PathBuf),
    /// Stop the studio job in progress (animating, exporting).
    Cancel,
    StartTraining(Box<TrainRequest>),
    PauseTraining,
    ResumeTraining,
    StopTraining,
    CheckpointNow,
    /// Puppeteer the source with a camera (or a video file standing in for one).
    StartLive {
        camera: CameraSource,
        options: AnimateOptions,
    },
    /// Mirror the camera image, and the square of it the model sees.
    SetLiveView {
        mirror: bool,
        crop: CropBox,
    },
    /// The current camera frame becomes the neutral pose.
    Calibrate,
    StopLive,
    /// Run the reconstruction protocol on a checkpoint and a dataset's test videos.
    Evaluate(Box<EvalRequest>),
    CancelEvaluation,
}

/// A long job, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    LoadDriving,
    Animate,
    Export,
    /// Writing the synthetic test set of an evaluation.
    MakeTestSet,
    Evaluate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingState {
    Starting,
    Running,
    Paused,
    Finished(Finish),
    Failed,
}

/// One live frame.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    /// The camera frame (mirrored if asked), at most 640 pixels wide.
    pub camera: RgbImage,
    /// The square the model saw, in `camera`'s pixels: (x, y, side).
    pub crop: (u32, u32, u32),
    /// The photo moved like the camera.
    pub result: RgbImage,
    /// Frames produced per second (recent average).
    pub fps: f64,
    /// From capture to result, this frame.
    pub latency: Duration,
    /// Camera frames dropped so far because the model was busy.
    pub dropped: u64,
    pub calibrated: bool,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// The device in use, said once at start.
    Backend(String),
    ModelLoaded {
        path: PathBuf,
        /// [height, width] the model works at.
        frame_size: [usize; 2],
        description: String,
    },
    SourceLoaded {
        path: PathBuf,
        image: RgbImage,
    },
    DrivingLoaded {
        path: PathBuf,
        frames: Vec<RgbImage>,
        fps: f64,
    },
    Progress {
        job: Job,
        done: usize,
        total: usize,
    },
    AnimationReady {
        frames: Vec<RgbImage>,
        fps: f64,
        /// The driving frame relative motion started from.
        initial_frame: usize,
        seconds: f64,
    },
    Exported {
        path: PathBuf,
        frames: usize,
    },
    /// An evaluation finished.
    Evaluated {
        checkpoint: PathBuf,
        report: Box<EvalReport>,
    },
    Training(TrainEvent),
    TrainingState(TrainingState),
    Live(Box<LiveFrame>),
    LiveStopped {
        reason: Option<String>,
    },
    /// A job was cancelled before it finished.
    Cancelled(Job),
    /// Something failed; the worker goes on.
    Error {
        context: String,
        message: String,
    },
}

enum TrainControl {
    Pause,
    Resume,
    Stop,
    CheckpointNow,
}

enum LiveControl {
    Calibrate,
    Stop,
}

/// The handle a UI holds. Sending never blocks; events arrive on the receiver returned by
/// [`Worker::spawn`], each followed by a call of the `notify` callback (a UI repaint).
pub struct Worker {
    studio: Sender<Command>,
    cancel: Arc<AtomicBool>,
    training: Arc<Mutex<Option<Sender<TrainControl>>>>,
    live: Arc<Mutex<Option<Sender<LiveControl>>>>,
    /// The running evaluation's cancel flag.
    evaluation: Arc<Mutex<Option<Arc<AtomicBool>>>>,
    /// How the camera is viewed: kept here, not sent to the live thread, so that a view set
    /// before the live thread exists (right after StartLive) is not lost.
    live_view: Arc<Mutex<LiveView>>,
    events: EventSink,
    device: SelectedDevice,
}

/// Mirroring and the square of the camera frame the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct LiveView {
    mirror: bool,
    crop: CropBox,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("device", &self.device.description)
            .finish()
    }
}

/// Sends events and wakes the UI.
#[derive(Clone)]
struct EventSink {
    sender: Sender<Event>,
    notify: Arc<dyn Fn() + Send + Sync>,
}

impl EventSink {
    fn send(&self, event: Event) {
        // A UI that went away does not stop the worker.
        let _ = self.sender.send(event);
        (self.notify)();
    }

    fn error(&self, context: &str, message: impl std::fmt::Display) {
        self.send(Event::Error {
            context: context.to_string(),
            message: message.to_string(),
        });
    }
}

/// A panic's message, for an error event.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

impl Worker {
    /// Opens the device and starts the studio thread.
    pub fn spawn(
        backend_choice: BackendChoice,
        notify: impl Fn() + Send + Sync + 'static,
    ) -> Result<(Self, Receiver<Event>)> {
        let device = backend::select(backend_choice)?;
        let (sender, receiver) = channel();
        let events = EventSink {
            sender,
            notify: Arc::new(notify),
        };
        events.send(Event::Backend(device.to_string()));
        let (studio, commands) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(None));
        let live_view = Arc::new(Mutex::new(LiveView::default()));
        let mut state = Studio {
            device: device.device.clone(),
            events: events.clone(),
            cancel: cancel.clone(),
            live: live.clone(),
            live_view: live_view.clone(),
            model: None,
            source: None,
            driving: None,
            result: None,
        };
        std::thread::Builder::new()
            .name("prioritycut-studio".into())
            .spawn(move || {
                for command in commands {
                    let context = format!("{command:?}")
                        .split([' ', '(', '{'])
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.handle(command)));
                    match outcome {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => state.events.error(&context, error),
                        Err(panic) => state.events.error(
                            &context,
                            format!("the worker crashed and recovered: {}", panic_message(panic)),
                        ),
                    }
                }
            })
            .map_err(|e| EngineError::Invalid(format!("cannot start the worker thread: {e}")))?;
        Ok((
            Self {
                studio,
                cancel,
                training: Arc::new(Mutex::new(None)),
                evaluation: Arc::new(Mutex::new(None)),
                live,
                live_view,
                events,
                device,
            },
            receiver,
        ))
    }

    /// The device the worker computes on.
    pub fn device(&self) -> &SelectedDevice {
        &self.device
    }

    pub fn send(&self, command: Command) {
        let route_training = |control: TrainControl, what: &str| match self.training.lock() {
            Ok(slot) => match slot.as_ref() {
                Some(sender) if sender.send(control).is_ok() => {}
                _ => self.events.error(what, "no training is running"),
            },
            Err(_) => self.events.error(what, "the training state is unavailable"),
        };
        let route_live = |control: LiveControl| {
            if let Ok(slot) = self.live.lock()
                && let Some(sender) = slot.as_ref()
            {
                let _ = sender.send(control);
            }
        };
        match command {
            Command::Cancel => self.cancel.store(true, Ordering::SeqCst),
            Command::StartTraining(request) => self.start_training(*request),
            Command::PauseTraining => route_training(TrainControl::Pause, "PauseTraining"),
            Command::ResumeTraining => route_training(TrainControl::Resume, "ResumeTraining"),
            Command::StopTraining => route_training(TrainControl::Stop, "StopTraining"),
            Command::CheckpointNow => route_training(TrainControl::CheckpointNow, "CheckpointNow"),
            Command::SetLiveView { mirror, crop } => match self.live_view.lock() {
                Ok(mut view) => *view = LiveView { mirror, crop },
                Err(_) => self.events.error("SetLiveView", "the live state is unavailable"),
            },
            Command::Calibrate => route_live(LiveControl::Calibrate),
            Command::Evaluate(request) => self.start_evaluation(*request),
            Command::CancelEvaluation => {
                if let Ok(slot) = self.evaluation.lock()
                    && let Some(cancel) = slot.as_ref()
                {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
            Command::StopLive => route_live(LiveControl::Stop),
            other => {
                if self.studio.send(other).is_err() {
                    self.events.error("worker", "the studio thread has stopped");
                }
            }
        }
    }

    fn start_evaluation(&self, request: EvalRequest) {
        let mut slot = match self.evaluation.lock() {
            Ok(slot) => slot,
            Err(_) => return self.events.error("Evaluate", "the evaluation state is unavailable"),
        };
        if slot.is_some() {
            return self
                .events
                .error("Evaluate", "an evaluation is already running: cancel it first");
        }
        let cancel = Arc::new(AtomicBool::new(false));
        *slot = Some(cancel.clone());
        let events = self.events.clone();
        let device = self.device.clone();
        let registry = self.evaluation.clone();
        let checkpoint_path = request.checkpoint.clone();
        let spawned = std::thread::Builder::new()
            .name("prioritycut-eval".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    evaluate_request(request, cancel, &device, &events)
                }));
                // Free the slot before saying how it ended, so a new request right after works.
                if let Ok(mut slot) = registry.lock() {
                    *slot = None;
                }
                match run {
                    Ok(Ok(report)) => events.send(Event::Evaluated {
                        checkpoint: checkpoint_path,
                        report: Box::new(report),
                    }),
                    Ok(Err(EngineError::Cancelled(_))) => events.send(Event::Cancelled(Job::Evaluate)),
                    Ok(Err(error)) => events.error("Evaluate", error),
                    Err(panic) => events.error("Evaluate", format!("the evaluation crashed: {}", panic_message(panic))),
                }
            });
        if let Err(e) = spawned {
            *slot = None;
            self.events
                .error("Evaluate", format!("cannot start the evaluation thread: {e}"));
        }
    }

    fn start_training(&self, request: TrainRequest) {
        let mut slot = match self.training.lock() {
            Ok(slot) => slot,
            Err(_) => return self.events.error("StartTraining", "the training state is unavailable"),
        };
        if slot.as_ref().is_some_and(|s| s.send(TrainControl::Resume).is_ok()) {
            return self
                .events
                .error("StartTraining", "a training run is already going: stop it first");
        }
        let (control, controls) = channel();
        *slot = Some(control);
        let events = self.events.clone();
        let device = self.device.clone();
        let registry = self.training.clone();
        let spawned = std::thread::Builder::new()
            .name("prioritycut-train".into())
            .spawn(move || {
                events.send(Event::TrainingState(TrainingState::Starting));
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    train_loop(request, &device, &controls, &events)
                }));
                let state = match run {
                    Ok(Ok(finish)) => TrainingState::Finished(finish),
                    Ok(Err(error)) => {
                        events.error("training", error);
                        TrainingState::Failed
                    }
                    Err(panic) => {
                        events.error(
                            "training",
                            format!("the training thread crashed: {}", panic_message(panic)),
                        );
                        TrainingState::Failed
                    }
                };
                if let Ok(mut slot) = registry.lock() {
                    *slot = None;
                }
                events.send(Event::TrainingState(state));
            });
        if let Err(e) = spawned {
            *slot = None;
            self.events
                .error("StartTraining", format!("cannot start the training thread: {e}"));
        }
    }
}

/// The trainer's events on their way to the UI, and the run's state changes in order with them:
/// a Paused must not overtake the Step of the step that ran before it.
#[derive(Clone)]
struct TrainingFeed {
    pending: Arc<Mutex<Receiver<TrainEvent>>>,
    events: EventSink,
}

impl TrainingFeed {
    /// Forwards the next training event (waiting a little for one); false once the trainer is gone.
    fn forward_next(&self) -> bool {
        let Ok(pending) = self.pending.lock() else { return false };
        let alive = match pending.recv_timeout(Duration::from_millis(20)) {
            Ok(event) => {
                self.events.send(Event::Training(event));
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        drop(pending);
        // Let a waiting state() in before taking the lock again.
        std::thread::yield_now();
        alive
    }

    /// Sends a state change after every training event sent before it.
    fn state(&self, state: TrainingState) {
        if let Ok(pending) = self.pending.lock() {
            for event in pending.try_iter() {
                self.events.send(Event::Training(event));
            }
        }
        self.events.send(Event::TrainingState(state));
    }
}

/// Trains until finished or stopped, obeying the controls between steps.
fn train_loop(
    request: TrainRequest,
    device: &SelectedDevice,
    controls: &Receiver<TrainControl>,
    events: &EventSink,
) -> Result<Finish> {
    let (sender, receiver) = channel::<TrainEvent>();
    let feed = TrainingFeed {
        pending: Arc::new(Mutex::new(receiver)),
        events: events.clone(),
    };
    // Training events are forwarded as they come, whatever the trainer is doing.
    let forwarder = {
        let feed = feed.clone();
        std::thread::spawn(move || while feed.forward_next() {})
    };
    let outcome = (|| {
        let mut trainer = Trainer::new(request.config, request.options, device, sender)?;
        trainer.announce();
        feed.state(TrainingState::Running);
        let mut paused = false;
        loop {
            // Paused, wait for a control; running, take one if there is one.
            let control = if paused {
                Some(controls.recv().unwrap_or(TrainControl::Stop))
            } else {
                match controls.try_recv() {
                    Ok(control) => Some(control),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => Some(TrainControl::Stop),
                }
            };
            match control {
                Some(TrainControl::Pause) => {
                    if !paused {
                        paused = true;
                        feed.state(TrainingState::Paused);
                    }
                    continue;
                }
                Some(TrainControl::Resume) if paused => {
                    paused = false;
                    feed.state(TrainingState::Running);
                }
                Some(TrainControl::CheckpointNow) => {
                    trainer.save_checkpoint()?;
                }
                Some(TrainControl::Stop) => return trainer.finish(Finish::Stopped),
                Some(TrainControl::Resume) | None => {}
            }
            if paused {
                continue;
            }
            if trainer.step() >= trainer.total_steps() {
                return trainer.finish(Finish::Completed);
            }
            trainer.train_step()?;
            trainer.checkpoint_if_due()?;
        }
    })();
    let _ = forwarder.join();
    outcome
}

/// Loads the checkpoint, makes the synthetic test set if asked, and evaluates.
fn evaluate_request(
    request: EvalRequest,
    cancel: Arc<AtomicBool>,
    device: &SelectedDevice,
    events: &EventSink,
) -> Result<EvalReport> {
    let (weights, config) = resolve_checkpoint_and_config(&request.checkpoint, request.config.as_deref())?;
    if request.synthetic_if_missing && !request.dataset.join("test").is_dir() {
        let [h, w, _] = config.frame_shape;
        if h != w {
            return Err(EngineError::Invalid(format!(
                "the synthetic figures are square, the model works at {h}x{w}: choose a dataset"
            )));
        }
        let (videos, frames) = SYNTHETIC_TEST_SET;
        let synthetic = SyntheticConfig {
            size: h as u32,
            train_videos: 1,
            test_videos: videos,
            frames,
            seed: 2026,
        };
        generate(&request.dataset, &synthetic, |done, total| {
            events.send(Event::Progress {
                job: Job::MakeTestSet,
                done,
                total,
            })
        })?;
    }
    let models = FommModels::load(&weights, &config, &device.device)?;
    let evaluators = Evaluators::for_dataset(&request.dataset);
    let options = EvalOptions {
        cancel: Some(cancel),
        ..request.options
    };
    evaluate(
        &models,
        &config,
        &request.dataset,
        &options,
        &evaluators,
        &device.device,
        |done, total| {
            events.send(Event::Progress {
                job: Job::Evaluate,
                done,
                total,
            })
        },
    )
}

/// The studio thread's state.
struct Studio {
    device: Device,
    events: EventSink,
    cancel: Arc<AtomicBool>,
    live: Arc<Mutex<Option<Sender<LiveControl>>>>,
    live_view: Arc<Mutex<LiveView>>,
    model: Option<LoadedModel>,
    /// The source as loaded (full size).
    source: Option<RgbImage>,
    driving: Option<(Vec<RgbImage>, f64)>,
    result: Option<(Vec<RgbImage>, f64)>,
}

#[derive(Clone)]
struct LoadedModel {
    models: Arc<FommModels>,
    config: FommConfig,
}

impl LoadedModel {
    fn size(&self) -> (u32, u32) {
        let [h, w, _] = self.config.frame_shape;
        (w as u32, h as u32)
    }

    fn tensor(&self, image: &RgbImage, device: &Device) -> Tensor<4> {
        let (w, h) = self.size();
        image_to_tensor(&resize_to(image, w, h), device)
    }
}

impl Studio {
    fn handle(&mut self, command: Command) -> Result<()> {
        self.cancel.store(false, Ordering::SeqCst);
        match command {
            Command::LoadModel { checkpoint, config } => self.load_model(&checkpoint, config.as_deref()),
            Command::LoadSource(path) => {
                let image = read_image(&path)?;
                self.source = Some(image.clone());
                self.events.send(Event::SourceLoaded { path, image });
                Ok(())
            }
            Command::LoadDriving(path) => {
                self.events.send(Event::Progress {
                    job: Job::LoadDriving,
                    done: 0,
                    total: 1,
                });
                let (frames, fps) = read_video(&path)?;
                self.driving = Some((frames.clone(), fps));
                self.events.send(Event::DrivingLoaded { path, frames, fps });
                Ok(())
            }
            Command::Animate(options) => self.animate(options),
            Command::Export(path) => self.export(&path),
            Command::StartLive { camera, options } => self.start_live(camera, options),
            other => Err(EngineError::Invalid(format!("{other:?} is not a studio command"))),
        }
    }

    fn load_model(&mut self, checkpoint: &Path, config: Option<&Path>) -> Result<()> {
        let (weights, config) = resolve_checkpoint_and_config(checkpoint, config)?;
        let models = FommModels::load(&weights, &config, &self.device)?;
        let [h, w, _] = config.frame_shape;
        self.events.send(Event::ModelLoaded {
            path: checkpoint.to_path_buf(),
            frame_size: [h, w],
            description: format!(
                "{} keypoints, {w}x{h}, from {}",
                config.kp_detector.num_kp,
                weights.display()
            ),
        });
        self.model = Some(LoadedModel {
            models: Arc::new(models),
            config,
        });
        self.result = None;
        Ok(())
    }

    fn ready(&self) -> Result<(LoadedModel, RgbImage)> {
        let model = self
            .model
            .clone()
            .ok_or_else(|| EngineError::Invalid("load a model first".into()))?;
        let source = self
            .source
            .clone()
            .ok_or_else(|| EngineError::Invalid("choose a source photo first".into()))?;
        Ok((model, source))
    }

    fn animate(&mut self, options: AnimateOptions) -> Result<()> {
        let (model, source) = self.ready()?;
        let (driving, fps) = self
            .driving
            .clone()
            .ok_or_else(|| EngineError::Invalid("choose a driving video first".into()))?;
        let start = Instant::now();
        let device = self.device.clone();
        let mut animator = Animator::new(&model.models, options.params(), model.tensor(&source, &device));
        let total = 2 * driving.len();
        let mut keypoints = Vec::with_capacity(driving.len());
        for (i, frame) in driving.iter().enumerate() {
            if self.cancel.load(Ordering::SeqCst) {
                self.events.send(Event::Cancelled(Job::Animate));
                return Ok(());
            }
            keypoints.push(animator.keypoints(model.tensor(frame, &device)));
            self.events.send(Event::Progress {
                job: Job::Animate,
                done: i + 1,
                total,
            });
        }
        let initial = if options.best_frame {
            find_best_frame(animator.kp_source(), &keypoints).unwrap_or(0)
        } else {
            0
        };
        animator.set_initial_keypoints(keypoints[initial].clone());
        let mut frames = Vec::with_capacity(keypoints.len());
        for (i, kp) in keypoints.iter().enumerate() {
            if self.cancel.load(Ordering::SeqCst) {
                self.events.send(Event::Cancelled(Job::Animate));
                return Ok(());
            }
            frames.push(tensor_to_image(animator.animate_keypoints(kp).prediction));
            self.events.send(Event::Progress {
                job: Job::Animate,
                done: driving.len() + i + 1,
                total,
            });
        }
        self.result = Some((frames.clone(), fps));
        self.events.send(Event::AnimationReady {
            frames,
            fps,
            initial_frame: initial,
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn export(&mut self, path: &Path) -> Result<()> {
        let (frames, fps) = self
            .result
            .clone()
            .ok_or_else(|| EngineError::Invalid("nothing to export: animate first".into()))?;
        let total = frames.len();
        let cancel = self.cancel.clone();
        let events = self.events.clone();
        let mut cancelled = false;
        write_frames(path, &frames, fps, |i| {
            if cancel.load(Ordering::SeqCst) {
                cancelled = true;
            }
            events.send(Event::Progress {
                job: Job::Export,
                done: i + 1,
                total,
            });
        })?;
        if cancelled {
            // The file is complete; cancelling an export only skips the announcement.
            self.events.send(Event::Cancelled(Job::Export));
        } else {
            self.events.send(Event::Exported {
                path: path.to_path_buf(),
                frames: total,
            });
        }
        Ok(())
    }

    fn start_live(&mut self, camera: CameraSource, options: AnimateOptions) -> Result<()> {
        let (model, source) = self.ready()?;
        let mut slot = self
            .live
            .lock()
            .map_err(|_| EngineError::Invalid("the live state is unavailable".into()))?;
        if let Some(old) = slot.take() {
            let _ = old.send(LiveControl::Stop);
        }
        // Opening the camera here reports a missing one at once, as an error of this command.
        let latest = LatestFrame::start(camera)?;
        let (control, controls) = channel();
        *slot = Some(control);
        let events = self.events.clone();
        let device = self.device.clone();
        let registry = self.live.clone();
        let view = self.live_view.clone();
        std::thread::Builder::new()
            .name("prioritycut-live".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    live_loop(&model, &source, &latest, options, &view, &device, &controls, &events)
                }));
                let reason = match run {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(panic) => Some(format!("the live thread crashed: {}", panic_message(panic))),
                };
                if let Ok(mut slot) = registry.lock() {
                    *slot = None;
                }
                events.send(Event::LiveStopped { reason });
            })
            .map_err(|e| EngineError::Invalid(format!("cannot start the live thread: {e}")))?;
        Ok(())
    }
}

/// Animates the source by the newest camera frame, over and over, until stopped.
fn live_loop(
    model: &LoadedModel,
    source: &RgbImage,
    latest: &LatestFrame,
    options: AnimateOptions,
    view: &Mutex<LiveView>,
    device: &Device,
    controls: &Receiver<LiveControl>,
    events: &EventSink,
) -> Result<()> {
    let mut animator = Animator::new(&model.models, options.params(), model.tensor(source, device));
    let (w, h) = model.size();
    let mut calibrate = true;
    let mut calibrated = false;
    let mut rate = RateMeter::default();
    loop {
        loop {
            match controls.try_recv() {
                Ok(LiveControl::Calibrate) => calibrate = true,
                Ok(LiveControl::Stop) | Err(TryRecvError::Disconnected) => return Ok(()),
                Err(TryRecvError::Empty) => break,
            }
        }
        let Some(captured) = latest.wait(Duration::from_millis(200))? else {
            continue;
        };
        let LiveView { mirror, crop } = view.lock().map(|v| *v).unwrap_or_default();
        let seen = crop.apply(&captured.image, mirror);
        let frame = image_to_tensor(&resize_to(&seen, w, h), device);
        let full = if mirror {
            image::imageops::flip_horizontal(&captured.image)
        } else {
            captured.image
        };
        let scale = (640.0 / full.width().max(1) as f32).min(1.0);
        let (x, y, side) = crop.pixels(full.width(), full.height());
        let shown = resize_to(
            &full,
            ((full.width() as f32 * scale).round() as u32).max(1),
            ((full.height() as f32 * scale).round() as u32).max(1),
        );
        let scaled = |v: u32| (v as f32 * scale).round() as u32;
        let kp = animator.keypoints(frame);
        if calibrate {
            animator.set_initial_keypoints(kp.clone());
            calibrate = false;
            calibrated = true;
        }
        let result = tensor_to_image(animator.animate_keypoints(&kp).prediction);
        events.send(Event::Live(Box::new(LiveFrame {
            camera: shown,
            crop: (scaled(x), scaled(y), scaled(side)),
            result,
            fps: rate.tick(),
            latency: captured.at.elapsed(),
            dropped: latest.dropped(),
            calibrated,
        })));
    }
}
