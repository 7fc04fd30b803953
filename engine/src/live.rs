//! Live input for puppeteering: a webcam (nokhwa) or a video file standing in for one, read on a
//! capture thread that keeps only the newest frame (frames the model has no time for are
//! dropped, never queued), the square crop of it the model sees, and a frame-rate meter.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::data::ffmpeg::VideoReader;
use crate::data::read_video;
use crate::data::video::{VIDEO_CONTAINERS, extension};
use crate::{EngineError, Result};

/// A camera attached to this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    pub index: u32,
    pub name: String,
}

/// The cameras nokhwa finds; an empty list where there are none (or no camera support).
pub fn list_cameras() -> Vec<CameraInfo> {
    nokhwa::query(nokhwa::utils::ApiBackend::Auto)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|info| match info.index() {
            nokhwa::utils::CameraIndex::Index(index) => Some(CameraInfo {
                index: *index,
                name: info.human_name(),
            }),
            nokhwa::utils::CameraIndex::String(_) => None,
        })
        .collect()
}

/// Where live frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSource {
    Webcam {
        index: u32,
    },
    /// A video (any format the engine reads), looped and paced at its frame rate.
    VideoFile(PathBuf),
}

/// Frames one at a time.
pub trait FrameSource {
    /// The next frame, waiting for it as a camera does.
    fn next_frame(&mut self) -> Result<RgbImage>;
}

struct Webcam {
    camera: nokhwa::Camera,
    index: u32,
}

impl FrameSource for Webcam {
    fn next_frame(&mut self) -> Result<RgbImage> {
        let fail = |e: nokhwa::NokhwaError| EngineError::Media {
            path: PathBuf::from(format!("camera {}", self.index)),
            message: e.to_string(),
        };
        let buffer = self.camera.frame().map_err(fail)?;
        let image = buffer.decode_image::<nokhwa::pixel_format::RgbFormat>().map_err(fail)?;
        let (w, h) = image.dimensions();
        RgbImage::from_raw(w, h, image.into_raw()).ok_or_else(|| EngineError::Media {
            path: PathBuf::from(format!("camera {}", self.index)),
            message: "a frame of the wrong size".into(),
        })
    }
}

/// A video file played like a camera: frames at the file's rate, from the start again at the end.
struct VideoCamera {
    path: PathBuf,
    frames: VideoFrames,
    interval: Duration,
    next_due: Instant,
}

enum VideoFrames {
    /// Compressed videos are decoded as they play.
    Stream(Box<VideoReader>),
    /// GIFs, strips, frame folders.
    Decoded { frames: Vec<RgbImage>, position: usize },
}

impl VideoCamera {
    fn open(path: &std::path::Path) -> Result<Self> {
        let (frames, fps) = if VIDEO_CONTAINERS.contains(&extension(path).as_str()) {
            let reader = VideoReader::open(path)?;
            let fps = reader.fps();
            (VideoFrames::Stream(Box::new(reader)), fps)
        } else {
            let (frames, fps) = read_video(path)?;
            (VideoFrames::Decoded { frames, position: 0 }, fps)
        };
        Ok(Self {
            path: path.to_path_buf(),
            frames,
            interval: Duration::from_secs_f64(1.0 / fps.clamp(1.0, 120.0)),
            next_due: Instant::now(),
        })
    }

    fn read(&mut self) -> Result<RgbImage> {
        match &mut self.frames {
            VideoFrames::Decoded { frames, position } => {
                let frame = frames[*position % frames.len()].clone();
                *position += 1;
                Ok(frame)
            }
            VideoFrames::Stream(reader) => match reader.next_frame()? {
                Some(frame) => Ok(frame),
                None => {
                    **reader = VideoReader::open(&self.path)?;
                    reader
                        .next_frame()?
                        .ok_or_else(|| EngineError::media(&self.path, "contains no frames"))
                }
            },
        }
    }
}

impl FrameSource for VideoCamera {
    fn next_frame(&mut self) -> Result<RgbImage> {
        let now = Instant::now();
        if self.next_due > now {
            std::thread::sleep(self.next_due - now);
        }
        self.next_due = self.next_due.max(now) + self.interval;
        self.read()
    }
}

