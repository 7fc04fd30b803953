//! The worker's background jobs (training, evaluation, live): one of each kind at a time, on its
//! own named thread, a panic turned into the job's error, the slot freed when the job ends.

use std::sync::{Arc, Mutex};

/// Runs `work`, turning a panic into a message naming the `name` thread; a GPU's failure (out
/// of memory, a lost device) into one line saying what stopped and what to do, not CubeCL's
/// report of dozens.
pub(super) fn run_catching<R>(name: &str, work: impl FnOnce() -> R) -> Result<R, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::backend::catch_any_gpu_failure(work)
    })) {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(failure)) => Err(match name {
            "training" => format!(
                "{failure}: training stopped; its last checkpoint is kept: choose the CPU in Device (top right) and resume"
            ),
            "live" => format!("{failure}: live stopped; choose the CPU in Device (top right) and start it again"),
            // The studio serves on (its caller says so): only the command stopped.
            "studio" => format!("{failure}: choose the CPU in Device (top right) to go on there"),
            _ => format!("{failure}: the {name} stopped; choose the CPU in Device (top right) to go on there"),
        }),
        Err(panic) => Err(format!(
            "the {name} thread crashed: {}",
            crate::error::panic_message(panic)
        )),
    }
}

/// Why a job did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NotStarted {
    /// One of this kind runs already.
    Running,
    /// A job thread panicked while holding the slot's lock.
    Unavailable,
    /// The OS refused the thread.
    Thread(String),
}

impl NotStarted {
    /// The user's sentence for a `kind` of job ("training"), with `when_running` for one that
    /// runs already (what to do about it differs by kind).
    pub(super) fn explain(&self, kind: &str, when_running: &str) -> String {
        match self {
            Self::Running => when_running.to_string(),
            Self::Unavailable => format!("the {kind} state is unavailable"),
            Self::Thread(e) => format!("cannot start the {kind} thread: {e}"),
        }
    }
}

/// The controls of the job of one kind that runs, if one does. `C` is what the worker steers it
/// by (a channel's sender, a cancel flag), cloned out for each command.
pub(super) struct JobSlot<C> {
    state: Arc<Mutex<SlotState<C>>>,
}

struct SlotState<C> {
    /// The running job's number and controls.
    running: Option<(u64, C)>,
    started: u64,
}

impl<C> Clone for JobSlot<C> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<C> Default for JobSlot<C> {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(SlotState {
                running: None,
                started: 0,
            })),
        }
    }
}

impl<C: Clone + Send + 'static> JobSlot<C> {
    /// The running job's controls; `None` when none runs (or the state is unavailable).
    pub(super) fn controls(&self) -> Option<C> {
        let state = self.state.lock().ok()?;
        state.running.as_ref().map(|(_, controls)| controls.clone())
    }

    /// Whether a job of this kind runs (or is paused).
    pub(super) fn running(&self) -> bool {
        self.controls().is_some()
    }

    /// Takes the running job's controls out of the slot, so that another can start while it
    /// winds down (the caller tells it to stop).
    pub(super) fn take(&self) -> Option<C> {
        let mut state = self.state.lock().ok()?;
        state.running.take().map(|(_, controls)| controls)
    }

    /// Starts `work` on the thread `prioritycut-{name}` with `controls` in the slot, unless a job
    /// of this kind runs. When `work` ends (or panics: `Err` with the message), the slot is freed
    /// first, so a request right after can start, and then `finish` says how it ended.
    pub(super) fn start<R: 'static>(
        &self,
        name: &'static str,
        controls: C,
        work: impl FnOnce() -> R + Send + 'static,
        finish: impl FnOnce(Result<R, String>) + Send + 'static,
    ) -> Result<(), NotStarted> {
        let mut state = self.state.lock().map_err(|_| NotStarted::Unavailable)?;
        if state.running.is_some() {
            return Err(NotStarted::Running);
        }
        state.started += 1;
        let number = state.started;
        state.running = Some((number, controls));
        let slot = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("prioritycut-{name}"))
            .spawn(move || {
                let outcome = run_catching(name, work);
                slot.free(number);
                finish(outcome);
            });
        if let Err(e) = spawned {
            state.running = None;
            return Err(NotStarted::Thread(e.to_string()));
        }
        Ok(())
    }

    /// Frees the slot if job `number` still holds it (one taken out and replaced does not).
    fn free(&self, number: u64) {
        if let Ok(mut state) = self.state.lock()
            && state.running.as_ref().is_some_and(|(running, _)| *running == number)
        {
            state.running = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_job_at_a_time_and_the_slot_is_free_when_it_ends() {
        let slot = JobSlot::<u32>::default();
        let (release, released) = channel::<()>();
        let (ended, endings) = channel();
        slot.start("first", 1, move || released.recv().is_ok(), {
            let ended = ended.clone();
            move |outcome| ended.send(outcome).expect("the test listens")
        })
        .expect("started");
        assert_eq!(slot.controls(), Some(1));
        assert_eq!(slot.start("second", 2, || true, |_| {}), Err(NotStarted::Running));
        assert_eq!(
            slot.controls(),
            Some(1),
            "a refused start leaves the running job's controls"
        );
        release.send(()).expect("the job listens");
        assert_eq!(
            endings.recv_timeout(Duration::from_secs(10)).expect("the job ended"),
            Ok(true)
        );
        // Freed before `finish` ran.
        assert_eq!(slot.controls(), None);
        slot.start(
            "third",
            3,
            || panic!("boom"),
            move |outcome| ended.send(outcome).expect("the test listens"),
        )
        .expect("started");
        let crashed = endings.recv_timeout(Duration::from_secs(10)).expect("the job ended");
        assert_eq!(crashed, Err("the third thread crashed: boom".to_string()));
        assert_eq!(slot.controls(), None);
    }

    /// A GPU's failure in a job is its line and what to do; another panic is a crash.
    #[test]
    fn a_gpu_failure_is_told_apart_from_a_crash() {
        let failed = run_catching("training", || -> () {
            std::panic::panic_any("Error while reading data: can't allocate buffer of size: 1048576".to_string())
        });
        assert_eq!(
            failed,
            Err(
                "the GPU could not allocate 1 MiB (out of memory): training stopped; its last checkpoint is kept: \
                 choose the CPU in Device (top right) and resume"
                    .to_string()
            )
        );
        let crashed = run_catching("live", || -> () { panic!("boom") });
        assert_eq!(crashed, Err("the live thread crashed: boom".to_string()));
    }

    #[test]
    fn a_replaced_job_ending_leaves_its_successor_in_the_slot() {
        let slot = JobSlot::<u32>::default();
        let (release, released) = channel::<()>();
        let (ended, endings) = channel();
        slot.start(
            "old",
            1,
            move || released.recv().is_ok(),
            move |_| ended.send(()).expect("the test listens"),
        )
        .expect("started");
        assert_eq!(slot.take(), Some(1));
        slot.start("new", 2, || std::thread::sleep(Duration::from_secs(2)), |_| {})
            .expect("started");
        release.send(()).expect("the job listens");
        endings.recv_timeout(Duration::from_secs(10)).expect("the job ended");
        assert_eq!(slot.controls(), Some(2));
    }
}
