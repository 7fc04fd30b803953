//! Batches for training steps: FOMM's `DataLoader(DatasetRepeater(dataset, num_repeats),
//! batch_size, shuffle=True, drop_last=True)`, made a pure function of `(seed, step)`.
//!
//! Each epoch's order is a shuffle keyed by `(seed, epoch)`, and each sample's random choices
//! (frames, flips, jitter) by `(seed, step, slot)`. A resumed run therefore sees exactly the
//! batches an uninterrupted one would have, and batches can be prepared ahead on a thread.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::dataset::FramesDataset;
use crate::frames::planar_rgb;
use crate::rng::Rng;
use crate::{EngineError, Result};

const ORDER_STREAM: u64 = 1;
const SAMPLE_STREAM: u64 = 2;

/// Which dataset samples each step draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// Samples per pass over the dataset (`FramesDataset::len`).
    pub samples: usize,
    pub num_repeats: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Bumped after a rollback so the replayed steps draw other batches.
    pub generation: u64,
}

impl BatchPlan {
    /// Full batches per epoch (`drop_last`).
    pub fn steps_per_epoch(&self) -> usize {
        self.samples * self.num_repeats / self.batch_size.max(1)
    }

    pub fn epoch_of(&self, step: usize) -> usize {
        step / self.steps_per_epoch().max(1)
    }

    /// The shuffled order of one epoch's `samples × num_repeats` indices.
    pub fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.samples * self.num_repeats).map(|i| i % self.samples).collect();
        Rng::derive(&[self.seed, self.generation, ORDER_STREAM, epoch as u64]).shuffle(&mut order);
        order
    }

    fn sample_rng(&self, step: usize, slot: usize) -> Rng {
        Rng::derive(&[self.seed, self.generation, SAMPLE_STREAM, step as u64, slot as u64])
    }
}

/// One step's pairs as planar `[b, 3, h, w]` floats in [0, 1], ready to upload.
#[derive(Debug, Clone)]
pub struct Batch {
    pub step: usize,
    pub shape: [usize; 4],
    pub source: Vec<f32>,
    pub driving: Vec<f32>,
    /// Video name of each pair.
    pub videos: Vec<String>,
    /// Files skipped while assembling this batch.
    pub warnings: Vec<String>,
}

/// Assembles the batch of `step`. Videos that fail to read are added to `bad`, reported in
/// the batch's warnings and replaced by other draws; only a dataset with nothing readable left
/// is an error.
pub fn load_batch(
    dataset: &FramesDataset,
    plan: &BatchPlan,
    epoch_order: &[usize],
    step: usize,
    bad: &mut HashSet<usize>,
) -> Result<Batch> {
    let [h, w, _] = dataset.frame_shape;
    let b = plan.batch_size;
    let first = (step % plan.steps_per_epoch().max(1)) * b;
    let mut warnings = Vec::new();
    let mut sources = Vec::with_capacity(b);
    let mut drivings = Vec::with_capacity(b);
    let mut videos = Vec::with_capacity(b);
    for slot in 0..b {
        let mut rng = plan.sample_rng(step, slot);
        let mut index = epoch_order[(first + slot) % epoch_order.len()];
        let pair = loop {
            if bad.len() >= dataset.videos.len() {
                return Err(EngineError::media(
                    &dataset.dir,
                    "no readable video left: every one failed to load",
                ));
            }
            let video = dataset.video_of(index, &mut rng);
            if !bad.contains(&video) {
                match dataset.pair(video, &mut rng) {
                    Ok(pair) => break pair,
                    Err(error) => {
                        warnings.push(format!("skipped video {}: {error}", dataset.videos[video].name));
                        bad.insert(video);
                    }
                }
            }
            index = rng.below(dataset.len());
        };
        sources.push(pair.source);
        drivings.push(pair.driving);
        videos.push(pair.video);
    }
    Ok(Batch {
        step,
        shape: [b, 3, h, w],
        source: planar_rgb(&sources),
        driving: planar_rgb(&drivings),
        videos,
        warnings,
    })
}

/// Loads the batches of consecutive steps on a background thread, a few steps ahead.
#[derive(Debug)]
pub struct Prefetcher {
    receiver: Option<Receiver<Result<Batch>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn start(dataset: Arc<FramesDataset>, plan: BatchPlan, first_step: usize, depth: usize) -> Self {
        let (sender, receiver) = sync_channel(depth.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("prioritycut-data".into())
            .spawn(move || produce(&dataset, &plan, first_step, &sender, &flag))
            .ok();
        Self {
            receiver: Some(receiver),
            stop,
            thread,
        }
    }

    /// The next step's batch.
    pub fn next_batch(&self) -> Result<Batch> {
        self.receiver
            .as_ref()
            .and_then(|r| r.recv().ok())
            .ok_or_else(|| EngineError::Invalid("the data loading thread stopped".into()))?
    }
}

fn produce(
    dataset: &FramesDataset,
    plan: &BatchPlan,
    first_step: usize,
    sender: &SyncSender<Result<Batch>>,
    stop: &AtomicBool,
) {
    let mut bad = HashSet::new();
    let mut cached: Option<(usize, Vec<usize>)> = None;
    let mut step = first_step;
    while !stop.load(Ordering::Relaxed) {
        let epoch = plan.epoch_of(step);
        if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            cached = Some((epoch, plan.epoch_order(epoch)));
        }
        let order = cached.as_ref().map(|(_, order)| order.as_slice()).unwrap_or_default();
        let batch = load_batch(dataset, plan, order, step, &mut bad);
        let failed = batch.is_err();
        if sender.send(batch).is_err() || failed {
            return;
        }
        step += 1;
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // With the receiver gone, a producer blocked on (or about to) send returns at once.
        drop(self.receiver.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use image::RgbImage;

    use super::*;

    #[test]
    fn every_sample_appears_num_repeats_times_per_epoch() {
        let plan = BatchPlan {
            samples: 5,
            num_repeats: 4,
            batch_size: 3,
            seed: 9,
            generation: 0,
        };
        assert_eq!(plan.steps_per_epoch(), 6);
        let order = plan.epoch_order(2);
        for s in 0..5 {
            assert_eq!(order.iter().filter(|&&i| i == s).count(), 4);
        }
        assert_eq!(order, plan.epoch_order(2));
        assert_ne!(order, plan.epoch_order(3));
        let other = BatchPlan {
            generation: 1,
            ..plan.clone()
        };
        assert_ne!(order, other.epoch_order(2));
    }

    #[test]
    fn planar_layout_is_channel_major() {
        let a = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 255, 0, 51]));
        let v = planar_rgb([&a, &a]);
        assert_eq!(v.len(), 12);
        assert_eq!(&v[..6], &[0.0, 1.0, 0.0, 0.0, 0.2, 0.2]);
    }
}
