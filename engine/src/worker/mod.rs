//! The engine worker that a UI drives: [`Command`]s in, [`Event`]s out, all work on background
//! threads, so that the caller never blocks on tensors, files or devices.
//!
//! - [`studio`]: one thread owns the loaded model, the source photo, the driving video and the
//!   last animation; loading, animating and exporting run there, one job at a time, cancellable.
//! - [`training`]: a thread exists while a run trains; [`crate::train::train`] runs it and obeys
//!   pause, resume, stop and checkpoint-now between steps.
//! - [`live`]: a thread exists while puppeteering: a capture thread keeps only the newest camera
//!   frame (older ones are dropped, never queued) and the live thread animates the photo by it.
//! - [`evaluation`]: a thread exists while a checkpoint is put through the reconstruction
//!   protocol ([`crate::eval`]); it loads its own copy of the model, so animating goes on.
//!
//! A job that fails or panics becomes an [`Event::Error`] naming its [`Job`]; the worker keeps
//! serving. Training, evaluation and live each hold a `slot::JobSlot`: one of a kind at a time.

mod evaluation;
mod live;
mod slot;
mod studio;
mod training;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use image::RgbImage;

use crate::animate::{AnimateOptions, ClipStage};
use crate::backend::{self, BackendChoice, DeviceOption, SelectedDevice};
use crate::config::TrainingMode;
use crate::config::{AnimateParams, FommConfig, Variant};
use crate::data::Soundtrack;
use crate::eval::{EvalOptions, EvalReport};
use crate::faces::Framing;
use crate::live::{CameraInfo, CameraSource, CropBox};
use crate::train::{Finish, TrainControl, TrainEvent, TrainOptions};
use crate::{EngineError, Result};

pub use evaluation::SYNTHETIC_TEST_SET;

/// What a training run needs.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub config: TrainConfig,
    /// Trains this variant whatever the config says.
    pub variant: Option<Variant>,
    /// With a TPSMM config, trains this (its networks or its AVD network) whatever the config
    /// says; `TrainOptions::start_from` is the trained model AVD training starts from.
    pub mode: Option<TrainingMode>,
    pub options: TrainOptions,
}

/// Where a training run's config comes from.
#[derive(Debug, Clone)]
pub enum TrainConfig {
    /// A YAML file, read on the training thread. Resuming, the run's own config replaces it.
    File(PathBuf),
    /// A config made in memory.
    Given(Box<FommConfig>),
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
    /// What the evaluation does with faces, if anything.
    pub faces: Option<EvalFaces>,
}

/// Faces in an evaluation, by the face detector whose weights are given.
#[derive(Debug, Clone)]
pub struct EvalFaces {
    /// MTCNN's weights (a folder with `pnet.pt`, `rnet.pt`, `onet.pt`).
    pub weights: PathBuf,
    /// AKD and MKR by faces' landmarks on datasets with no evaluator of their own (see
    /// [`crate::evaluators::Evaluators::for_dataset_or_faces`]).
    pub landmarks: bool,
    /// Each test video cut around its face track first ([`EvalOptions::face_crop`]).
    pub crop: bool,
}

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
    /// MTCNN's weights (a folder with `pnet.pt`, `rnet.pt`, `onet.pt`) for face-aware animation.
    LoadFaceDetector(PathBuf),
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
    /// Ask which cameras there are; answered by [`Event::Cameras`].
    ListCameras,
    /// Ask which devices can be chosen; answered by [`Event::Devices`].
    ListDevices,
    /// Compute on another device from now on: it is opened, the loaded model and face detector
    /// are loaded again onto it, and [`Event::Backend`] names it. Refused while training,
    /// evaluating or puppeteering (their work lives on the device); on failure the device in
    /// use stays.
    UseDevice(BackendChoice),
    /// Puppeteer the source with a camera (or a video file standing in for one).
    StartLive {
        camera: CameraSource,
        options: AnimateOptions,
    },
    /// Mirror the camera image, and the square of it the model sees: `crop`, or the square
    /// around the face when `follow_face` (and a face detector is loaded).
    SetLiveView {
        mirror: bool,
        crop: CropBox,
        follow_face: bool,
    },
    /// Serve live results as MJPEG at this address (`PORT` or `HOST:PORT`; see
    /// [`crate::stream::stream_address`]), or stop serving (`None`). Answered by
    /// [`Event::LiveStream`]; the stream outlives a live run until switched off.
    SetLiveStream(Option<String>),
    /// The current camera frame becomes the neutral pose.
    Calibrate,
    StopLive,
    /// Run the reconstruction protocol on a checkpoint and a dataset's test videos.
    Evaluate(Box<EvalRequest>),
    CancelEvaluation,
}

