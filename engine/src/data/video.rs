//! Frames of a video in FOMM's layouts: a folder of frame images, a GIF, or a `.png`/`.jpg`
//! strip of frames side by side. Compressed video containers (MP4, MOV, WebM) need a decoder
//! library and are refused with a clear message until one is wired in.

use std::path::{Path, PathBuf};

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::imageops::FilterType;
use image::{AnimationDecoder, Delay, Frame, RgbImage, RgbaImage};

use crate::{EngineError, Result};

pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];
pub const VIDEO_CONTAINERS: [&str; 5] = ["mp4", "mov", "webm", "mkv", "avi"];

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

/// Resizes to exactly `width × height` (FOMM resizes frames to `frame_shape`, aspect ignored).
pub fn resize_to(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    image::imageops::resize(image, width, height, FilterType::Triangle)
}

/// Reads the frames of a driving video: a folder of images (sorted by name), a GIF, or an
/// image holding a horizontal strip of square frames.
pub fn read_frames(path: &Path) -> Result<Vec<RgbImage>> {
    let metadata = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    let frames = if metadata.is_dir() {
        read_frame_folder(path)?
    } else {
        let ext = extension(path);
        if ext == "gif" {
            read_gif(path)?
        } else if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            split_strip(read_image(path)?)
        } else if VIDEO_CONTAINERS.contains(&ext.as_str()) {
            return Err(EngineError::media(
                path,
                format!(".{ext} video decoding is not available yet; pass a folder of frames or a GIF"),
            ));
        } else {
            return Err(EngineError::media(
                path,
                "not a video: expected a folder of frames, a GIF or a PNG strip",
            ));
        }
    };
    if frames.is_empty() {
        return Err(EngineError::media(path, "contains no frames"));
    }
    Ok(frames)
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

fn read_gif(path: &Path) -> Result<Vec<RgbImage>> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let decoder = GifDecoder::new(std::io::BufReader::new(file))
        .map_err(|e| EngineError::media(path, format!("not a readable GIF ({e})")))?;
    decoder
        .into_frames()
        .map(|frame| {
            frame
                .map(|f| image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8())
                .map_err(|e| EngineError::media(path, format!("broken GIF frame ({e})")))
        })
        .collect()
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

/// Writes frames as an animated GIF (`out` ends in `.gif`) or as numbered PNGs in the folder
/// `out`. `on_frame` is called after each frame, for progress.
pub fn write_frames(out: &Path, frames: &[RgbImage], fps: f64, mut on_frame: impl FnMut(usize)) -> Result<()> {
    if extension(out) == "gif" {
        let file = std::fs::File::create(out).map_err(|e| EngineError::io(out, e))?;
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
        return Ok(());
    }
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    for (i, frame) in frames.iter().enumerate() {
        let path = out.join(format!("frame_{i:05}.png"));
        frame
            .save(&path)
            .map_err(|e| EngineError::media(&path, format!("cannot write ({e})")))?;
        on_frame(i);
    }
    Ok(())
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
        write_frames(&gif, &frames(4), 25.0, |_| {}).expect("write gif");
        assert_eq!(read_frames(&gif).expect("read gif").len(), 4);
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
        assert!(read_frames(&dir.join("clip.mp4")).is_err());
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