impl CameraSource {
    /// Opens the source: a missing camera or an unreadable file is an error saying so.
    pub fn open(&self) -> Result<Box<dyn FrameSource>> {
        match self {
            CameraSource::VideoFile(path) => Ok(Box::new(VideoCamera::open(path)?)),
            CameraSource::Webcam { index } => {
                let name = PathBuf::from(format!("camera {index}"));
                if !list_cameras().iter().any(|c| c.index == *index) {
                    return Err(EngineError::Media {
                        path: name,
                        message: "no such camera on this machine (use a video file as the camera instead)".into(),
                    });
                }
                let requested = nokhwa::utils::RequestedFormat::new::<nokhwa::pixel_format::RgbFormat>(
                    nokhwa::utils::RequestedFormatType::AbsoluteHighestFrameRate,
                );
                let fail = |e: nokhwa::NokhwaError| EngineError::Media {
                    path: name.clone(),
                    message: e.to_string(),
                };
                let mut camera =
                    nokhwa::Camera::new(nokhwa::utils::CameraIndex::Index(*index), requested).map_err(fail)?;
                camera.open_stream().map_err(fail)?;
                Ok(Box::new(Webcam { camera, index: *index }))
            }
        }
    }
}

/// A frame and when it was captured.
#[derive(Debug, Clone)]
pub struct Captured {
    pub image: RgbImage,
    pub at: Instant,
}

#[derive(Default)]
struct Slot {
    frame: Option<Captured>,
    error: Option<EngineError>,
}

