//! The live thread: the photo puppeteered by the newest camera frame, over and over, until
//! stopped. Frames the model has no time for are dropped by the capture thread, never queued.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn::tensor::Device;
use image::RgbImage;

use super::{Event, EventSink, LiveFrame};
use crate::animate::{AnimateOptions, Animator};
use crate::checkpoint::LoadedModel;
use crate::frames::{frame_tensor, tensor_to_image};
use crate::live::{CameraSource, CropBox, LatestFrame, RateMeter};
use crate::{EngineError, Result};

/// Mirroring and the square of the camera frame the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct LiveView {
    pub(super) mirror: bool,
    pub(super) crop: CropBox,
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
    pub(super) view: Arc<Mutex<LiveView>>,
    pub(super) device: Device,
}

/// The running live thread's controls, if one runs.
#[derive(Clone, Default)]
pub(super) struct Slot(Arc<Mutex<Option<Sender<LiveControl>>>>);

impl Slot {
    pub(super) fn control(&self, control: LiveControl) {
        if let Ok(slot) = self.0.lock()
            && let Some(sender) = slot.as_ref()
        {
            let _ = sender.send(control);
        }
    }

    /// Stops a live thread that runs, opens the camera (a missing one is this command's error)
    /// and starts the thread.
    pub(super) fn start(&self, camera: CameraSource, job: LiveJob, events: &EventSink) -> Result<()> {
        let mut slot = self
            .0
            .lock()
            .map_err(|_| EngineError::Invalid("the live state is unavailable".into()))?;
        if let Some(old) = slot.take() {
            let _ = old.send(LiveControl::Stop);
        }
        let latest = LatestFrame::start(camera)?;
        let (control, controls) = channel();
        *slot = Some(control);
        let events = events.clone();
        let registry = self.clone();
        std::thread::Builder::new()
            .name("prioritycut-live".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    live_loop(&job, &latest, &controls, &events)
                }));
                let reason = match run {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(panic) => Some(format!(
                        "the live thread crashed: {}",
                        crate::error::panic_message(panic)
                    )),
                };
                if let Ok(mut slot) = registry.0.lock() {
                    *slot = None;
                }
                events.send(Event::LiveStopped { reason });
            })
            .map_err(|e| EngineError::Invalid(format!("cannot start the live thread: {e}")))?;
        Ok(())
    }
}

/// Animates the source by the newest camera frame until stopped.
fn live_loop(job: &LiveJob, latest: &LatestFrame, controls: &Receiver<LiveControl>, events: &EventSink) -> Result<()> {
    let size = job.model.frame_size();
    let params = job.options.params(&job.model.config.animate);
    let mut animator = Animator::new(&job.model.models, params, frame_tensor(&job.source, size, &job.device));
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
        let LiveView { mirror, crop } = job.view.lock().map(|v| *v).unwrap_or_default();
        let seen = crop.apply(&captured.image, mirror);
        let camera = if mirror {
            image::imageops::flip_horizontal(&captured.image)
        } else {
            captured.image
        };
        let kp = animator.keypoints(frame_tensor(&seen, size, &job.device));
        if calibrate {
            animator.set_initial_keypoints(kp.clone());
            calibrate = false;
            calibrated = true;
        }
        let result = tensor_to_image(animator.animate_keypoints(&kp).prediction);
        let crop = crop.pixels(camera.width(), camera.height());
        events.send(Event::Live(Box::new(LiveFrame {
            camera,
            crop,
            result,
            fps: rate.tick(),
            latency: captured.at.elapsed(),
            dropped: latest.dropped(),
            calibrated,
        })));
    }
}
