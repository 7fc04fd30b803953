//! What training reports while it runs: a step's losses, now and then a snapshot of the batch
//! ([`Snapshot`]: small CPU images and maps for a monitor to draw), checkpoints, warnings and
//! the end.

use std::path::PathBuf;

use crate::config::Variant;
use crate::render::Snapshot;

/// The loss columns of `losses.csv`, in order; a step leaves the ones its variant lacks empty.
pub const LOSS_NAMES: [&str; 14] = [
    "perceptual",
    "equivariance_value",
    "equivariance_jacobian",
    "warp_loss",
    "bg",
    "gen_gan",
    "feature_matching",
    "disc_gan",
    "disc_enc",
    "disc_dec",
    "disc_mix",
    "consistency",
    // TPSMM's AVD network: its keypoints' reconstruction.
    "rec_kp",
    "l1",
];

/// One training step, as reported.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Steps completed, this one included.
    pub step: usize,
    pub epoch: usize,
    /// The generator's learning rate this step (MultiStepLR).
    pub lr: f64,
    /// `(name, value)` in [`LOSS_NAMES`] order, only those computed. `l1` is the mean absolute
    /// error of the prediction (a measurement, not optimized).
    pub losses: Vec<(&'static str, f64)>,
    /// Whether the discriminator also trained on a CutMix batch.
    pub mixed: bool,
    /// A non-finite loss: the update was not applied.
    pub skipped: bool,
    /// Seconds this step took.
    pub seconds: f64,
}

impl StepReport {
    /// A step's report from the generator's and discriminator's losses and the L1 metric, in
    /// [`LOSS_NAMES`] order (the trainer sets the step and epoch).
    pub fn of_step(
        generator: Vec<(&'static str, f64)>,
        discriminator: Vec<(&'static str, f64)>,
        l1: f64,
        lr: f64,
        mixed: bool,
        skipped: bool,
        seconds: f64,
    ) -> Self {
        let mut losses: Vec<(&'static str, f64)> = generator.into_iter().chain(discriminator).collect();
        losses.push(("l1", l1));
        losses.sort_by_key(|(name, _)| LOSS_NAMES.iter().position(|n| n == name));
        Self {
            step: 0,
            epoch: 0,
            lr,
            losses,
            mixed,
            skipped,
            seconds,
        }
    }

    pub fn loss(&self, name: &str) -> Option<f64> {
        self.losses.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The generator's objective: everything but the discriminator's terms and the L1 metric.
    pub fn generator_total(&self) -> f64 {
        self.losses
            .iter()
            .filter(|(n, _)| !n.starts_with("disc") && *n != "consistency" && *n != "l1")
            .map(|(_, v)| v)
            .sum()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Reached its step count.
    Completed,
    /// Asked to stop (Ctrl-C, the UI); a checkpoint was written first.
    Stopped,
}

#[derive(Debug, Clone)]
pub enum TrainEvent {
    Started {
        /// Steps already done (non-zero when resumed).
        step: usize,
        total_steps: usize,
        steps_per_epoch: usize,
        variant: Variant,
        backend: String,
        /// Which perceptual loss is used (VGG19 or the fallback).
        perceptual: String,
        resumed_from: Option<PathBuf>,
    },
    Step(StepReport),
    Snapshot(Box<Snapshot>),
    Checkpoint {
        step: usize,
        path: PathBuf,
    },
    Warning(String),
    RolledBack {
        from_step: usize,
        to_step: usize,
        reason: String,
    },
    /// The run waits between steps until resumed.
    Paused {
        step: usize,
    },
    Resumed {
        step: usize,
    },
    Finished {
        step: usize,
        finish: Finish,
    },
}
