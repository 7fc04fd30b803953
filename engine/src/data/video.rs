//! Frames of a video in FOMM's layouts: a folder of frame images, a GIF, a `.png`/`.jpg` strip
//! of frames side by side, or a compressed video (MP4, MOV, WebM, MKV, AVI, through FFmpeg).
//! Out: a GIF, an H.264 MP4, or a folder of PNG frames. Compressed video needs the `ffmpeg`
//! feature (on by default); a build without it says so when asked for one.

use std::path::{Path, PathBuf};

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{AnimationDecoder, Delay, Frame, RgbImage, RgbaImage};

use crate::files::write_atomic_with;
use crate::{EngineError, Result};

pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];
pub const VIDEO_CONTAINERS: [&str; 5] = ["mp4", "mov", "webm", "mkv", "avi"];

/// What an MP4 export did about sound.
#[derive(Debug, Clone, PartialEq)]
pub enum Soundtrack {
    /// No sound was asked for.
    NotAsked,
    /// The audio stream was copied: its codec, and the seconds written.
    Copied { codec: String, seconds: f64 },
    /// The export has no sound, and why.
    LeftOut(String),
}

/// The error for compressed video in a build without FFmpeg (the portable headless build).
#[cfg(not(feature = "ffmpeg"))]
fn no_ffmpeg(path: &Path) -> EngineError {
    EngineError::media(
        path,
        "this build has no FFmpeg (built without the `ffmpeg` feature): use a GIF, a PNG strip or a folder of frames",
    )
}

/// Decodes a compressed video (MP4, MOV, WebM, MKV, AVI) whole.
#[cfg(feature = "ffmpeg")]
pub fn decode_compressed(path: &Path) -> Result<(Vec<RgbImage>, f64)> {
    super::ffmpeg::decode_video(path)
}

/// Decodes a compressed video: not in a build without FFmpeg.
#[cfg(not(feature = "ffmpeg"))]
pub fn decode_compressed(path: &Path) -> Result<(Vec<RgbImage>, f64)> {
    Err(no_ffmpeg(path))
}

/// The lower-case extension of `path`, or "".
pub fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// Reads one image as RGB.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path).map_err(|e| EngineError::io(path, e))?;
    let reader = reader.with_guessed_format().map_err(|e| EngineError::io(path, e))?;
    let image = reader
        .decode()
        .map_err(|e| EngineError::media(path, format!("not a readable image ({e})")))?;
    Ok(image.to_rgb8())
}

/// Frame rate assumed where a video does not carry one (frame folders, strips).
pub const DEFAULT_FPS: f64 = 25.0;

/// Reads the frames of a driving video: a folder of images (sorted by name), a GIF, an image
/// holding a horizontal strip of square frames, or a compressed video.
pub fn read_frames(path: &Path) -> Result<Vec<RgbImage>> {
    read_video(path).map(|(frames, _)| frames)
}

/// The frames of a video and its frame rate.
pub fn read_video(path: &Path) -> Result<(Vec<RgbImage>, f64)> {
    let metadata = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    let (frames, fps) = if metadata.is_dir() {
        (read_frame_folder(path)?, DEFAULT_FPS)
    } else {
        let ext = extension(path);
        if ext == "gif" {
            read_gif(path)?
        } else if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            (split_strip(read_image(path)?), DEFAULT_FPS)
        } else if VIDEO_CONTAINERS.contains(&ext.as_str()) {
            decode_compressed(path)?
        } else {
            return Err(EngineError::media(
                path,
                "not a video: expected an MP4/MOV/WebM/MKV/AVI file, a GIF, a PNG strip or a folder of frames",
            ));
        }
    };
    if frames.is_empty() {
        return Err(EngineError::media(path, "contains no frames"));
    }
    Ok((frames, fps))
}

fn read_frame_folder(dir: &Path) -> Result<Vec<RgbImage>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && IMAGE_EXTENSIONS.contains(&extension(p).as_str()))
        .collect();
    files.sort();
    files.iter().map(|f| read_image(f)).collect()
}

