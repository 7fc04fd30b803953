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

#[cfg(feature = "ffmpeg")]
use crate::data::ffmpeg::VideoReader;
use crate::data::read_video;
#[cfg(feature = "ffmpeg")]
use crate::data::video::{VIDEO_CONTAINERS, extension};
use crate::faces::crop::INCREASE_AREA;
use crate::faces::{Face, FaceCrop};
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
#[derive(Debug, Clone, PartialEq)]
pub enum CameraSource {
    Webcam {
        index: u32,
    },
    /// A video (any format the engine reads), looped and paced at its frame rate.
    VideoFile(PathBuf),
    /// A video looped and paced at `fps` instead of its own rate: a camera of that rate for a
    /// benchmark, from a clip of any rate and format.
    Clip {
        path: PathBuf,
        fps: f64,
    },
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

/// The time between frames at `fps`, kept to the 1–120 frames/s a camera delivers.
fn frame_interval(fps: f64) -> Duration {
    Duration::from_secs_f64(1.0 / fps.clamp(1.0, 120.0))
}

/// A video file played like a camera: frames at the file's rate, from the start again at the end.
struct VideoCamera {
    /// Opened again at the end of a compressed video.
    #[cfg_attr(not(feature = "ffmpeg"), allow(dead_code))]
    path: PathBuf,
    frames: VideoFrames,
    interval: Duration,
    next_due: Instant,
}

enum VideoFrames {
    /// Compressed videos are decoded as they play.
    #[cfg(feature = "ffmpeg")]
    Stream(Box<VideoReader>),
    /// GIFs, strips, frame folders.
    Decoded { frames: Vec<RgbImage>, position: usize },
}

impl VideoCamera {
    fn open(path: &std::path::Path) -> Result<Self> {
        #[cfg(feature = "ffmpeg")]
        if VIDEO_CONTAINERS.contains(&extension(path).as_str()) {
            let reader = VideoReader::open(path)?;
            let fps = reader.fps();
            return Ok(Self::playing(path, VideoFrames::Stream(Box::new(reader)), fps));
        }
        let (frames, fps) = read_video(path)?;
        Ok(Self::playing(path, VideoFrames::Decoded { frames, position: 0 }, fps))
    }

    fn playing(path: &std::path::Path, frames: VideoFrames, fps: f64) -> Self {
        Self {
            path: path.to_path_buf(),
            frames,
            interval: frame_interval(fps),
            next_due: Instant::now(),
        }
    }

