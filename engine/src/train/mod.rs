//! Training (FOMM's or TPSMM's `train.py` with PriorityCut's discriminator): batches from a
//! dataset, the family's generator step then the discriminator step, Adam with the family's
//! MultiStepLR, checkpoints every N steps (atomic), exact resume, a guard against non-finite
//! losses, and events for a progress bar or a monitor.
//!
//! Every random draw of a step comes from `(seed, generation, step)` ([`crate::rng`]), so a run
//! resumed from a checkpoint continues exactly as the uninterrupted run would have.

pub mod avd;
pub mod events;
pub mod family;
pub mod learner;
pub mod losses;
pub mod monitor;
pub mod optim;
pub mod stages;
pub mod tpsmm;
pub mod unet;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use crate::backend::SelectedDevice;
use crate::checkpoint::{CheckpointState, RunDir};
use crate::data::loader::{BatchPlan, Prefetcher};
use crate::data::{FramesDataset, Split};
use crate::import::load_vgg19;
use crate::loss::{PerceptualFeatures, PerceptualLoss};
use crate::rng::Rng;
use crate::{EngineError, Result};

pub use avd::AvdLearner;
pub use events::{Finish, StepReport, TrainEvent};
pub use family::{FamilyTraining, StepLearner, TRAINING_FAMILIES, TrainingConfig, TrainingFamily};
pub use learner::{Learner, Networks};
pub use losses::LossLog;
pub use tpsmm::{TpsmmLearner, TpsmmNetworks};

/// Rollbacks tolerated before a diverging run is stopped.
pub const MAX_ROLLBACKS: usize = 3;
const STEP_STREAM: u64 = 3;

/// How to run a training: where the data is, where the run goes, and for how long.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub dataset: PathBuf,
    pub run_dir: PathBuf,
    /// Total steps; `None`: `num_epochs` epochs of the dataset.
    pub steps: Option<usize>,
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (the newest).
    pub keep_checkpoints: usize,
    /// Time between snapshots; `None`: never.
    pub snapshot_every: Option<Duration>,
    pub seed: u64,
    /// torchvision VGG19 weights for the perceptual loss; without, the pixel fallback.
    pub vgg19: Option<PathBuf>,
    /// Continue the run in `run_dir` from its latest checkpoint.
    pub resume: bool,
    /// The trained model a new run starts from (AVD training's, which needs one).
    pub start_from: Option<PathBuf>,
}

impl TrainOptions {
    pub fn new(dataset: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            dataset: dataset.into(),
            run_dir: run_dir.into(),
            steps: None,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            snapshot_every: Some(Duration::from_secs(3)),
            seed: 0,
            vgg19: None,
            resume: false,
            start_from: None,
        }
    }
}

/// A training run in progress.
#[derive(Debug)]
pub struct Trainer {
    pub learner: Box<dyn StepLearner>,
    /// What the run trains (the learner's config, read once).
    pub config: TrainingConfig,
    pub options: TrainOptions,
    pub run: RunDir,
    pub backend: String,
    dataset: Arc<FramesDataset>,
    plan: BatchPlan,
    prefetcher: Prefetcher,
    losses: LossLog,
    events: Sender<TrainEvent>,
    /// Steps completed.
    step: usize,
    total_steps: usize,
    nan_streak: usize,
    rollbacks: usize,
    last_snapshot: Option<Instant>,
    last_checkpoint: Option<usize>,
    resumed_from: Option<PathBuf>,
    /// Fault injection for tests of the NaN guard: from this step on, the driving frames are NaN.
    nan_from_step: Option<usize>,
    /// Fault injection for tests of the move to the CPU: at this step, the GPU runs out of memory.
    gpu_failure_at_step: Option<usize>,
}

/// Environment variable that makes every batch from the given step on non-finite, to exercise
/// the NaN guard end to end.
pub const INJECT_NAN_ENV: &str = "PRIORITYCUT_INJECT_NAN_FROM_STEP";

/// Environment variable that makes the GPU run out of memory at the start of the given step
/// (a real allocation failure: [`crate::backend::provoke_gpu_out_of_memory`]), to exercise the
/// move to the CPU end to end. Nothing happens on the CPU.
pub const INJECT_GPU_FAILURE_ENV: &str = "PRIORITYCUT_INJECT_GPU_FAILURE_AT_STEP";

