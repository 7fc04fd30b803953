//! The PriorityCut engine: the First Order Motion Model (FOMM) networks in burn, the U-Net
//! discriminator and the PriorityCut augmentation, training, relative motion transfer, import of
//! official FOMM checkpoints, and the reference checks that prove the port computes what the
//! official PyTorch code computes.
//!
//! The engine never depends on a UI. Devices are chosen at run time ([`backend`]).

pub mod ablation;
pub mod animate;
pub mod augment;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod evaluators;
pub mod faces;
pub mod family;
pub mod files;
pub mod frames;
pub mod import;
pub mod live;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod reference;
pub mod render;
pub mod rng;
pub mod stream;
pub mod train;
pub mod worker;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod test_support;

pub use burn;
pub use error::{EngineError, Result};
pub use prioritycut_kernels as kernels;
