//! Compressed video in and out through the system's FFmpeg libraries (libavformat, libavcodec,
//! libswscale; Debian: `libavformat-dev libavcodec-dev libswscale-dev`): decoding any container
//! and codec FFmpeg knows (MP4, MOV, WebM, MKV, AVI, ...), encoding H.264 in MP4.

use std::path::Path;
use std::sync::Once;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::{EngineError, Result};

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Registration cannot fail in FFmpeg >= 4; its log would otherwise go to stderr.
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

fn bad(path: &Path, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::media(path, format!("{what} ({e})"))
}

/// Copies an RGB24 frame (rows may be padded) into an image.
fn to_image(frame: &VideoFrame) -> RgbImage {
    let (w, h) = (frame.width(), frame.height());
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h as usize {
        out.extend_from_slice(&data[y * stride..y * stride + w as usize * 3]);
    }
    RgbImage::from_raw(w, h, out).unwrap_or_default()
}

/// Reads the frames of a compressed video one by one (the video stream with the most frames).
pub struct VideoReader {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    scaler: Scaler,
    stream: usize,
    fps: f64,
    pending: std::collections::VecDeque<RgbImage>,
    finished: bool,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("fps", &self.fps)
            .finish()
    }
}

impl VideoReader {
    pub fn open(path: &Path) -> Result<Self> {
        init();
        std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
        let input = ffmpeg::format::input(&path).map_err(|e| bad(path, "not a readable video", e))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| EngineError::media(path, "holds no video stream"))?;
        let index = stream.index();
        let rate = stream.avg_frame_rate();
        let fps = if rate.denominator() != 0 && rate.numerator() > 0 {
            f64::from(rate)
        } else {
            25.0
        };
        let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| bad(path, "unsupported video stream", e))?;
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| bad(path, "no decoder for its video codec", e))?;
        if decoder.width() == 0 || decoder.height() == 0 {
            return Err(EngineError::media(path, "its video stream has no frame size"));
        }
        let scaler = Scaler::get(
            decoder.format(),
            decoder.width(),
            decoder.height(),
            Pixel::RGB24,
            decoder.width(),
            decoder.height(),
            Flags::BILINEAR,
        )
        .map_err(|e| bad(path, "cannot convert its pixel format", e))?;
        Ok(Self {
            input,
            decoder,
            scaler,
            stream: index,
            fps,
            pending: Default::default(),
            finished: false,
            path: path.to_path_buf(),
        })
    }

    /// Frames per second (25 when the file does not say).
    pub fn fps(&self) -> f64 {
        self.fps
    }

    pub fn size(&self) -> (u32, u32) {
        (self.decoder.width(), self.decoder.height())
    }

    /// Moves every frame the decoder has ready into `pending`.
    fn drain(&mut self) -> Result<()> {
        let mut decoded = VideoFrame::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let mut rgb = VideoFrame::empty();
            self.scaler
                .run(&decoded, &mut rgb)
                .map_err(|e| bad(&self.path, "cannot convert a frame", e))?;
            self.pending.push_back(to_image(&rgb));
        }
        Ok(())
    }

    /// The next frame, `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        while self.pending.is_empty() && !self.finished {
            let packet = self.input.packets().next();
            match packet {
                Some((stream, packet)) => {
                    if stream.index() == self.stream {
                        self.decoder
                            .send_packet(&packet)
                            .map_err(|e| bad(&self.path, "broken video data", e))?;
                        self.drain()?;
                    }
                }
                None => {
                    self.finished = true;
                    // The decoder may hold frames back until it knows the stream ended.
                    let _ = self.decoder.send_eof();
                    self.drain()?;
                }
            }
        }
        Ok(self.pending.pop_front())
    }
}