impl Trainer {
    /// Prepares a run: opens the dataset, builds or restores the networks, and reports what it
    /// chose on `events` (warnings included). `config.variant()` is the model trained.
    pub fn new(
        config: TrainingConfig,
        options: TrainOptions,
        selected: &SelectedDevice,
        events: Sender<TrainEvent>,
    ) -> Result<Self> {
        let variant = config.variant();
        config.check()?;
        if !options.resume {
            config.check_start(options.start_from.as_deref())?;
        }
        if options.checkpoint_every == 0 {
            return Err(EngineError::Invalid("checkpoint_every must be at least 1 step".into()));
        }
        let warn = |message: String| {
            let _ = events.send(TrainEvent::Warning(message));
        };
        let (dataset, warnings) =
            FramesDataset::open(&options.dataset, Split::Train, config.frame_shape(), config.dataset())?;
        warnings.into_iter().for_each(warn);
        let (num_epochs, num_repeats, batch_size) = config.schedule();
        let plan = BatchPlan {
            samples: dataset.len(),
            num_repeats,
            batch_size,
            seed: options.seed,
            generation: 0,
        };
        if plan.steps_per_epoch() == 0 {
            return Err(EngineError::Invalid(format!(
                "{} has {} training samples × num_repeats {} = {} pairs per epoch, fewer than batch_size {}: \
                 lower train_params.batch_size or raise num_repeats",
                options.dataset.display(),
                plan.samples,
                plan.num_repeats,
                plan.samples * plan.num_repeats,
                plan.batch_size
            )));
        }

        let perceptual_features = match &options.vgg19 {
            Some(path) => {
                check_vgg_sizes(&config)?;
                PerceptualFeatures::Vgg19 {
                    net: load_vgg19(path, &selected.device.clone().autodiff())?,
                    weights: path.display().to_string(),
                }
            }
            None => PerceptualFeatures::PixelPyramid,
        };
        let (scales, perceptual_weights) = config.perceptual();
        let perceptual = PerceptualLoss::new(
            perceptual_features,
            scales,
            perceptual_weights,
            &selected.device.clone().autodiff(),
        );
        if perceptual.is_fallback() && perceptual.enabled() {
            warn(format!("perceptual loss: {}", perceptual.describe()));
        }

        let run = RunDir::open(&options.run_dir, !options.resume)?;
        let latest = if options.resume { run.latest() } else { None };
        if options.resume && latest.is_none() {
            warn(format!(
                "{} has no checkpoint yet: starting from scratch",
                options.run_dir.display()
            ));
        }
        // Initial weights depend on the seed only.
        selected.device.seed(options.seed);
        let mut learner = config.learner(perceptual, &selected.device)?;
        let mut trainer_plan = plan;
        let (step, rollbacks, resumed_from) = match latest {
            Some((_, dir)) => {
                let state = RunDir::read_state(&dir)?;
                if state.variant != variant {
                    return Err(EngineError::Invalid(format!(
                        "{} was trained as {}, not {variant}: pass --variant {}",
                        options.run_dir.display(),
                        state.variant,
                        state.variant
                    )));
                }
                if state.frame_shape != config.frame_shape() {
                    return Err(EngineError::Invalid(format!(
                        "{} was trained at frame shape {:?}, the config says {:?}",
                        options.run_dir.display(),
                        state.frame_shape,
                        config.frame_shape()
                    )));
                }
                learner.load(&dir)?;
                if state.perceptual != learner.perceptual().describe() {
                    warn(format!(
                        "the run was trained with {}, it continues with {}",
                        state.perceptual,
                        learner.perceptual().describe()
                    ));
                }
                if state.seed != options.seed {
                    warn(format!(
                        "continuing with the run's seed {} (not {})",
                        state.seed, options.seed
                    ));
                }
                trainer_plan.seed = state.seed;
                trainer_plan.generation = state.generation;
                (state.step, state.rollbacks, Some(dir))
            }
            None => {
                config.check_start(options.start_from.as_deref())?;
                if let Some(path) = &options.start_from {
                    learner.start_from(path)?;
                }
                (0, 0, None)
            }
        };
        run.write_config(&config.to_yaml())?;
        let losses = LossLog::open(&run, step)?;
        let dataset = Arc::new(dataset);
        let prefetcher = Prefetcher::start(dataset.clone(), trainer_plan.clone(), step, 2);
        let total_steps = options.steps.unwrap_or(num_epochs * trainer_plan.steps_per_epoch());
        let mut trainer = Self {
            learner,
            config,
            options,
            run,
            backend: selected.to_string(),
            dataset,
            plan: trainer_plan,
            prefetcher,
            losses,
            events,
            step,
            total_steps,
            nan_streak: 0,
            rollbacks,
            last_snapshot: None,
            last_checkpoint: resumed_from.as_ref().map(|_| step),
            resumed_from,
            nan_from_step: crate::backend::injection_point(INJECT_NAN_ENV),
            gpu_failure_at_step: crate::backend::injection_point(INJECT_GPU_FAILURE_ENV),
        };
        if trainer.resumed_from.is_none() {
            // A starting point to roll back to, should the very first steps diverge.
            trainer.save_checkpoint()?;
        }
        Ok(trainer)
    }