fn read_gif(path: &Path) -> Result<(Vec<RgbImage>, f64)> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let decoder = GifDecoder::new(std::io::BufReader::new(file))
        .map_err(|e| EngineError::media(path, format!("not a readable GIF ({e})")))?;
    let mut fps = DEFAULT_FPS;
    let frames = decoder
        .into_frames()
        .enumerate()
        .map(|(i, frame)| {
            frame
                .map(|f| {
                    if i == 0 {
                        let (num, den) = f.delay().numer_denom_ms();
                        if num > 0 {
                            fps = 1000.0 * den as f64 / num as f64;
                        }
                    }
                    image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8()
                })
                .map_err(|e| EngineError::media(path, format!("broken GIF frame ({e})")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((frames, fps))
}

/// A strip `h × (n·h)` becomes `n` square frames; any other image is one frame.
fn split_strip(image: RgbImage) -> Vec<RgbImage> {
    let (w, h) = image.dimensions();
    if h == 0 || w <= h || w % h != 0 {
        return vec![image];
    }
    (0..w / h)
        .map(|i| image::imageops::crop_imm(&image, i * h, 0, h, h).to_image())
        .collect()
}

/// Whether `out` names something [`write_frames`] can write: an `.mp4`, a `.gif`, or a folder (a
/// path without an extension, or a folder that exists). Checked before any work, so that a typo
/// such as `clip.webm` is not an hour of animating followed by a folder named `clip.webm`.
pub fn check_output(out: &Path) -> Result<()> {
    match extension(out).as_str() {
        "mp4" | "gif" | "" => Ok(()),
        _ if out.is_dir() => Ok(()),
        other => Err(EngineError::media(
            out,
            format!(
                "cannot write a '.{other}' video: choose .mp4, .gif, or a folder path with no extension (numbered PNG frames)"
            ),
        )),
    }
}

/// Writes frames as an H.264 MP4 (`out` ends in `.mp4`), an animated GIF (`.gif`) or as
/// numbered PNGs in the folder `out`. `on_frame` is called after each frame, for progress.
pub fn write_frames(out: &Path, frames: &[RgbImage], fps: f64, on_frame: impl FnMut(usize)) -> Result<()> {
    write_frames_with_audio(out, frames, fps, None, on_frame).map(|_| ())
}

/// [`write_frames`], an MP4 with the sound of `audio` (the driving video) copied in; a GIF or a
/// PNG folder has none, and the [`Soundtrack`] says so.
pub fn write_frames_with_audio(
    out: &Path,
    frames: &[RgbImage],
    fps: f64,
    audio: Option<&Path>,
    mut on_frame: impl FnMut(usize),
) -> Result<Soundtrack> {
    check_output(out)?;
    // A file output is written whole or not at all: an export cut short leaves no broken file.
    if extension(out) == "mp4" {
        #[cfg(feature = "ffmpeg")]
        return write_atomic_with(out, |temp| {
            super::ffmpeg::encode_mp4_with_audio(temp, frames, fps, audio, on_frame)
        });
        #[cfg(not(feature = "ffmpeg"))]
        return Err(no_ffmpeg(out));
    }
    let silent = |what: &str| match audio {
        Some(_) => Soundtrack::LeftOut(format!("{what} has no sound")),
        None => Soundtrack::NotAsked,
    };
    if extension(out) == "gif" {
        return write_atomic_with(out, |temp| {
            let file = std::fs::File::create(temp).map_err(|e| EngineError::io(temp, e))?;
            let mut encoder = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
            encoder
                .set_repeat(Repeat::Infinite)
                .map_err(|e| EngineError::media(out, e.to_string()))?;
            let delay = Delay::from_numer_denom_ms((1000.0 / fps.max(1.0)).round() as u32, 1);
            for (i, frame) in frames.iter().enumerate() {
                let rgba: RgbaImage = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
                encoder
                    .encode_frame(Frame::from_parts(rgba, 0, 0, delay))
                    .map_err(|e| EngineError::media(out, format!("cannot write GIF frame ({e})")))?;
                on_frame(i);
            }
            Ok(())
        })
        .map(|()| silent("a GIF"));
    }
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    for (i, frame) in frames.iter().enumerate() {
        crate::files::write_png(&out.join(format!("frame_{i:05}.png")), frame)?;
        on_frame(i);
    }
    Ok(silent("a folder of PNG frames"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_dir;

    fn frames(n: u8) -> Vec<RgbImage> {
        (0..n)
            .map(|i| RgbImage::from_pixel(8, 8, image::Rgb([i * 40, 100, 200])))
            .collect()
    }

    #[test]
    fn gif_and_png_folder_round_trip() {
        let dir = temp_dir("roundtrip");
        let gif = dir.join("out.gif");
        write_frames(&gif, &frames(4), 20.0, |_| {}).expect("write gif");
        let (back, fps) = read_video(&gif).expect("read gif");
        assert_eq!(back.len(), 4);
        assert!((fps - 20.0).abs() < 1e-9, "{fps}");
        let folder = dir.join("pngs");
        write_frames(&folder, &frames(3), 25.0, |_| {}).expect("write pngs");
        let back = read_frames(&folder).expect("read pngs");
        assert_eq!(back, frames(3));
    }

    #[test]
    fn strip_is_split_into_square_frames() {
        let strip = RgbImage::from_fn(24, 8, |x, _| image::Rgb([(x / 8) as u8, 0, 0]));
        let parts = split_strip(strip);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].get_pixel(0, 0)[0], 2);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = temp_dir("bad");
        let broken = dir.join("broken.png");
        std::fs::write(&broken, b"\x89PNG\r\n\x1a\n truncated").expect("write");
        assert!(
            read_frames(&broken)
                .expect_err("broken")
                .to_string()
                .contains("not a readable image")
        );
        assert!(read_frames(&dir.join("missing.mp4")).is_err());
        let junk = dir.join("junk.webm");
        std::fs::write(&junk, b"not a video").expect("write");
        assert!(read_frames(&junk).expect_err("junk").to_string().contains("junk.webm"));
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).expect("dir");
        assert!(
            read_frames(&empty)
                .expect_err("empty")
                .to_string()
                .contains("no frames")
        );
    }
}
