//! The studio thread: the loaded model, the photo, the driving video and the last animation;
//! loading, animating and exporting, one job at a time, cancellable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use burn::tensor::Device;
use image::RgbImage;

use super::live::{self, LiveSettings};
use super::{Command, Event, EventSink, Frames, Job, StudioCommands};
use crate::animate::{AnimateOptions, ClipStage, animate_clip};
use crate::backend::{self, BackendChoice, SelectedDevice};
use crate::data::{read_image, read_video, write_frames_with_audio};
use crate::faces::FaceDetector;
use crate::family::LoadedModel;
use crate::import::load_face_detector;
use crate::live::CameraSource;
use crate::{EngineError, Result};

/// The device in `shared`, as it is now.
pub(super) fn current(shared: &Mutex<SelectedDevice>) -> SelectedDevice {
    device_in(shared).clone()
}

/// `shared` locked; a thread that panicked holding it left a whole `SelectedDevice` there.
fn device_in(shared: &Mutex<SelectedDevice>) -> std::sync::MutexGuard<'_, SelectedDevice> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) struct Studio {
    /// The device in use, shared with the worker (whose training and evaluation start on it).
    shared_device: Arc<Mutex<SelectedDevice>>,
    device: Device,
    events: EventSink,
    cancel: Arc<AtomicBool>,
    live: live::Slot,
    live_settings: Arc<LiveSettings>,
    /// The studio's own commands, for the live thread it starts (live moving to the CPU).
    own_commands: StudioCommands,
    model: Option<LoadedModel>,
    /// Where the model came from (checkpoint, config), to load it again on another device.
    model_files: Option<(PathBuf, Option<PathBuf>)>,
    faces: Option<FaceDetector>,
    /// The face detector's weights, likewise.
    face_weights: Option<PathBuf>,
    /// The source as loaded (full size).
    source: Option<RgbImage>,
    /// The driving video's frames, frame rate and file (whose sound an MP4 export keeps).
    driving: Option<(Frames, f64, PathBuf)>,
    /// The last animation, its frame rate, and the driving file it followed.
    result: Option<(Frames, f64, PathBuf)>,
}

impl Studio {
    pub(super) fn new(
        shared_device: Arc<Mutex<SelectedDevice>>,
        events: EventSink,
        cancel: Arc<AtomicBool>,
        live: live::Slot,
        live_settings: Arc<LiveSettings>,
    ) -> Self {
        Self {
            device: current(&shared_device).device,
            shared_device,
            events,
            cancel,
            live,
            live_settings,
            own_commands: Weak::new(),
            model: None,
            model_files: None,
            faces: None,
            face_weights: None,
            source: None,
            driving: None,
            result: None,
        }
    }

    /// Starts the thread; commands go in through the returned sender. The thread ends when the
    /// sender is dropped (the studio and its jobs hold it only weakly).
    pub(super) fn spawn(mut self) -> Result<Arc<Sender<Command>>> {
        let (sender, commands) = channel::<Command>();
        let sender = Arc::new(sender);
        self.own_commands = Arc::downgrade(&sender);
        std::thread::Builder::new()
            .name("prioritycut-studio".into())
            .spawn(move || {
                for command in commands {
                    let job = command.job();
                    match super::slot::run_catching("studio", || self.handle(command)) {
                        Ok(Ok(())) => {}
                        Ok(Err(EngineError::Cancelled(_))) => self.events.send(Event::Cancelled(job)),
                        Ok(Err(error)) => self.events.error(job, error),
                        // The thread goes on serving: the next command finds the studio as the
                        // crash left it.
                        Err(crashed) => self.events.error(job, format!("{crashed}; it serves on")),
                    }
                }
            })
            .map_err(|e| EngineError::Invalid(format!("cannot start the worker thread: {e}")))?;
        Ok(sender)
    }

    fn handle(&mut self, command: Command) -> Result<()> {
        self.cancel.store(false, Ordering::SeqCst);
        match command {
            Command::LoadModel { checkpoint, config } => self.load_model(&checkpoint, config.as_deref(), false),
            Command::LoadSource(path) => {
                let image = read_image(&path)?;
                self.source = Some(image.clone());
                self.events.send(Event::SourceLoaded { path, image });
                Ok(())
            }
            Command::LoadDriving(path) => {
                self.events.progress(Job::LoadDriving, 0, 1);
                let (frames, fps) = read_video(&path)?;
                let frames = Frames::from(frames);
                self.driving = Some((frames.clone(), fps, path.clone()));
                self.events.send(Event::DrivingLoaded { path, frames, fps });
                Ok(())
            }
            Command::LoadFaceDetector(dir) => {
                self.faces = Some(load_face_detector(&dir, &self.device)?);
                self.face_weights = Some(dir);
                Ok(())
            }
            Command::UseDevice(choice) => self.use_device(choice),
            Command::Animate(options) => self.animate(options),
            Command::Export(path) => self.export(&path),
            Command::StartLive { camera, options } => self.start_live(camera, options),
            other => Err(EngineError::Invalid(format!("{other:?} is not a studio command"))),
        }
    }