impl Iterator for VideoReader {
    type Item = Result<RgbImage>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Every frame of a compressed video and its frame rate.
pub fn decode_video(path: &Path) -> Result<(Vec<RgbImage>, f64)> {
    let reader = VideoReader::open(path)?;
    let fps = reader.fps();
    let frames = reader.collect::<Result<Vec<_>>>()?;
    if frames.is_empty() {
        return Err(EngineError::media(path, "contains no decodable frames"));
    }
    Ok((frames, fps))
}

/// Writes `frames` as H.264 (yuv420p) in an MP4 at `fps`; `on_frame(i)` reports progress. Odd
/// sizes lose their last row or column (4:2:0 needs even sizes).
pub fn encode_mp4(path: &Path, frames: &[RgbImage], fps: f64, mut on_frame: impl FnMut(usize)) -> Result<()> {
    init();
    let first = frames
        .first()
        .ok_or_else(|| EngineError::media(path, "nothing to write: no frames"))?;
    let (w, h) = (first.width() & !1, first.height() & !1);
    if w == 0 || h == 0 {
        return Err(EngineError::media(path, "frames are too small to encode"));
    }
    let fail = |what: &str, e: ffmpeg::Error| bad(path, what, e);
    let mut output = ffmpeg::format::output(&path).map_err(|e| fail("cannot create the video file", e))?;
    let codec = ffmpeg::encoder::find(ffmpeg::codec::Id::H264)
        .ok_or_else(|| EngineError::media(path, "this FFmpeg has no H.264 encoder (install libx264)"))?;
    let global_header = output.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER);
    let mut stream = output
        .add_stream(codec)
        .map_err(|e| fail("cannot add a video stream", e))?;
    let stream_index = stream.index();
    let mut context = ffmpeg::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| fail("cannot set up the H.264 encoder", e))?;
    let rate = ffmpeg::Rational::from(fps.clamp(1.0, 240.0));
    context.set_width(w);
    context.set_height(h);
    context.set_format(Pixel::YUV420P);
    context.set_frame_rate(Some(rate));
    context.set_time_base(rate.invert());
    if global_header {
        context.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
    }
    let mut options = ffmpeg::Dictionary::new();
    options.set("preset", "medium");
    options.set("crf", "18");
    let mut encoder = context
        .open_as_with(codec, options)
        .map_err(|e| fail("cannot open the H.264 encoder", e))?;
    stream.set_parameters(&encoder);
    output
        .write_header()
        .map_err(|e| fail("cannot write the video header", e))?;
    let stream_time_base = output
        .stream(stream_index)
        .map(|s| s.time_base())
        .unwrap_or(rate.invert());
    let encoder_time_base = rate.invert();
    let mut scaler = Scaler::get(Pixel::RGB24, w, h, Pixel::YUV420P, w, h, Flags::BILINEAR)
        .map_err(|e| fail("cannot convert frames to YUV", e))?;

    let write_packets = |encoder: &mut ffmpeg::encoder::Video, output: &mut ffmpeg::format::context::Output| {
        let mut packet = ffmpeg::Packet::empty();
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(stream_index);
            // x264 leaves durations at 0; the MP4 muxer then ends the edit list at the last
            // frame's start, and players (FFmpeg included) drop that frame.
            if packet.duration() <= 0 {
                packet.set_duration(1);
            }
            packet.rescale_ts(encoder_time_base, stream_time_base);
            packet
                .write_interleaved(output)
                .map_err(|e| bad(path, "cannot write video data", e))?;
        }
        Ok::<(), EngineError>(())
    };
    for (i, frame) in frames.iter().enumerate() {
        if frame.dimensions() != first.dimensions() {
            return Err(EngineError::media(
                path,
                format!(
                    "frame {i} is {:?}, the first was {:?}",
                    frame.dimensions(),
                    first.dimensions()
                ),
            ));
        }
        let mut rgb = VideoFrame::new(Pixel::RGB24, w, h);
        let stride = rgb.stride(0);
        let data = rgb.data_mut(0);
        for y in 0..h as usize {
            let row = &frame.as_raw()[y * first.width() as usize * 3..][..w as usize * 3];
            data[y * stride..y * stride + w as usize * 3].copy_from_slice(row);
        }
        let mut yuv = VideoFrame::empty();
        scaler
            .run(&rgb, &mut yuv)
            .map_err(|e| fail("cannot convert a frame to YUV", e))?;
        yuv.set_pts(Some(i as i64));
        encoder.send_frame(&yuv).map_err(|e| fail("cannot encode a frame", e))?;
        write_packets(&mut encoder, &mut output)?;
        on_frame(i);
    }
    encoder.send_eof().map_err(|e| fail("cannot finish encoding", e))?;
    write_packets(&mut encoder, &mut output)?;
    output
        .write_trailer()
        .map_err(|e| fail("cannot finish the video file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u32) -> Vec<RgbImage> {
        (0..n)
            .map(|i| {
                RgbImage::from_fn(48, 32, |x, y| {
                    image::Rgb([(x * 5) as u8, (y * 7) as u8, (i * 20) as u8])
                })
            })
            .collect()
    }

    #[test]
    fn mp4_round_trip_keeps_count_size_and_colours() {
        let dir = crate::test_support::temp_dir("mp4");
        let path = dir.join("clip.mp4");
        let mut written = 0;
        encode_mp4(&path, &frames(12), 25.0, |_| written += 1).expect("encode");
        assert_eq!(written, 12);
        let (back, fps) = decode_video(&path).expect("decode");
        assert_eq!(back.len(), 12);
        assert!((fps - 25.0).abs() < 1e-6, "{fps}");
        assert_eq!(back[0].dimensions(), (48, 32));
        // Lossy, but close: the mean absolute difference is a few levels.
        let original = frames(12);
        let diff: f64 = back[5]
            .pixels()
            .zip(original[5].pixels())
            .map(|(a, b)| (0..3).map(|c| (a[c] as f64 - b[c] as f64).abs()).sum::<f64>())
            .sum::<f64>()
            / (48.0 * 32.0 * 3.0);
        assert!(diff < 6.0, "mean difference {diff}");
    }

    #[test]
    fn unreadable_and_truncated_files_are_errors() {
        let dir = crate::test_support::temp_dir("mp4-bad");
        let junk = dir.join("junk.mp4");
        std::fs::write(&junk, b"this is not a video at all").expect("write");
        let err = decode_video(&junk).expect_err("junk").to_string();
        assert!(err.contains("junk.mp4"), "{err}");
        let good = dir.join("good.mp4");
        encode_mp4(&good, &frames(20), 10.0, |_| {}).expect("encode");
        let bytes = std::fs::read(&good).expect("read");
        let cut = dir.join("cut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
        // A truncated file is an error or fewer frames, never a panic.
        if let Ok((frames, _)) = decode_video(&cut) {
            assert!(frames.len() < 20);
        }
        assert!(encode_mp4(&dir.join("empty.mp4"), &[], 10.0, |_| {}).is_err());
    }
}
