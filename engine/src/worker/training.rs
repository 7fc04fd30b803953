//! The training thread: the run's config is read there (the UI thread touches no file), then
//! [`crate::train::train`] runs it with this worker's controls, and its events are forwarded as
//! they come, state changes in order with them.

use std::sync::mpsc::{Sender, channel};

use super::slot::JobSlot;
use super::{Event, EventSink, Job, StudioCommands, TrainConfig, TrainRequest, TrainingState, on_device_or_cpu};
use crate::Result;
use crate::backend::SelectedDevice;
use crate::checkpoint::RunDir;
use crate::train::{TrainControl, TrainEvent, TrainingConfig, train};

/// The running training's controls, if one runs.
#[derive(Clone, Default)]
pub(super) struct Slot(pub(super) JobSlot<Sender<TrainControl>>);

impl Slot {
    pub(super) fn control(&self, control: TrainControl, events: &EventSink) {
        match self.0.controls() {
            Some(sender) if sender.send(control).is_ok() => {}
            _ => events.error(Job::Training, "no training is running"),
        }
    }

    /// Starts the run on `device`; should the GPU fail under it, the run goes on on the CPU from
    /// its last checkpoint, with the same controls.
    pub(super) fn start(
        &self,
        request: TrainRequest,
        device: &SelectedDevice,
        events: &EventSink,
        studio: StudioCommands,
    ) {
        let (control, mut controls) = channel();
        let device = device.clone();
        let (work_events, finish_events) = (events.clone(), events.clone());
        let started = self.0.start(
            "training",
            control,
            move || {
                work_events.send(Event::TrainingState(TrainingState::Starting));
                let config = resolve_config(&request)?;
                let mut moved = false;
                on_device_or_cpu(&device, &work_events, &studio, |device| {
                    let mut options = request.options.clone();
                    // Moved to the CPU: on from the run's last checkpoint (a new run saved one
                    // before its first step).
                    options.resume |= std::mem::replace(&mut moved, true);
                    train(config.clone(), options, device, &mut controls, |event| {
                        forward(&work_events, event)
                    })
                })
            },
            move |outcome| {
                let state = match outcome {
                    Ok(Ok((finish, _))) => TrainingState::Finished(finish),
                    Ok(Err(error)) => {
                        finish_events.error(Job::Training, error);
                        TrainingState::Failed
                    }
                    Err(crashed) => {
                        finish_events.error(Job::Training, crashed);
                        TrainingState::Failed
                    }
                };
                finish_events.send(Event::TrainingState(state));
            },
        );
        // Asked, not probed: a paused run stays paused.
        if let Err(not_started) = started {
            let running = "a training run is already going (running or paused): stop it first";
            events.error(Job::Training, not_started.explain("training", running));
        }
    }
}

/// The config the run trains with: the run's own when resuming (see
/// [`RunDir::config_to_train_with`]), then the request's variant.
fn resolve_config(request: &TrainRequest) -> Result<TrainingConfig> {
    let mut config = match &request.config {
        TrainConfig::Given(config) => TrainingConfig::from((**config).clone()),
        TrainConfig::File(path) => {
            let options = &request.options;
            let (path, _) = RunDir::config_to_train_with(&options.run_dir, options.resume, Some(path))?;
            TrainingConfig::read_yaml_file(&path)?.0
        }
    };
    if let Some(variant) = request.variant {
        config.set_variant(variant);
    }
    if let Some(mode) = request.mode {
        config.set_mode(mode)?;
    }
    Ok(config)
}

/// A training event to the UI; pausing and resuming become state changes, in order with the
/// steps around them.
fn forward(events: &EventSink, event: TrainEvent) {
    match event {
        TrainEvent::Paused { .. } => events.send(Event::TrainingState(TrainingState::Paused)),
        TrainEvent::Resumed { .. } => events.send(Event::TrainingState(TrainingState::Running)),
        TrainEvent::Started { .. } => {
            events.send(Event::Training(event));
            events.send(Event::TrainingState(TrainingState::Running));
        }
        event => events.send(Event::Training(event)),
    }
}