    /// Loads a model onto the studio's device; `moved`: the same one again, onto a new device.
    fn load_model(&mut self, checkpoint: &Path, config: Option<&Path>, moved: bool) -> Result<()> {
        let model = LoadedModel::open(checkpoint, config, &self.device)?;
        let [h, w, _] = model.frame_shape;
        let mut description = model.describe();
        if !model.ignored_config_keys.is_empty() {
            description.push_str(&format!(
                " (config keys not used: {})",
                model.ignored_config_keys.join(", ")
            ));
        }
        self.events.send(Event::ModelLoaded {
            path: checkpoint.to_path_buf(),
            frame_size: [h, w],
            animate: model.animate.clone(),
            disentangled: model.models.can_disentangle(),
            description,
            moved,
        });
        self.model = Some(model);
        self.model_files = Some((checkpoint.to_path_buf(), config.map(Path::to_path_buf)));
        self.result = None;
        Ok(())
    }

    /// Opens `choice` and moves the studio's networks onto it: the model and the face detector
    /// are loaded again from their files (a model's prepared forms belong to one device). The
    /// photo, the video and the last animation are pictures and stay.
    fn use_device(&mut self, choice: BackendChoice) -> Result<()> {
        self.events.progress(Job::Device, 0, 1);
        let selected = backend::select(choice)?;
        let description = selected.to_string();
        self.device = selected.device.clone();
        *device_in(&self.shared_device) = selected;
        self.events.send(Event::Backend(description));
        self.model = None;
        self.faces = None;
        if let Some(dir) = self.face_weights.clone() {
            self.faces = Some(load_face_detector(&dir, &self.device)?);
        }
        if let Some((checkpoint, config)) = self.model_files.clone() {
            let result = self.result.take();
            self.load_model(&checkpoint, config.as_deref(), true)?;
            self.result = result;
        }
        self.events.progress(Job::Device, 1, 1);
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
        let (driving, fps, driving_path) = self
            .driving
            .clone()
            .ok_or_else(|| EngineError::Invalid("choose a driving video first".into()))?;
        let start = Instant::now();
        let n = driving.len();
        let animated = backend::catch_gpu_failure(&self.device, || {
            animate_clip(
                &model,
                self.faces.as_ref(),
                &source,
                &driving,
                options,
                &self.device,
                |stage, done, _| {
                    // One bar over the three passes.
                    let done = match stage {
                        ClipStage::Faces => done,
                        ClipStage::Keypoints => n + done,
                        ClipStage::Generating => 2 * n + done,
                        ClipStage::PreparingGpu => return self.events.progress(Job::PrepareGpu, 0, 0),
                    };
                    self.events.progress(Job::Animate, done, 3 * n);
                },
                || self.cancel.load(Ordering::SeqCst),
            )
        });
        let clip = match animated {
            Ok(clip) => clip?,
            Err(reason) => {
                // The GPU itself failed: the same animation on the CPU, nothing asked again.
                self.events.send(Event::DeviceFallback { reason });
                self.use_device(BackendChoice::Flex)?;
                return self.animate(options);
            }
        };
        let frames = Frames::from(clip.frames);
        self.result = Some((frames.clone(), fps, driving_path));
        self.events.send(Event::AnimationReady {
            frames,
            fps,
            initial_frame: clip.initial_frame,
            framing: clip.framing,
            seconds: start.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn export(&mut self, path: &Path) -> Result<()> {
        let (frames, fps, driving) = self
            .result
            .clone()
            .ok_or_else(|| EngineError::Invalid("nothing to export: animate first".into()))?;
        let total = frames.len();
        let mut cancelled = false;
        let audio = driving.is_file().then_some(driving.as_path());
        let soundtrack = write_frames_with_audio(path, &frames, fps, audio, |i| {
            if self.cancel.load(Ordering::SeqCst) {
                cancelled = true;
            }
            self.events.progress(Job::Export, i + 1, total);
        })?;
        if cancelled {
            // The file is complete; cancelling an export only skips the announcement.
            self.events.send(Event::Cancelled(Job::Export));
        } else {
            self.events.send(Event::Exported {
                path: path.to_path_buf(),
                frames: total,
                soundtrack,
            });
        }
        Ok(())
    }

    fn start_live(&mut self, camera: CameraSource, options: AnimateOptions) -> Result<()> {
        let (model, source) = self.ready()?;
        self.live.start(
            camera,
            live::LiveJob {
                model,
                source,
                options,
                faces: self.faces.clone(),
                settings: self.live_settings.clone(),
                device: self.device.clone(),
                studio: self.own_commands.clone(),
            },
            &self.events,
        )
    }
}