    pub fn step(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.plan.steps_per_epoch()
    }

    fn emit(&self, event: TrainEvent) {
        // A monitor that went away does not stop training.
        let _ = self.events.send(event);
    }

    fn state(&self) -> CheckpointState {
        CheckpointState {
            format: 1,
            step: self.step,
            epoch: self.plan.epoch_of(self.step),
            seed: self.plan.seed,
            generation: self.plan.generation,
            variant: self.learner.variant(),
            perceptual: self.learner.perceptual().describe(),
            backend: self.backend.clone(),
            frame_shape: self.config.frame_shape(),
            rollbacks: self.rollbacks,
        }
    }

    /// Writes a checkpoint of the current step (atomically) and reports it.
    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let learner = &self.learner;
        let path = self
            .run
            .write_checkpoint(&self.state(), self.options.keep_checkpoints, |dir| learner.save(dir))?;
        self.last_checkpoint = Some(self.step);
        self.emit(TrainEvent::Checkpoint {
            step: self.step,
            path: path.clone(),
        });
        Ok(path)
    }

    /// Checkpoints unless the last steps were non-finite: a checkpoint is a point to come back
    /// to, and the one before the trouble stays the latest.
    fn checkpoint_if_healthy(&mut self) -> Result<()> {
        if self.nan_streak == 0 {
            self.save_checkpoint()?;
        } else {
            let last = self.last_checkpoint.map_or("none".to_string(), |s| s.to_string());
            self.emit(TrainEvent::Warning(format!(
                "no checkpoint at step {}: the last {} steps were non-finite (latest good checkpoint: step {last})",
                self.step, self.nan_streak
            )));
        }
        Ok(())
    }

    /// One training step on the next batch. Non-finite losses skip the update; more than
    /// `nan_patience` of them in a row roll the run back to its last checkpoint.
    fn train_step(&mut self) -> Result<StepReport> {
        let batch = self.prefetcher.next_batch()?;
        if batch.step != self.step {
            return Err(EngineError::Invalid(format!(
                "data for step {} arrived at step {}",
                batch.step, self.step
            )));
        }
        for warning in &batch.warnings {
            self.emit(TrainEvent::Warning(warning.clone()));
        }
        let device = self.learner.device().clone();
        if self.gpu_failure_at_step == Some(self.step + 1) {
            crate::backend::provoke_gpu_out_of_memory(&device);
        }
        let source = learner::batch_tensor(batch.source, batch.shape, &device);
        let mut driving = learner::batch_tensor(batch.driving, batch.shape, &device);
        if self.nan_from_step.is_some_and(|from| self.step + 1 >= from) {
            driving = driving * f32::NAN;
        }
        let epoch = self.plan.epoch_of(self.step);
        let mut rng = Rng::derive(&[self.plan.seed, self.plan.generation, STEP_STREAM, self.step as u64]);
        let due = match (self.options.snapshot_every, self.last_snapshot) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(every), Some(last)) => last.elapsed() >= every,
        };
        let (mut report, snapshot) = self.learner.step(source, driving, epoch, &mut rng, due);
        self.step += 1;
        report.step = self.step;
        report.epoch = epoch;
        self.losses.append(&report)?;
        self.emit(TrainEvent::Step(report.clone()));
        if let Some(mut snapshot) = snapshot {
            snapshot.step = self.step;
            self.last_snapshot = Some(Instant::now());
            // The run folder keeps the sheet whoever watches; a full disk does not stop training.
            if let Err(error) = self.run.write_snapshot(&snapshot) {
                self.emit(TrainEvent::Warning(format!("snapshot not written: {error}")));
            }
            self.emit(TrainEvent::Snapshot(Box::new(snapshot)));
        }
        if report.skipped {
            self.nan_streak += 1;
            let values: Vec<String> = report.losses.iter().map(|(n, v)| format!("{n} {v}")).collect();
            self.emit(TrainEvent::Warning(format!(
                "step {}: non-finite loss, update skipped ({})",
                self.step,
                values.join(", ")
            )));
            if self.nan_streak > self.config.prioritycut().nan_patience {
                self.roll_back()?;
            }
        } else {
            self.nan_streak = 0;
        }
        Ok(report)
    }

    /// Reloads the latest checkpoint after repeated non-finite losses, and draws other batches
    /// from there on.
    fn roll_back(&mut self) -> Result<()> {
        let from = self.step;
        let Some((to, dir)) = self.run.latest() else {
            return Err(EngineError::Invalid(format!(
                "training diverged at step {from} (non-finite losses) and there is no checkpoint to roll back to"
            )));
        };
        if self.rollbacks >= MAX_ROLLBACKS {
            return Err(EngineError::Invalid(format!(
                "training diverged at step {from}: non-finite losses again after {} rollbacks; \
                 lower the learning rates (train_params.lr_*)",
                self.rollbacks
            )));
        }
        self.learner.load(&dir)?;
        self.rollbacks += 1;
        self.step = to;
        self.nan_streak = 0;
        self.plan.generation += 1;
        self.prefetcher = Prefetcher::start(self.dataset.clone(), self.plan.clone(), to, 2);
        self.losses = LossLog::open(&self.run, to)?;
        self.emit(TrainEvent::RolledBack {
            from_step: from,
            to_step: to,
            reason: format!(
                "more than {} non-finite steps in a row; rolled back to the checkpoint of step {to} (rollback {} of {MAX_ROLLBACKS})",
                self.config.prioritycut().nan_patience, self.rollbacks
            ),
        });
        Ok(())
    }

    /// Says what is about to train (the first event of a run).
    fn announce(&self) {
        self.emit(TrainEvent::Started {
            step: self.step,
            total_steps: self.total_steps,
            steps_per_epoch: self.plan.steps_per_epoch(),
            variant: self.learner.variant(),
            backend: self.backend.clone(),
            perceptual: self.learner.perceptual().describe(),
            resumed_from: self.resumed_from.clone(),
        });
    }

    /// The periodic checkpoint, when this step is due one.
    fn checkpoint_if_due(&mut self) -> Result<()> {
        if self.step.is_multiple_of(self.options.checkpoint_every) {
            self.checkpoint_if_healthy()?;
        }
        Ok(())
    }

    /// Ends the run: the last step is checkpointed (unless just done, or non-finite) and
    /// [`TrainEvent::Finished`] is sent.
    fn finish(&mut self, finish: Finish) -> Result<Finish> {
        if self.last_checkpoint != Some(self.step) {
            self.checkpoint_if_healthy()?;
        }
        self.emit(TrainEvent::Finished {
            step: self.step,
            finish,
        });
        Ok(finish)
    }

    /// Trains until the step count is reached or `controls` says stop, obeying pause, resume
    /// and checkpoint-now between steps; either way the last step is checkpointed before
    /// returning. The one step loop of every driver (CLI, window, ablation).
    pub fn run(&mut self, controls: &mut impl ControlSource) -> Result<Finish> {
        self.announce();
        let mut paused = false;
        loop {
            let control = if paused { Some(controls.wait()) } else { controls.poll() };
            match control {
                Some(TrainControl::Pause) => {
                    if !paused {
                        paused = true;
                        self.emit(TrainEvent::Paused { step: self.step });
                    }
                    continue;
                }
                Some(TrainControl::Resume) if paused => {
                    paused = false;
                    self.emit(TrainEvent::Resumed { step: self.step });
                }
                Some(TrainControl::CheckpointNow) => {
                    self.save_checkpoint()?;
                }
                Some(TrainControl::Stop) => return self.finish(Finish::Stopped),
                Some(TrainControl::Resume) | None => {}
            }
            if paused {
                continue;
            }
            if self.step >= self.total_steps {
                return self.finish(Finish::Completed);
            }
            self.train_step()?;
            self.checkpoint_if_due()?;
        }
    }
}

