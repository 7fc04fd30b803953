//! Augmentations of the training step: PriorityCut and vanilla CutMix for the U-Net
//! discriminator's consistency regularization, and FOMM's random TPS transform for the
//! equivariance loss.

pub mod cutmix;
pub mod prioritycut;
pub mod transform;

pub use cutmix::cutmix_mask;
pub use prioritycut::{PriorityCutMaps, mix, priority_cut};
pub use transform::{RandomTps, TpsForm};