impl Command {
    /// The job a command belongs to, for its progress and its errors.
    pub fn job(&self) -> Job {
        match self {
            Command::LoadModel { .. } | Command::LoadFaceDetector(_) => Job::LoadModel,
            Command::LoadSource(_) => Job::LoadSource,
            Command::LoadDriving(_) => Job::LoadDriving,
            Command::Animate(_) | Command::Cancel => Job::Animate,
            Command::Export(_) => Job::Export,
            Command::StartTraining(_)
            | Command::PauseTraining
            | Command::ResumeTraining
            | Command::StopTraining
            | Command::CheckpointNow => Job::Training,
            Command::ListCameras => Job::Cameras,
            Command::ListDevices | Command::UseDevice(_) => Job::Device,
            Command::StartLive { .. }
            | Command::SetLiveView { .. }
            | Command::SetLiveStream(_)
            | Command::Calibrate
            | Command::StopLive => Job::Live,
            Command::Evaluate(_) | Command::CancelEvaluation => Job::Evaluate,
        }
    }
}

/// What the worker does, for progress and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    LoadModel,
    LoadSource,
    LoadDriving,
    Animate,
    Export,
    Training,
    Cameras,
    /// Listing or switching devices.
    Device,
    /// A GPU's first frame: its kernels compile and autotune (progress `(0, 0)`: no count).
    PrepareGpu,
    Live,
    /// Writing the synthetic test set of an evaluation.
    MakeTestSet,
    Evaluate,
}

impl Job {
    /// For a person: what was being done.
    pub fn describe(self) -> &'static str {
        match self {
            Job::LoadModel => "loading the model",
            Job::LoadSource => "loading the photo",
            Job::LoadDriving => "loading the driving video",
            Job::Animate => "animating",
            Job::Export => "exporting",
            Job::Training => "training",
            Job::Cameras => "listing cameras",
            Job::Device => "choosing the device",
            Job::PrepareGpu => ClipStage::PreparingGpu.describe(),
            Job::Live => "live",
            Job::MakeTestSet => "making the synthetic test set",
            Job::Evaluate => "evaluating",
        }
    }
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
    /// The camera frame as captured (mirrored if asked); how large to show it is the UI's choice.
    pub camera: RgbImage,
    /// The square the model saw, in `camera`'s pixels: (x, y, side).
    pub crop: (u32, u32, u32),
    /// The face the square follows (`[x0, y0, x1, y1]` in `camera`'s pixels), when following.
    pub face: Option<[f32; 4]>,
    /// Whether the square follows a face (asked, and one has been found; it holds while the
    /// face is lost).
    pub following: bool,
    /// The photo moved like the camera.
    pub result: RgbImage,
    /// Frames produced per second (recent average).
    pub fps: f64,
    /// From capture to result, this frame.
    pub latency: Duration,
    /// Camera frames dropped so far because the model was busy.
    pub dropped: u64,
    pub calibrated: bool,
    /// Clients of the MJPEG stream, when one is served.
    pub stream_clients: Option<usize>,
}

