//! The live thread: the photo puppeteered by the newest camera frame, over and over, until
//! stopped. Frames the model has no time for are dropped by the capture thread, never queued.
//! The crop of the camera can follow the face; the animated face can be pasted back into the
//! photo; each result can be served as MJPEG to other apps.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use image::RgbImage;

use super::slot::JobSlot;
use super::{Command, Event, EventSink, LiveFrame, StudioCommands, fall_back_to_cpu};
use crate::animate::{AnimateOptions, Animator};
use crate::faces::{FaceDetector, Framing, detect_within};
use crate::family::LoadedModel;
use crate::frames::{frame_tensor, tensor_to_image};
use crate::live::{CameraSource, CropBox, FaceFollower, LatestFrame, RateMeter, camera_view};
use crate::stream::MjpegServer;
use crate::{EngineError, Result};

/// Mirroring, the square of the camera frame the model sees, and whether that square follows
/// the face.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct LiveView {
    pub(super) mirror: bool,
    pub(super) crop: CropBox,
    pub(super) follow_face: bool,
}

/// What the UI sets while the live thread runs (or before it starts): kept by the worker, read
/// by the live thread each frame.
#[derive(Default)]
pub(super) struct LiveSettings {
    pub(super) view: Mutex<LiveView>,
    /// Where results are served, if anywhere.
    pub(super) stream: Mutex<Option<MjpegServer>>,
}

impl LiveSettings {
    /// Stops the stream served now, then serves at `address` if given; the answer to
    /// [`super::Command::SetLiveStream`].
    pub(super) fn set_stream(&self, address: Option<&str>) -> Event {
        let Ok(mut stream) = self.stream.lock() else {
            return Event::LiveStream {
                url: None,
                error: Some("the stream state is unavailable".into()),
            };
        };
        // The old server lets go of its port first, so the same address can be bound again.
        *stream = None;
        let Some(address) = address else {
            return Event::LiveStream { url: None, error: None };
        };
        match crate::stream::stream_address(address).and_then(MjpegServer::bind) {
            Ok(server) => {
                let url = server.url();
                *stream = Some(server);
                Event::LiveStream {
                    url: Some(url),
                    error: None,
                }
            }
            Err(error) => Event::LiveStream {
                url: None,
                error: Some(error.to_string()),
            },
        }
    }
}

pub(super) enum LiveControl {
    Calibrate,
    Stop,
}

/// What the live thread works with.
pub(super) struct LiveJob {
    pub(super) model: LoadedModel,
    pub(super) source: RgbImage,
    pub(super) options: AnimateOptions,
    /// For the photo's face square and for following the camera's face.
    pub(super) faces: Option<FaceDetector>,
    pub(super) settings: Arc<LiveSettings>,
    pub(super) device: Device,
    /// Where to ask for live on the CPU, should the GPU fail under it.
    pub(super) studio: StudioCommands,
}

/// The running live thread's controls, if one runs.
#[derive(Clone, Default)]
pub(super) struct Slot(pub(super) JobSlot<Sender<LiveControl>>);

impl Slot {
    pub(super) fn control(&self, control: LiveControl) {
        if let Some(sender) = self.0.controls() {
            let _ = sender.send(control);
        }
    }

    /// Stops a live thread that runs, opens the camera (a missing one is this command's error)
    /// and starts the thread. Should the GPU fail under it, live starts again on the CPU (the
    /// camera released first, the stream kept).
    pub(super) fn start(&self, camera: CameraSource, job: LiveJob, events: &EventSink) -> Result<()> {
        if let Some(old) = self.0.take() {
            let _ = old.send(LiveControl::Stop);
        }
        let again_on_cpu = Command::StartLive {
            camera: camera.clone(),
            options: job.options,
        };
        let studio = job.studio.clone();
        let latest = LatestFrame::start(camera)?;
        let (control, controls) = channel();
        let (work_events, finish_events) = (events.clone(), events.clone());
        let started = self.0.start(
            "live",
            control,
            move || {
                crate::backend::catch_gpu_failure(&job.device, || live_loop(&job, &latest, &controls, &work_events))
            },
            move |outcome| {
                let reason = match outcome {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Err(gpu_failure)) => {
                        return fall_back_to_cpu(gpu_failure, &finish_events, &studio, Some(again_on_cpu));
                    }
                    Ok(Ok(Err(error))) => Some(error.to_string()),
                    Err(crashed) => Some(crashed),
                };
                finish_events.send(Event::LiveStopped { reason });
            },
        );
        started.map_err(|not_started| {
            EngineError::Invalid(not_started.explain("live", "a live session is already running"))
        })
    }
}

/// Animates the source by the newest camera frame until stopped.
fn live_loop(job: &LiveJob, latest: &LatestFrame, controls: &Receiver<LiveControl>, events: &EventSink) -> Result<()> {
    let size = job.model.frame_size();
    let params = job.options.params(&job.model.animate);
    // The photo is framed once: its face square (or the whole photo) is what the model moves.
    let framing = Framing::plan_photo(job.faces.as_ref(), job.options.face, &job.source)?;
    let source = framing.source_input(&job.source, size);
    events.send(Event::LiveStarted {
        framing: framing.clone(),
    });
    let mut animator = Animator::new(&*job.model.models, params, frame_tensor(&source, size, &job.device));
    if job.options.disentangled {
        animator.disentangle()?;
    }
    let mut follower = FaceFollower::default();
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
        let LiveView {
            mirror,
            crop,
            follow_face,
        } = job.settings.view.lock().map(|v| *v).unwrap_or_default();
        let camera = camera_view(captured.image, mirror);
        let (width, height) = camera.dimensions();
        let following = match (&job.faces, follow_face) {
            (Some(detector), true) => {
                let now = Instant::now();
                if follower.detection_due(now) {
                    follower.observe(&detect_within(detector, &camera, FaceFollower::DETECTION_SIDE), now);
                }
                follower.step(now);
                follower.crop_box(width, height)
            }
            _ => None,
        };
        let crop = following.unwrap_or(crop);
        let seen = crop.cut(&camera);
        let kp = animator.keypoints(frame_tensor(&seen, size, &job.device));
        if calibrate {
            animator.set_initial_keypoints(kp.clone());
            calibrate = false;
            calibrated = true;
        }
        let animated = tensor_to_image(animator.animate_keypoints(&kp).prediction);
        let result = framing.compose(&job.source, animated);
        let stream_clients = match job.settings.stream.lock().as_deref() {
            Ok(Some(server)) => {
                server.publish(&result)?;
                Some(server.clients())
            }
            _ => None,
        };
        events.send(Event::Live(Box::new(LiveFrame {
            crop: crop.pixels(width, height),
            face: follow_face.then(|| follower.face().map(|f| f.bbox)).flatten(),
            following: following.is_some(),
            camera,
            result,
            fps: rate.tick(),
            latency: captured.at.elapsed(),
            dropped: latest.dropped(),
            calibrated,
            stream_clients,
        })));
    }
}
