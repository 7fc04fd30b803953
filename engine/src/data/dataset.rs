//! FOMM's dataset layout (`frames_dataset.py`): a root with `train/` and `test/`, each holding
//! videos as a folder of frames, a `.gif`, a `.png`/`.jpg` strip of frames side by side, or a
//! compressed video (`.mp4`, `.mov`, `.webm`, ...); without `train/`, the videos of the root are
//! split 80/20 at random (fixed seed), as FOMM does.
//!
//! Training draws two random frames of one video (sorted: the earlier is the source, the later
//! the driving frame), resizes them to the config's frame shape and applies FOMM's flips and
//! colour jitter. A video or frame that cannot be read is reported by name and skipped; a
//! dataset with no video is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::augmentation::augment_clip;
use super::video::{IMAGE_EXTENSIONS, VIDEO_CONTAINERS, extension, read_frames, read_image};
use crate::config::DatasetParams;
use crate::frames::resize_to;
use crate::rng::Rng;
use crate::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// How one video is stored.
#[derive(Debug, Clone)]
pub enum VideoKind {
    /// A folder of frame images, in name order; frames are read one by one.
    Frames(Vec<PathBuf>),
    /// A GIF, an image strip or a compressed video, decoded whole when used.
    File,
}

#[derive(Debug, Clone)]
pub struct Video {
    /// File or folder name, as FOMM names videos.
    pub name: String,
    pub path: PathBuf,
    pub kind: VideoKind,
}

/// A training pair, both frames at the dataset's frame size.
#[derive(Debug, Clone)]
pub struct Pair {
    pub source: RgbImage,
    pub driving: RgbImage,
    pub video: String,
}

#[derive(Debug)]
pub struct FramesDataset {
    /// The split's folder (or the root, for a random split).
    pub dir: PathBuf,
    pub split: Split,
    pub videos: Vec<Video>,
    /// With `id_sampling`, the videos of each identity (`id#clip` names); one sample per id.
    identities: Option<Vec<Vec<usize>>>,
    /// [height, width, channels].
    pub frame_shape: [usize; 3],
    pub params: DatasetParams,
}

const LAYOUT: &str = "FOMM's layout: DIR/train and DIR/test holding videos as frame folders, .gif files or .png strips";