/// A video's frames, shared between the studio thread and the window: an event hands them over
/// without copying a video (on the UI thread least of all).
pub type Frames = Arc<[RgbImage]>;

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// The device in use, said at start and after each [`Command::UseDevice`].
    Backend(String),
    /// The devices that can be chosen, after [`Command::ListDevices`].
    Devices(Vec<DeviceOption>),
    /// The GPU failed under a job (out of memory, device lost): the worker has moved to the CPU
    /// (flex; [`Event::Backend`] follows) and runs the job again there.
    DeviceFallback {
        reason: String,
    },
    ModelLoaded {
        path: PathBuf,
        /// [height, width] the model works at.
        frame_size: [usize; 2],
        /// The config's motion transfer, the defaults of [`AnimateOptions`].
        animate: AnimateParams,
        /// The model can move the source by its AVD network ([`AnimateOptions::disentangled`]).
        disentangled: bool,
        description: String,
        /// The same model loaded again onto another device ([`Command::UseDevice`]): the last
        /// animation still stands for it.
        moved: bool,
    },
    SourceLoaded {
        path: PathBuf,
        image: RgbImage,
    },
    DrivingLoaded {
        path: PathBuf,
        frames: Frames,
        fps: f64,
    },
    Progress {
        job: Job,
        done: usize,
        total: usize,
    },
    AnimationReady {
        frames: Frames,
        fps: f64,
        /// The driving frame relative motion started from.
        initial_frame: usize,
        /// Where the faces were, and what it said about them.
        framing: Framing,
        seconds: f64,
    },
    Exported {
        path: PathBuf,
        frames: usize,
        /// The sound the export kept, or why it has none.
        soundtrack: Soundtrack,
    },
    /// An evaluation finished.
    Evaluated {
        checkpoint: PathBuf,
        report: Box<EvalReport>,
    },
    Training(TrainEvent),
    TrainingState(TrainingState),
    /// The cameras of this machine (empty: none, or no camera support).
    Cameras(Vec<CameraInfo>),
    /// Puppeteering began: how the photo is framed (its face square, or why not).
    LiveStarted {
        framing: Framing,
    },
    Live(Box<LiveFrame>),
    /// The MJPEG stream's state after [`Command::SetLiveStream`]: its URL when serving;
    /// `error` when the address could not be used (the previous stream, if any, is stopped).
    LiveStream {
        url: Option<String>,
        error: Option<String>,
    },
    LiveStopped {
        reason: Option<String>,
    },
    /// A job was cancelled before it finished.
    Cancelled(Job),
    /// Something failed; the worker goes on.
    Error {
        job: Job,
        message: String,
    },
}

/// The handle a UI holds. Sending never blocks; events arrive on the receiver returned by
/// [`Worker::spawn`], each followed by a call of the `notify` callback (a UI repaint).
pub struct Worker {
    studio: Arc<Sender<Command>>,
    cancel: Arc<AtomicBool>,
    training: training::Slot,
    live: live::Slot,
    evaluation: evaluation::Slot,
    /// How the camera is viewed and where results are streamed: kept here, not sent to the
    /// live thread, so that what is set before the live thread exists (right after StartLive)
    /// is not lost.
    live_settings: Arc<live::LiveSettings>,
    events: EventSink,
    /// The device in use, shared with the studio thread, which switches it.
    device: Arc<Mutex<SelectedDevice>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("device", &self.device().description)
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

    fn error(&self, job: Job, message: impl std::fmt::Display) {
        self.send(Event::Error {
            job,
            message: message.to_string(),
        });
    }

    fn progress(&self, job: Job, done: usize, total: usize) {
        self.send(Event::Progress { job, done, total });
    }
}

/// The studio's commands as a job holds them: weakly, so that the studio still ends with the
/// worker; a job uses them to move the worker to the CPU after a GPU failure.
type StudioCommands = Weak<Sender<Command>>;

/// Says that the GPU failed under a job ([`Event::DeviceFallback`]) and moves the worker to the
/// CPU: the studio loads its model there ([`Event::Backend`] follows), then runs `then` (live
/// starting again there).
fn fall_back_to_cpu(reason: String, events: &EventSink, studio: &StudioCommands, then: Option<Command>) {
    events.send(Event::DeviceFallback { reason });
    // Straight to the studio: the UI's own UseDevice is refused while a job runs.
    if let Some(studio) = studio.upgrade() {
        let _ = studio.send(Command::UseDevice(BackendChoice::Flex));
        if let Some(command) = then {
            let _ = studio.send(command);
        }
    }
}

