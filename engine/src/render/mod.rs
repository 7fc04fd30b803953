//! Pictures the engine writes next to its numbers: colour maps, training snapshot sheets, the
//! worst reconstructions of an evaluation and the ablation's comparison figure. Pure image code,
//! so that every output folder is complete whatever started the work (the CLI or the window),
//! and the window colours its maps with the same tables.

pub mod colormap;
pub mod sheet;
pub mod snapshot;

pub use colormap::Colormap;
pub use snapshot::{Map, Snapshot, SnapshotImage, SnapshotMap};