/// What a driver may ask of a running training; obeyed between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainControl {
    Pause,
    Resume,
    CheckpointNow,
    Stop,
}

/// Where a [`Trainer::run`] takes its controls from: a channel (the window) or a stop flag
/// (Ctrl-C in the CLI, the ablation).
pub trait ControlSource {
    /// A control if one is waiting.
    fn poll(&mut self) -> Option<TrainControl>;
    /// Blocks until a control comes (while paused).
    fn wait(&mut self) -> TrainControl;
}

impl ControlSource for Receiver<TrainControl> {
    fn poll(&mut self) -> Option<TrainControl> {
        match self.try_recv() {
            Ok(control) => Some(control),
            Err(TryRecvError::Empty) => None,
            // Nobody can resume or stop the run any more: stop it cleanly.
            Err(TryRecvError::Disconnected) => Some(TrainControl::Stop),
        }
    }

    fn wait(&mut self) -> TrainControl {
        self.recv().unwrap_or(TrainControl::Stop)
    }
}

/// A control source lent for one run (a run moved to the CPU goes on with the same controls).
impl<C: ControlSource + ?Sized> ControlSource for &mut C {
    fn poll(&mut self) -> Option<TrainControl> {
        (**self).poll()
    }

    fn wait(&mut self) -> TrainControl {
        (**self).wait()
    }
}