/// Runs a job's `work` on `device`. When the GPU itself fails under it (out of its memory, the
/// device lost), the job is not lost: the worker moves to the CPU ([`fall_back_to_cpu`]) and
/// `work` runs again there, on flex.
fn on_device_or_cpu<T>(
    device: &SelectedDevice,
    events: &EventSink,
    studio: &StudioCommands,
    mut work: impl FnMut(&SelectedDevice) -> Result<T>,
) -> Result<T> {
    let reason = match backend::catch_gpu_failure(&device.device, || work(device)) {
        // A failure raised on a thread of the work's own (training's) comes back as an error.
        Ok(Err(EngineError::Gpu(reason))) | Err(reason) => reason,
        Ok(outcome) => return outcome,
    };
    fall_back_to_cpu(reason, events, studio, None);
    work(&backend::select(BackendChoice::Flex)?)
}

/// Starts a named thread whose panics become an error of `job`.
fn spawn_job(name: &'static str, job: Job, events: &EventSink, work: impl FnOnce() + Send + 'static) {
    let on_panic = events.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("prioritycut-{name}"))
        .spawn(move || {
            if let Err(crashed) = slot::run_catching(name, work) {
                on_panic.error(job, crashed);
            }
        });
    if let Err(e) = spawned {
        events.error(job, format!("cannot start the {name} thread: {e}"));
    }
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
        let cancel = Arc::new(AtomicBool::new(false));
        let live = live::Slot::default();
        let live_settings = Arc::new(live::LiveSettings::default());
        let device = Arc::new(Mutex::new(device));
        let studio = studio::Studio::new(
            device.clone(),
            events.clone(),
            cancel.clone(),
            live.clone(),
            live_settings.clone(),
        )
        .spawn()?;
        Ok((
            Self {
                studio,
                cancel,
                training: training::Slot::default(),
                evaluation: evaluation::Slot::default(),
                live,
                live_settings,
                events,
                device,
            },
            receiver,
        ))
    }

    /// The device the worker computes on now.
    pub fn device(&self) -> SelectedDevice {
        studio::current(&self.device)
    }

    pub fn send(&self, command: Command) {
        let job = command.job();
        match command {
            Command::Cancel => self.cancel.store(true, Ordering::SeqCst),
            Command::StartTraining(request) => {
                self.training
                    .start(*request, &self.device(), &self.events, Arc::downgrade(&self.studio))
            }
            Command::PauseTraining => self.training.control(TrainControl::Pause, &self.events),
            Command::ResumeTraining => self.training.control(TrainControl::Resume, &self.events),
            Command::StopTraining => self.training.control(TrainControl::Stop, &self.events),
            Command::CheckpointNow => self.training.control(TrainControl::CheckpointNow, &self.events),
            Command::ListCameras => {
                let events = self.events.clone();
                // Asking the OS for cameras can take a while: never on the caller's thread.
                spawn_job("cameras", job, &self.events, move || {
                    events.send(Event::Cameras(crate::live::list_cameras()));
                });
            }
            Command::ListDevices => {
                let events = self.events.clone();
                // Enumerating adapters is driver work: never on the caller's thread.
                spawn_job("devices", job, &self.events, move || {
                    events.send(Event::Devices(backend::device_options()));
                });
            }
            Command::UseDevice(_)
                if self.training.0.running() || self.evaluation.0.running() || self.live.0.running() =>
            {
                self.events.error(
                    job,
                    "the device cannot change while training, evaluating or live: stop that first",
                );
            }
            Command::SetLiveView {
                mirror,
                crop,
                follow_face,
            } => match self.live_settings.view.lock() {
                Ok(mut view) => {
                    *view = live::LiveView {
                        mirror,
                        crop,
                        follow_face,
                    }
                }
                Err(_) => self.events.error(job, "the live state is unavailable"),
            },
            Command::SetLiveStream(address) => {
                let (settings, events) = (self.live_settings.clone(), self.events.clone());
                // Letting go of the old port waits for its thread: never on the caller's.
                spawn_job("stream", job, &self.events, move || {
                    events.send(settings.set_stream(address.as_deref()));
                });
            }
            Command::Calibrate => self.live.control(live::LiveControl::Calibrate),
            Command::StopLive => self.live.control(live::LiveControl::Stop),
            Command::Evaluate(request) => {
                self.evaluation
                    .start(*request, &self.device(), &self.events, Arc::downgrade(&self.studio))
            }
            Command::CancelEvaluation => self.evaluation.cancel(),
            other => {
                if self.studio.send(other).is_err() {
                    self.events.error(job, "the studio thread has stopped");
                }
            }
        }
    }
}