    fn read(&mut self) -> Result<RgbImage> {
        match &mut self.frames {
            VideoFrames::Decoded { frames, position } => {
                let frame = frames[*position % frames.len()].clone();
                *position += 1;
                Ok(frame)
            }
            #[cfg(feature = "ffmpeg")]
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
            CameraSource::Clip { path, fps } => {
                let mut camera = VideoCamera::open(path)?;
                camera.interval = frame_interval(*fps);
                Ok(Box::new(camera))
            }
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

    /// The square cut out of `view` (the camera frame as shown, mirrored or not).
    pub fn cut(&self, view: &RgbImage) -> RgbImage {
        let (x, y, side) = self.pixels(view.width(), view.height());
        image::imageops::crop_imm(view, x, y, side, side).to_image()
    }

    /// The box whose square is centred on (`centre_x`, `centre_y`) with side `side`, all in
    /// pixels of a `width × height` frame.
    pub fn from_pixels(centre_x: f32, centre_y: f32, side: f32, width: u32, height: u32) -> Self {
        let shorter = width.min(height).max(1) as f32;
        Self {
            centre_x: centre_x / width.max(1) as f32,
            centre_y: centre_y / height.max(1) as f32,
            size: (side / shorter).clamp(0.05, 1.0),
        }
    }
}

/// The camera frame as the user sees it: mirrored left-right if asked (as a selfie view is).
pub fn camera_view(frame: RgbImage, mirror: bool) -> RgbImage {
    if mirror {
        image::imageops::flip_horizontal(&frame)
    } else {
        frame
    }
}

/// The crop square following the face in the camera (Live's "follow the face"): the square
/// `crop-video.py` would cut around the largest face, eased towards where the face is so
/// that it glides rather than jumps, and held still against detection noise and while the face
/// is lost. Detection runs a few times a second, not every frame: a head moves slowly next
/// to the frame rate, and MTCNN costs as much as a small model's frame.
#[derive(Debug, Clone, Default)]
pub struct FaceFollower {
    /// Where the square goes: centre x, centre y, side, in camera pixels.
    target: Option<[f32; 3]>,
    /// Where it is now.
    square: Option<[f32; 3]>,
    face: Option<Face>,
    last_detection: Option<Instant>,
    last_step: Option<Instant>,
}

impl FaceFollower {
    /// Faces are looked for at most this often.
    pub const DETECTION_INTERVAL: Duration = Duration::from_millis(200);
    /// Detection runs on a copy of the camera frame no larger than this (longer side): a face
    /// in front of a webcam is large, and the pyramid is four times cheaper than at 640.
    pub const DETECTION_SIDE: u32 = 320;
    /// The square covers this share of the distance to the face per [`FaceFollower::EASE`].
    const EASE: Duration = Duration::from_millis(250);
    /// A face that moved less than this share of the square's side is where it was: MTCNN's
    /// boxes wobble by a few pixels from frame to frame.
    const DEAD_ZONE: f32 = 0.05;

    pub fn detection_due(&self, now: Instant) -> bool {
        self.last_detection
            .is_none_or(|last| now.duration_since(last) >= Self::DETECTION_INTERVAL)
    }

    /// A detection's faces: the largest one's square becomes the target, unless it is within
    /// the dead zone of the current one. No face: the square holds.
    pub fn observe(&mut self, faces: &[Face], now: Instant) {
        self.last_detection = Some(now);
        let Some(face) = crate::faces::largest(faces) else {
            return;
        };
        self.face = Some(*face);
        let crop = FaceCrop::around(face.bbox, INCREASE_AREA);
        let side = crop.side as f32;
        let found = [crop.x0 as f32 + side / 2.0, crop.y0 as f32 + side / 2.0, side];
        let moved = |from: [f32; 3]| {
            let limit = Self::DEAD_ZONE * from[2];
            (found[0] - from[0]).abs() > limit
                || (found[1] - from[1]).abs() > limit
                || (found[2] - from[2]).abs() > limit
        };
        if self.target.is_none_or(moved) {
            self.target = Some(found);
        }
        if self.square.is_none() {
            self.square = self.target;
            self.last_step = Some(now);
        }
    }

    /// Moves the square towards the target for the time since the last step.
    pub fn step(&mut self, now: Instant) {
        let (Some(target), Some(square)) = (self.target, self.square.as_mut()) else {
            return;
        };
        let dt = self
            .last_step
            .map_or(0.0, |last| now.duration_since(last).as_secs_f32());
        self.last_step = Some(now);
        let share = 1.0 - (-dt / Self::EASE.as_secs_f32()).exp();
        for (value, goal) in square.iter_mut().zip(target) {
            *value += share * (goal - *value);
        }
    }

    /// The square as a crop of a `width × height` frame; `None` until a face was found.
    pub fn crop_box(&self, width: u32, height: u32) -> Option<CropBox> {
        self.square
            .map(|[x, y, side]| CropBox::from_pixels(x, y, side, width, height))
    }

    /// The face last found.
    pub fn face(&self) -> Option<&Face> {
        self.face.as_ref()
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
        let crop = CropBox::default().cut(&frame);
        assert_eq!(crop.dimensions(), (20, 20));
        assert_eq!(crop.get_pixel(0, 0)[0], 10);
        let mirrored = CropBox::default().cut(&camera_view(frame, true));
        assert_eq!(mirrored.get_pixel(0, 0)[0], 29);
    }

    fn face_at(x0: f32, y0: f32, side: f32) -> Face {
        Face {
            bbox: [x0, y0, x0 + side, y0 + side],
            score: 0.99,
            landmarks: [[x0 + side / 2.0, y0 + side / 2.0]; 5],
        }
    }

    #[test]
    fn the_followed_square_jumps_to_the_first_face_then_eases_and_ignores_wobble() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut follower = FaceFollower::default();
        assert!(follower.detection_due(start));
        assert_eq!(follower.crop_box(640, 480), None, "no square before a face");
        follower.observe(&[], start);
        assert_eq!(follower.crop_box(640, 480), None);
        let interval = FaceFollower::DETECTION_INTERVAL;
        assert!(!follower.detection_due(start + interval / 2));
        assert!(follower.detection_due(start + interval));

        // A 100 px face at (270, 190): crop-video's square of 120 px on its centre (320, 240).
        follower.observe(&[face_at(270.0, 190.0, 100.0)], at(100));
        let first = follower.crop_box(640, 480).expect("a square");
        assert_eq!(first.pixels(640, 480), (260, 180, 120));

        // A few pixels of wobble: the square keeps still.
        follower.observe(&[face_at(273.0, 188.0, 102.0)], at(200));
        follower.step(at(200));
        assert_eq!(follower.crop_box(640, 480), Some(first));

        // The face moves 100 px right: the square follows, part of the way at first.
        follower.observe(&[face_at(370.0, 190.0, 100.0)], at(300));
        follower.step(at(300));
        let (x, _, _) = follower.crop_box(640, 480).expect("square").pixels(640, 480);
        assert!(x > 260 && x < 360, "eased part of the way: {x}");
        // Lost for a while: it holds its target and arrives there.
        for t in 4..40 {
            follower.observe(&[], at(t * 100));
            follower.step(at(t * 100));
        }
        let (x, y, side) = follower.crop_box(640, 480).expect("square").pixels(640, 480);
        assert!((359..=361).contains(&x) && y == 180 && side == 120, "{x} {y} {side}");
        assert_eq!(follower.face().map(|f| f.bbox[0]), Some(370.0));
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
    fn a_clip_plays_at_the_rate_asked_not_its_own() {
        let dir = crate::test_support::temp_dir("live-clip");
        let clip = dir.join("clip.gif");
        let frames: Vec<RgbImage> = (0..3)
            .map(|i| RgbImage::from_pixel(8, 8, image::Rgb([i * 20, 0, 0])))
            .collect();
        crate::data::write_frames(&clip, &frames, 100.0, |_| {}).expect("gif");
        let mut camera = CameraSource::Clip { path: clip, fps: 20.0 }.open().expect("open");
        let start = Instant::now();
        // Five frames at 20 frames/s: four intervals of 50 ms after the first; looped past the
        // clip's three frames.
        let seen: Vec<u8> = (0..5)
            .map(|_| camera.next_frame().expect("frame").get_pixel(0, 0)[0])
            .collect();
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(195),
            "{elapsed:?}: paced at the clip's 100 frames/s"
        );
        assert_eq!(seen, [0, 20, 40, 0, 20]);
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
