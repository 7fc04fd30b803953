//! Compressed video in and out through the system's FFmpeg libraries (libavformat, libavcodec,
//! libswscale; Debian: `libavformat-dev libavcodec-dev libswscale-dev`): decoding any container
//! and codec FFmpeg knows (MP4, MOV, WebM, MKV, AVI, ...), encoding H.264 in MP4, with the
//! driving video's sound copied in (not re-encoded) when its codec fits MP4.

use std::path::Path;
use std::sync::Once;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg::util::frame::video::Video as VideoFrame;
use ffmpeg::util::mathematics::Rescale;
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::video::Soundtrack;
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
pub fn encode_mp4(path: &Path, frames: &[RgbImage], fps: f64, on_frame: impl FnMut(usize)) -> Result<()> {
    encode_mp4_with_audio(path, frames, fps, None, on_frame).map(|_| ())
}

/// Audio codecs the MP4 muxer takes as they are.
const MP4_AUDIO: [ffmpeg::codec::Id; 6] = [
    ffmpeg::codec::Id::AAC,
    ffmpeg::codec::Id::MP3,
    ffmpeg::codec::Id::AC3,
    ffmpeg::codec::Id::EAC3,
    ffmpeg::codec::Id::OPUS,
    ffmpeg::codec::Id::FLAC,
];

/// `aac`, `mp3`, ...: how messages name a codec.
fn codec_name(id: ffmpeg::codec::Id) -> String {
    format!("{id:?}").to_lowercase()
}

/// An audio stream to copy into an export: aligned to the first video frame of its file, and
/// cut at `seconds`.
struct AudioSource {
    input: ffmpeg::format::context::Input,
    stream: usize,
    parameters: ffmpeg::codec::Parameters,
    time_base: ffmpeg::Rational,
    codec: String,
    /// The video stream's start, in the audio's time base: audio at that time plays with
    /// frame 0.
    offset: i64,
    /// The export's length, in the audio's time base.
    end: i64,
}

impl AudioSource {
    /// The best audio stream of `path`; `Err(reason)` when there is none to copy.
    fn open(path: &Path, seconds: f64) -> std::result::Result<Self, String> {
        let input = ffmpeg::format::input(&path).map_err(|e| format!("cannot open {} ({e})", path.display()))?;
        let audio = input
            .streams()
            .best(ffmpeg::media::Type::Audio)
            .ok_or_else(|| format!("{} has no audio track", path.display()))?;
        let parameters = audio.parameters();
        let id = parameters.id();
        let codec = codec_name(id);
        if !MP4_AUDIO.contains(&id) {
            return Err(format!("its {codec} audio does not go into an MP4 without re-encoding"));
        }
        let time_base = audio.time_base();
        let stream = audio.index();
        let to_audio = |ts: i64, tb: ffmpeg::Rational| ts.rescale(tb, time_base);
        let video_start = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .map(|v| {
                if v.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE {
                    0
                } else {
                    to_audio(v.start_time(), v.time_base())
                }
            })
            .unwrap_or(0);
        let end = to_audio((seconds * 1e6).round() as i64, ffmpeg::Rational(1, 1_000_000));
        Ok(Self {
            input,
            stream,
            parameters,
            time_base,
            codec,
            offset: video_start,
            end,
        })
    }

    /// Copies the packets that start within the export into `output`'s stream `index`; the
    /// seconds written.
    fn copy_into(&mut self, output: &mut ffmpeg::format::context::Output, index: usize, path: &Path) -> Result<f64> {
        let out_time_base = output.stream(index).map(|s| s.time_base()).unwrap_or(self.time_base);
        let mut last_end = 0i64;
        for (stream, mut packet) in self.input.packets() {
            if stream.index() != self.stream {
                continue;
            }
            let Some(pts) = packet.pts().or(packet.dts()) else {
                continue;
            };
            let start = pts - self.offset;
            if start < 0 {
                continue;
            }
            if start >= self.end {
                break;
            }
            let dts = packet.dts().map(|d| d - self.offset);
            packet.set_pts(Some(start));
            packet.set_dts(dts);
            last_end = last_end.max(start + packet.duration());
            packet.set_stream(index);
            packet.set_position(-1);
            packet.rescale_ts(self.time_base, out_time_base);
            packet
                .write_interleaved(output)
                .map_err(|e| bad(path, "cannot write audio data", e))?;
        }
        Ok(last_end as f64 * f64::from(self.time_base))
    }
}

/// [`encode_mp4`], with the audio of `audio` (the driving video) copied in: aligned to its
/// first video frame and trimmed to the export's length (`frames / fps`, to within one audio
/// packet). When the file has no audio, or audio MP4 cannot hold as it is, the export is
/// written without sound and [`Soundtrack::LeftOut`] says why.
pub fn encode_mp4_with_audio(
    path: &Path,
    frames: &[RgbImage],
    fps: f64,
    audio: Option<&Path>,
    mut on_frame: impl FnMut(usize),
) -> Result<Soundtrack> {
    init();
    let seconds = frames.len() as f64 / fps.clamp(1.0, 240.0);
    let mut source = match audio.map(|a| AudioSource::open(a, seconds)) {
        None => None,
        Some(Ok(source)) => Some(source),
        Some(Err(reason)) => {
            let _ = encode(path, frames, fps, None, &mut on_frame)?;
            return Ok(Soundtrack::LeftOut(reason));
        }
    };
    match encode(path, frames, fps, source.as_mut(), &mut on_frame)? {
        Ok(Some(written)) => Ok(Soundtrack::Copied {
            codec: source.map(|s| s.codec).unwrap_or_default(),
            seconds: written,
        }),
        Ok(None) => Ok(Soundtrack::NotAsked),
        // The muxer refused the audio stream: the video alone.
        Err(reason) => {
            let _ = encode(path, frames, fps, None, &mut on_frame)?;
            Ok(Soundtrack::LeftOut(reason))
        }
    }
}