impl FramesDataset {
    /// Lists the videos of `split` under `root`. Entries that are not videos are skipped with a
    /// warning (returned); no video at all is an error.
    pub fn open(
        root: &Path,
        split: Split,
        frame_shape: [usize; 3],
        params: &DatasetParams,
    ) -> Result<(Self, Vec<String>)> {
        let metadata = std::fs::metadata(root).map_err(|e| EngineError::io(root, e))?;
        if !metadata.is_dir() {
            return Err(EngineError::media(root, format!("not a dataset folder ({LAYOUT})")));
        }
        let mut warnings = Vec::new();
        let train = root.join("train");
        let (dir, videos) = if train.is_dir() {
            let dir = root.join(split.name());
            if !dir.is_dir() {
                return Err(EngineError::media(
                    root,
                    format!("has train/ but no {}/ ({LAYOUT})", split.name()),
                ));
            }
            let videos = list_videos(&dir, &mut warnings)?;
            (dir, videos)
        } else {
            // FOMM: train_test_split(test_size=0.2) with a fixed seed.
            let mut videos = list_videos(root, &mut warnings)?;
            let mut order: Vec<usize> = (0..videos.len()).collect();
            Rng::seed(0).shuffle(&mut order);
            let test_count = (videos.len() as f64 * 0.2).ceil() as usize;
            let keep: Vec<usize> = match split {
                Split::Test => order[..test_count.min(order.len())].to_vec(),
                Split::Train => order[test_count.min(order.len())..].to_vec(),
            };
            let mut kept: Vec<Video> = keep.into_iter().map(|i| videos[i].clone()).collect();
            kept.sort_by(|a, b| a.name.cmp(&b.name));
            videos = kept;
            (root.to_path_buf(), videos)
        };
        if videos.is_empty() {
            return Err(EngineError::media(&dir, format!("holds no readable video ({LAYOUT})")));
        }
        let identities = params.id_sampling.then(|| {
            let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, v) in videos.iter().enumerate() {
                let id = v.name.split('#').next().unwrap_or(&v.name);
                groups.entry(id).or_default().push(i);
            }
            groups.into_values().collect()
        });
        let dataset = Self {
            dir,
            split,
            videos,
            identities,
            frame_shape,
            params: params.clone(),
        };
        Ok((dataset, warnings))
    }

    /// Samples per pass: identities with `id_sampling`, else videos.
    pub fn len(&self) -> usize {
        self.identities.as_ref().map_or(self.videos.len(), Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The video a sample index stands for (with id sampling, a random clip of the identity).
    pub fn video_of(&self, index: usize, rng: &mut Rng) -> usize {
        match &self.identities {
            Some(groups) => {
                let group = &groups[index % groups.len()];
                group[rng.below(group.len())]
            }
            None => index % self.videos.len(),
        }
    }

    /// Every frame of video `video`, resized to the frame shape (evaluation).
    pub fn read_video(&self, video: usize) -> Result<Vec<RgbImage>> {
        Ok(self
            .read_video_as_stored(video)?
            .iter()
            .map(|f| self.resized(f))
            .collect())
    }

    /// Every frame of video `video` at the size it is stored at (to crop before resizing).
    pub fn read_video_as_stored(&self, video: usize) -> Result<Vec<RgbImage>> {
        let v = &self.videos[video];
        match &v.kind {
            VideoKind::Frames(files) => files.iter().map(|f| read_image(f)).collect(),
            VideoKind::File => read_frames(&v.path),
        }
    }

    /// A frame at the frame shape.
    pub fn resized(&self, frame: &RgbImage) -> RgbImage {
        let [h, w, _] = self.frame_shape;
        resize_to(frame, w as u32, h as u32)
    }

    /// A training pair from video `video`: two frames drawn with replacement, in time order,
    /// then augmented. An unreadable file is an error naming it.
    pub fn pair(&self, video: usize, rng: &mut Rng) -> Result<Pair> {
        let v = &self.videos[video];
        let mut clip = match &v.kind {
            VideoKind::Frames(files) => {
                let (a, b) = sorted_pair(files.len(), rng);
                vec![read_image(&files[a])?, read_image(&files[b])?]
            }
            VideoKind::File => {
                let frames = read_frames(&v.path)?;
                let (a, b) = sorted_pair(frames.len(), rng);
                vec![frames[a].clone(), frames[b].clone()]
            }
        };
        for frame in clip.iter_mut() {
            *frame = self.resized(frame);
        }
        augment_clip(&mut clip, &self.params, rng);
        let driving = clip.pop().unwrap_or_default();
        let source = clip.pop().unwrap_or_default();
        Ok(Pair {
            source,
            driving,
            video: v.name.clone(),
        })
    }
}

/// Two indices drawn uniformly with replacement, sorted (FOMM's
/// `np.sort(np.random.choice(n, replace=True, size=2))`).
fn sorted_pair(n: usize, rng: &mut Rng) -> (usize, usize) {
    let (a, b) = (rng.below(n), rng.below(n));
    (a.min(b), a.max(b))
}

fn list_videos(dir: &Path, warnings: &mut Vec<String>) -> Result<Vec<Video>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    let mut videos = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            let mut frames: Vec<PathBuf> = match std::fs::read_dir(&path) {
                Ok(read) => read
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && IMAGE_EXTENSIONS.contains(&extension(p).as_str()))
                    .collect(),
                Err(e) => {
                    warnings.push(format!("skipped {}: cannot list it ({e})", path.display()));
                    continue;
                }
            };
            if frames.is_empty() {
                warnings.push(format!("skipped {}: a folder without frames", path.display()));
                continue;
            }
            frames.sort();
            videos.push(Video {
                name,
                path,
                kind: VideoKind::Frames(frames),
            });
        } else {
            let ext = extension(&path);
            if ext == "gif" || IMAGE_EXTENSIONS.contains(&ext.as_str()) || VIDEO_CONTAINERS.contains(&ext.as_str()) {
                videos.push(Video {
                    name,
                    path,
                    kind: VideoKind::File,
                });
            } else {
                warnings.push(format!("skipped {}: not a video", path.display()));
            }
        }
    }
    Ok(videos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_dir;

    fn frame(value: u8, size: u32) -> RgbImage {
        RgbImage::from_pixel(size, size, image::Rgb([value, 255 - value, 7]))
    }

    fn still() -> DatasetParams {
        DatasetParams::new()
            .with_horizontal_flip(false)
            .with_time_flip(false)
            .with_brightness(0.0)
            .with_contrast(0.0)
            .with_saturation(0.0)
            .with_hue(0.0)
    }

    /// One video in each of FOMM's layouts, plus junk; every layout reads back in time order.
    #[test]
    fn reads_every_layout_and_skips_what_is_not_a_video() {
        let root = temp_dir("layouts");
        for split in ["train", "test"] {
            std::fs::create_dir_all(root.join(split)).expect("split");
        }
        let train = root.join("train");
        let folder = train.join("a-folder");
        std::fs::create_dir_all(&folder).expect("folder");
        for i in 0..3u8 {
            frame(i * 100, 16)
                .save(folder.join(format!("{i:04}.png")))
                .expect("frame");
        }
        let mut strip = RgbImage::new(48, 16);
        for i in 0..3u32 {
            image::imageops::replace(&mut strip, &frame(i as u8 * 100, 16), (i * 16) as i64, 0);
        }
        strip.save(train.join("b-strip.png")).expect("strip");
        crate::data::write_frames(&train.join("c-anim.gif"), &[frame(0, 16), frame(200, 16)], 10.0, |_| {})
            .expect("gif");
        std::fs::write(train.join("notes.txt"), "hello").expect("junk");
        crate::data::write_frames(
            &train.join("d-clip.mp4"),
            &[frame(0, 16), frame(100, 16), frame(200, 16)],
            10.0,
            |_| {},
        )
        .expect("mp4");
        std::fs::create_dir_all(train.join("empty")).expect("empty");
        frame(5, 16).save(root.join("test/only.png")).expect("test video");

        let (dataset, warnings) = FramesDataset::open(&root, Split::Train, [8, 8, 3], &still()).expect("open");
        let names: Vec<&str> = dataset.videos.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["a-folder", "b-strip.png", "c-anim.gif", "d-clip.mp4"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("notes.txt")));
        assert!(warnings.iter().any(|w| w.contains("empty")));
        let mut rng = Rng::seed(0);
        for video in 0..4 {
            for _ in 0..10 {
                let pair = dataset.pair(video, &mut rng).expect("pair");
                assert_eq!(pair.source.dimensions(), (8, 8));
                // Red grows with time in every video: source never after driving.
                assert!(pair.source.get_pixel(4, 4)[0] <= pair.driving.get_pixel(4, 4)[0]);
            }
        }
        assert_eq!(dataset.read_video(1).expect("strip").len(), 3);
        let (test, _) = FramesDataset::open(&root, Split::Test, [8, 8, 3], &still()).expect("test");
        assert_eq!(test.len(), 1);
    }

    #[test]
    fn broken_files_are_errors_naming_them_and_empty_datasets_are_refused() {
        let root = temp_dir("broken");
        std::fs::create_dir_all(root.join("train/v")).expect("dirs");
        std::fs::create_dir_all(root.join("test")).expect("dirs");
        std::fs::write(root.join("train/v/0000.png"), b"\x89PNG\r\n\x1a\nbroken").expect("write");
        std::fs::write(root.join("train/cut.gif"), b"GIF89a").expect("write");
        let (dataset, _) = FramesDataset::open(&root, Split::Train, [8, 8, 3], &still()).expect("open");
        let mut rng = Rng::seed(1);
        for video in 0..2 {
            let err = dataset.pair(video, &mut rng).expect_err("unreadable").to_string();
            let name = &dataset.videos[video].name;
            assert!(err.contains(if name == "v" { "0000.png" } else { "cut.gif" }), "{err}");
        }
        let err = FramesDataset::open(&root, Split::Test, [8, 8, 3], &still()).expect_err("empty");
        assert!(err.to_string().contains("no readable video"), "{err}");
        let err = FramesDataset::open(&root.join("nope"), Split::Train, [8, 8, 3], &still()).expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn without_train_folder_videos_are_split_80_20_and_ids_group_clips() {
        let root = temp_dir("split");
        for i in 0..10u8 {
            frame(i, 8)
                .save(root.join(format!("id{}#clip{i}.png", i % 3)))
                .expect("video");
        }
        let params = still().with_id_sampling(true);
        let (train, _) = FramesDataset::open(&root, Split::Train, [8, 8, 3], &params).expect("train");
        let (test, _) = FramesDataset::open(&root, Split::Test, [8, 8, 3], &params).expect("test");
        assert_eq!(train.videos.len() + test.videos.len(), 10);
        assert_eq!(test.videos.len(), 2);
        assert!(train.len() <= 3, "samples are identities");
        let mut rng = Rng::seed(2);
        let clip = &train.videos[train.video_of(0, &mut rng)].name;
        assert!(clip.starts_with(train.videos[0].name.split('#').next().unwrap_or("?")));
    }
}
