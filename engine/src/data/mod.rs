//! Data in and out of the engine: frames of images and videos, FOMM's dataset layout with its
//! training-time augmentation, and the synthetic dataset generator.

pub mod augmentation;
pub mod dataset;
#[cfg(feature = "ffmpeg")]
pub mod ffmpeg;
pub mod loader;
pub mod synthetic;
pub mod video;

pub use dataset::{FramesDataset, Pair, Split};
pub use video::{Soundtrack, check_output, read_frames, read_image, read_video, write_frames, write_frames_with_audio};