/// The export itself. `Ok(Err(reason))`: the muxer would not take the audio stream (nothing
/// useful was written; write again without it). `Ok(Ok(seconds))`: done, with the audio's length.
fn encode(
    path: &Path,
    frames: &[RgbImage],
    fps: f64,
    audio: Option<&mut AudioSource>,
    on_frame: &mut impl FnMut(usize),
) -> Result<std::result::Result<Option<f64>, String>> {
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
    let audio_index = match audio.as_deref() {
        Some(source) => {
            let mut added = output
                .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                .map_err(|e| fail("cannot add an audio stream", e))?;
            added.set_parameters(source.parameters.clone());
            Some(added.index())
        }
        None => None,
    };
    if let Err(e) = output.write_header() {
        if let Some(source) = audio.as_deref() {
            return Ok(Err(format!("the MP4 writer refused its {} audio ({e})", source.codec)));
        }
        return Err(fail("cannot write the video header", e));
    }
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
    let written = match (audio, audio_index) {
        (Some(source), Some(index)) => Some(source.copy_into(&mut output, index, path)?),
        _ => None,
    };
    output
        .write_trailer()
        .map_err(|e| fail("cannot finish the video file", e))?;
    Ok(Ok(written))
}

/// A file's audio as decoded: codec, sample rate and samples per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub codec: String,
    pub sample_rate: u32,
    pub samples: usize,
}

impl DecodedAudio {
    pub fn seconds(&self) -> f64 {
        self.samples as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Decodes `path`'s best audio stream to count its samples (what a player would play);
/// `None` when it has no audio.
pub fn decode_audio(path: &Path) -> Result<Option<DecodedAudio>> {
    init();
    let mut input = ffmpeg::format::input(&path).map_err(|e| bad(path, "not a readable video", e))?;
    let Some(stream) = input.streams().best(ffmpeg::media::Type::Audio) else {
        return Ok(None);
    };
    let index = stream.index();
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| bad(path, "unsupported audio stream", e))?;
    let mut decoder = context
        .decoder()
        .audio()
        .map_err(|e| bad(path, "no decoder for its audio codec", e))?;
    let codec = codec_name(decoder.id());
    let mut frame = ffmpeg::util::frame::audio::Audio::empty();
    let mut samples = 0;
    let mut sample_rate = decoder.rate();
    for (stream, packet) in input.packets() {
        if stream.index() != index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| bad(path, "broken audio data", e))?;
        while decoder.receive_frame(&mut frame).is_ok() {
            samples += frame.samples();
            sample_rate = frame.rate();
        }
    }
    let _ = decoder.send_eof();
    while decoder.receive_frame(&mut frame).is_ok() {
        samples += frame.samples();
    }
    Ok(Some(DecodedAudio {
        codec,
        sample_rate,
        samples,
    }))
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

    /// The driving clip's sound (3 s of a 440 Hz tone under 45 frames, 1.5 s): an export of 30
    /// frames at its rate keeps 1 s of it, in AAC as it was.
    #[test]
    fn mp4_export_copies_the_driving_audio_trimmed_to_the_video() {
        let driving = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/media/carphone-audio.mp4");
        let source = decode_audio(&driving).expect("decodes").expect("has audio");
        assert!((source.seconds() - 3.0).abs() < 0.05, "{source:?}");
        let (clip, fps) = decode_video(&driving).expect("video");
        assert_eq!(clip.len(), 45);
        let dir = crate::test_support::temp_dir("mp4-audio");
        let out = dir.join("out.mp4");
        let soundtrack = encode_mp4_with_audio(&out, &clip[..30], fps, Some(&driving), |_| {}).expect("encode");
        let Soundtrack::Copied { codec, seconds } = &soundtrack else {
            panic!("{soundtrack:?}");
        };
        assert_eq!(codec, "aac");
        let video_seconds = 30.0 / fps;
        // Whole packets: within one AAC frame (1024 samples, 64 ms at 16 kHz) of the video.
        assert!(
            (seconds - video_seconds).abs() < 0.07,
            "{seconds} s of audio, {video_seconds} s of video"
        );
        let back = decode_audio(&out).expect("decodes").expect("the export has audio");
        assert_eq!(back.codec, "aac");
        assert!((back.seconds() - video_seconds).abs() < 0.07, "{back:?}");
        let (exported, back_fps) = decode_video(&out).expect("video");
        assert_eq!(exported.len(), 30);
        assert!((back_fps - fps).abs() < 1e-3);

        // A driving video without sound: the export is written, silent, and says why.
        let silent = dir.join("silent.mp4");
        encode_mp4(&silent, &frames(5), 10.0, |_| {}).expect("encode");
        let out = dir.join("from-silent.mp4");
        let soundtrack = encode_mp4_with_audio(&out, &frames(5), 10.0, Some(&silent), |_| {}).expect("encode");
        assert!(
            matches!(&soundtrack, Soundtrack::LeftOut(why) if why.contains("no audio")),
            "{soundtrack:?}"
        );
        assert_eq!(decode_audio(&out).expect("decodes"), None);
        assert_eq!(decode_video(&out).expect("video").0.len(), 5);
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
