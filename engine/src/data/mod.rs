//! Data in and out of the engine: reading and writing frames of images and videos.

pub mod video;

pub use video::{read_frames, read_image, resize_to, write_frames};
