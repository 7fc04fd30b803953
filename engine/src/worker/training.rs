//! The training thread: the run's config is read there (the UI thread touches no file), then
//! [`crate::train::train`] runs it with this worker's controls, and its events are forwarded as
//! they come, state changes in order with them.

use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use super::{Event, EventSink, Job, TrainConfig, TrainRequest, TrainingState};
use crate::Result;
use crate::backend::SelectedDevice;
use crate::checkpoint::RunDir;
use crate::config::FommConfig;
use crate::train::{TrainControl, TrainEvent, train};

/// The running training's controls, if one runs.
#[derive(Clone, Default)]
pub(super) struct Slot(Arc<Mutex<Option<Sender<TrainControl>>>>);

impl Slot {
    pub(super) fn control(&self, control: TrainControl, events: &EventSink) {
        match self.0.lock() {
            Ok(slot) => match slot.as_ref() {
                Some(sender) if sender.send(control).is_ok() => {}
                _ => events.error(Job::Training, "no training is running"),
            },
            Err(_) => events.error(Job::Training, "the training state is unavailable"),
        }
    }

    pub(super) fn start(&self, request: TrainRequest, device: &SelectedDevice, events: &EventSink) {
        let mut slot = match self.0.lock() {
            Ok(slot) => slot,
            Err(_) => return events.error(Job::Training, "the training state is unavailable"),
        };
        if slot.as_ref().is_some_and(|s| s.send(TrainControl::Resume).is_ok()) {
            return events.error(Job::Training, "a training run is already going: stop it first");
        }
        let (control, controls) = channel();
        *slot = Some(control);
        let thread_events = events.clone();
        let device = device.clone();
        let registry = self.clone();
        let spawned = std::thread::Builder::new()
            .name("prioritycut-training".into())
            .spawn(move || {
                let events = thread_events;
                events.send(Event::TrainingState(TrainingState::Starting));
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let config = resolve_config(&request)?;
                    train(config, request.options, &device, controls, |event| {
                        forward(&events, event)
                    })
                }));
                let state = match run {
                    Ok(Ok((finish, _))) => TrainingState::Finished(finish),
                    Ok(Err(error)) => {
                        events.error(Job::Training, error);
                        TrainingState::Failed
                    }
                    Err(panic) => {
                        events.error(
                            Job::Training,
                            format!("the training thread crashed: {}", crate::error::panic_message(panic)),
                        );
                        TrainingState::Failed
                    }
                };
                if let Ok(mut slot) = registry.0.lock() {
                    *slot = None;
                }
                events.send(Event::TrainingState(state));
            });
        if let Err(e) = spawned {
            *slot = None;
            events.error(Job::Training, format!("cannot start the training thread: {e}"));
        }
    }
}

/// The config the run trains with: the run's own when resuming (see
/// [`RunDir::config_to_train_with`]), then the request's variant.
fn resolve_config(request: &TrainRequest) -> Result<FommConfig> {
    let mut config = match &request.config {
        TrainConfig::Given(config) => (**config).clone(),
        TrainConfig::File(path) => {
            let options = &request.options;
            let (path, _) = RunDir::config_to_train_with(&options.run_dir, options.resume, Some(path))?;
            FommConfig::from_yaml_file(&path)?
        }
    };
    if let Some(variant) = request.variant {
        config.prioritycut.variant = variant;
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