impl ControlSource for &AtomicBool {
    fn poll(&mut self) -> Option<TrainControl> {
        self.load(Ordering::Relaxed).then_some(TrainControl::Stop)
    }

    fn wait(&mut self) -> TrainControl {
        while !self.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        TrainControl::Stop
    }
}

/// Trains `config` on a thread of its own and hands every event to `on_event` on the calling
/// thread as it happens (progress bar, window, ablation). Returns how the run ended and the
/// steps done; [`EngineError::Gpu`] when the GPU itself failed under it (the run's last
/// checkpoint stands: resumed on the CPU, it goes on from there).
pub fn train(
    config: TrainingConfig,
    options: TrainOptions,
    selected: &SelectedDevice,
    mut controls: impl ControlSource + Send,
    mut on_event: impl FnMut(TrainEvent),
) -> Result<(Finish, usize)> {
    let (sender, receiver) = channel();
    std::thread::scope(|scope| {
        let trainer = std::thread::Builder::new()
            .name("prioritycut-train".into())
            .spawn_scoped(scope, move || -> Result<(Finish, usize)> {
                crate::backend::catch_gpu_failure(&selected.device, || {
                    let mut trainer = Trainer::new(config, options, selected, sender)?;
                    let finish = trainer.run(&mut controls)?;
                    Ok((finish, trainer.step()))
                })
                .unwrap_or_else(|failure| Err(EngineError::Gpu(failure)))
            })
            .map_err(|e| EngineError::Invalid(format!("cannot start the training thread: {e}")))?;
        // Ends when the trainer drops its sender: finished, failed or crashed.
        for event in receiver {
            on_event(event);
        }
        match trainer.join() {
            Ok(outcome) => outcome,
            Err(panic) => Err(EngineError::Invalid(format!(
                "the training thread crashed: {}",
                crate::error::panic_message(panic)
            ))),
        }
    })
}

/// VGG19 max-pools four times before relu5_1: every level of the perceptual pyramid must keep
/// at least 16 pixels a side.
pub(crate) fn check_vgg_sizes(config: &TrainingConfig) -> Result<()> {
    let [h, w, _] = config.frame_shape();
    for &scale in config.perceptual().0 {
        let (sh, sw) = (crate::config::scaled(h, scale), crate::config::scaled(w, scale));
        if sh < 16 || sw < 16 {
            return Err(EngineError::Invalid(format!(
                "train_params.scales: scale {scale} of the {h}x{w} frame is {sh}x{sw}, too small for VGG19 \
                 (at least 16x16); drop that scale"
            )));
        }
    }
    Ok(())
}
