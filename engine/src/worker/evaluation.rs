//! The evaluation thread: a checkpoint put through FOMM's reconstruction protocol on a dataset's
//! test videos, with its own copy of the model so that animating goes on meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::slot::JobSlot;
use super::{EvalRequest, Event, EventSink, Job, StudioCommands, on_device_or_cpu};
use crate::backend::SelectedDevice;
use crate::data::synthetic::{SyntheticConfig, generate};
use crate::eval::{EvalOptions, EvalReport, evaluate};
use crate::evaluators::Evaluators;
use crate::family::LoadedModel;
use crate::import::load_face_detector;
use crate::{EngineError, Result};

/// The synthetic test set made for an [`EvalRequest`] without data: 8 videos of 32 frames.
pub const SYNTHETIC_TEST_SET: (usize, usize) = (8, 32);

/// The running evaluation's cancel flag, if one runs.
#[derive(Clone, Default)]
pub(super) struct Slot(pub(super) JobSlot<Arc<AtomicBool>>);

impl Slot {
    pub(super) fn cancel(&self) {
        if let Some(cancel) = self.0.controls() {
            cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Starts the evaluation on `device`; should the GPU fail under it, it runs again on the CPU.
    pub(super) fn start(
        &self,
        request: EvalRequest,
        device: &SelectedDevice,
        events: &EventSink,
        studio: StudioCommands,
    ) {
        let cancel = Arc::new(AtomicBool::new(false));
        let device = device.clone();
        let checkpoint = request.checkpoint.clone();
        let (work_events, finish_events) = (events.clone(), events.clone());
        let started = self.0.start(
            "evaluation",
            cancel.clone(),
            move || {
                on_device_or_cpu(&device, &work_events, &studio, |device| {
                    evaluate_request(request.clone(), cancel.clone(), device, &work_events)
                })
            },
            move |outcome| match outcome {
                Ok(Ok(report)) => finish_events.send(Event::Evaluated {
                    checkpoint,
                    report: Box::new(report),
                }),
                Ok(Err(EngineError::Cancelled(_))) => finish_events.send(Event::Cancelled(Job::Evaluate)),
                Ok(Err(error)) => finish_events.error(Job::Evaluate, error),
                Err(crashed) => finish_events.error(Job::Evaluate, crashed),
            },
        );
        if let Err(not_started) = started {
            let running = "an evaluation is already running: cancel it first";
            events.error(Job::Evaluate, not_started.explain("evaluation", running));
        }
    }
}

/// Loads the checkpoint, makes the synthetic test set if asked, and evaluates.
fn evaluate_request(
    request: EvalRequest,
    cancel: Arc<AtomicBool>,
    device: &SelectedDevice,
    events: &EventSink,
) -> Result<EvalReport> {
    let model = LoadedModel::open(&request.checkpoint, request.config.as_deref(), &device.device)?;
    if request.synthetic_if_missing && !request.dataset.join("test").is_dir() {
        let [h, w, _] = model.frame_shape;
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
            events.progress(Job::MakeTestSet, done, total)
        })?;
    }
    let faces = request.faces.as_ref();
    let landmarks = faces.filter(|f| f.landmarks).map(|f| f.weights.as_path());
    let evaluators = Evaluators::for_dataset_or_faces(&request.dataset, landmarks, &device.device)?;
    let face_crop = match faces.filter(|f| f.crop) {
        Some(faces) => Some(load_face_detector(&faces.weights, &device.device)?),
        None => request.options.face_crop,
    };
    let options = EvalOptions {
        cancel: Some(cancel),
        face_crop,
        ..request.options
    };
    evaluate(
        &model,
        &request.dataset,
        &options,
        &evaluators,
        &device.device,
        |done, total| events.progress(Job::Evaluate, done, total),
    )
}