/// The newest frame of a source, captured on its own thread.
pub struct LatestFrame {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LatestFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatestFrame")
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl LatestFrame {
    /// Opens `source` on a capture thread (a camera is used on the thread that opened it) and
    /// starts capturing; an error opening it is returned here.
    pub fn start(source: CameraSource) -> Result<Self> {
        let shared = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, opened) = channel();
        let (thread_shared, thread_dropped, thread_stop) = (shared.clone(), dropped.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("prioritycut-capture".into())
            .spawn(move || {
                let mut frames = match source.open() {
                    Ok(frames) => {
                        let _ = ready.send(Ok(()));
                        frames
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let (lock, signal) = &*thread_shared;
                while !thread_stop.load(Ordering::Relaxed) {
                    let next = frames.next_frame();
                    let Ok(mut slot) = lock.lock() else { return };
                    match next {
                        Ok(image) => {
                            if slot.frame.is_some() {
                                thread_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            slot.frame = Some(Captured {
                                image,
                                at: Instant::now(),
                            });
                        }
                        Err(error) => {
                            slot.error = Some(error);
                            signal.notify_all();
                            return;
                        }
                    }
                    signal.notify_all();
                }
            })
            .map_err(|e| EngineError::Invalid(format!("cannot start the capture thread: {e}")))?;
        opened
            .recv()
            .map_err(|_| EngineError::Invalid("the capture thread stopped while opening the camera".into()))??;
        Ok(Self {
            shared,
            dropped,
            stop,
            thread: Some(thread),
        })
    }

    /// Takes the newest frame, waiting up to `timeout` for one; a capture error ends it.
    pub fn wait(&self, timeout: Duration) -> Result<Option<Captured>> {
        let (lock, signal) = &*self.shared;
        let poisoned = || EngineError::Invalid("the capture state is unavailable".into());
        let mut slot = lock.lock().map_err(|_| poisoned())?;
        if slot.frame.is_none() && slot.error.is_none() {
            slot = signal.wait_timeout(slot, timeout).map_err(|_| poisoned())?.0;
        }
        if let Some(error) = slot.error.take() {
            return Err(error);
        }
        Ok(slot.frame.take())
    }

    /// Frames replaced before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for LatestFrame {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The square of the camera frame the model sees: centre and side, as fractions of the frame's
/// width, height and shorter side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub centre_x: f32,
    pub centre_y: f32,
    /// Side over the shorter side of the frame, in (0, 1].
    pub size: f32,
}

impl Default for CropBox {
    /// The largest centred square.
    fn default() -> Self {
        Self {
            centre_x: 0.5,
            centre_y: 0.5,
            size: 1.0,
        }
    }
}

impl CropBox {
    /// (x, y, side) in pixels of a `width × height` frame, kept inside it.
    pub fn pixels(&self, width: u32, height: u32) -> (u32, u32, u32) {
        let shorter = width.min(height).max(1) as f32;
        let side = (self.size.clamp(0.05, 1.0) * shorter).round().max(1.0) as u32;
        let x = (self.centre_x * width as f32 - side as f32 / 2.0).round();
        let y = (self.centre_y * height as f32 - side as f32 / 2.0).round();
        let x = x.clamp(0.0, (width - side.min(width)) as f32) as u32;
        let y = y.clamp(0.0, (height - side.min(height)) as f32) as u32;
        (x, y, side)
    }

    /// The crop of `frame`, mirrored left-right first if asked (as a selfie view is).
    pub fn apply(&self, frame: &RgbImage, mirror: bool) -> RgbImage {
        let view = if mirror {
            image::imageops::flip_horizontal(frame)
        } else {
            frame.clone()
        };
        let (x, y, side) = self.pixels(view.width(), view.height());
        image::imageops::crop_imm(&view, x, y, side, side).to_image()
    }
}

/// Frames per second over the recent past (exponential average of intervals).
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    last: Option<Instant>,
    interval: Option<f64>,
}

impl RateMeter {
    /// Marks a frame; returns the current rate (0 until two frames were seen).
    pub fn tick(&mut self) -> f64 {
        let now = Instant::now();
        if let Some(last) = self.last {
            let dt = (now - last).as_secs_f64();
            self.interval = Some(match self.interval {
                Some(avg) => 0.8 * avg + 0.2 * dt,
                None => dt,
            });
        }
        self.last = Some(now);
        self.interval.map_or(0.0, |dt| if dt > 0.0 { 1.0 / dt } else { 0.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_box_stays_inside_and_mirrors() {
        let frame = RgbImage::from_fn(40, 20, |x, _| image::Rgb([x as u8, 0, 0]));
        assert_eq!(CropBox::default().pixels(40, 20), (10, 0, 20));
        let corner = CropBox {
            centre_x: 0.0,
            centre_y: 0.0,
            size: 0.5,
        };
        assert_eq!(corner.pixels(40, 20), (0, 0, 10));
        let crop = CropBox::default().apply(&frame, false);
        assert_eq!(crop.dimensions(), (20, 20));
        assert_eq!(crop.get_pixel(0, 0)[0], 10);
        let mirrored = CropBox::default().apply(&frame, true);
        assert_eq!(mirrored.get_pixel(0, 0)[0], 29);
    }

    #[test]
    fn a_slow_consumer_gets_the_newest_frame_and_the_rest_are_dropped() {
        let dir = crate::test_support::temp_dir("live");
        let clip = dir.join("clip.gif");
        let frames: Vec<RgbImage> = (0..10)
            .map(|i| RgbImage::from_pixel(8, 8, image::Rgb([i * 20, 0, 0])))
            .collect();
        crate::data::write_frames(&clip, &frames, 100.0, |_| {}).expect("gif");
        let latest = LatestFrame::start(CameraSource::VideoFile(clip)).expect("start");
        let first = latest.wait(Duration::from_secs(5)).expect("ok").expect("a frame");
        std::thread::sleep(Duration::from_millis(200));
        let later = latest.wait(Duration::from_secs(5)).expect("ok").expect("a frame");
        assert!(later.at > first.at);
        assert!(latest.dropped() >= 5, "dropped {}", latest.dropped());
    }

    #[test]
    fn missing_camera_and_unreadable_file_are_clear_errors() {
        let err = LatestFrame::start(CameraSource::Webcam { index: 97 }).expect_err("no camera 97");
        assert!(err.to_string().contains("camera 97"), "{err}");
        let err = LatestFrame::start(CameraSource::VideoFile("/nonexistent/clip.mp4".into())).expect_err("missing");
        assert!(err.to_string().contains("clip.mp4"), "{err}");
    }

    #[test]
    fn rate_meter_reports_the_frame_rate() {
        let mut meter = RateMeter::default();
        assert_eq!(meter.tick(), 0.0);
        std::thread::sleep(Duration::from_millis(20));
        let fps = meter.tick();
        assert!(fps > 10.0 && fps < 60.0, "{fps}");
    }
}
