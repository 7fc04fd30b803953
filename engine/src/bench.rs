//! Speed measurements with freshly initialised weights (speed does not depend on their values):
//! the animation path (keypoints of one driving frame plus the generator, dense motion
//! included, batch 1, read back to the CPU as a frame would be) and training steps.
//!
//! An animation frame reuses what depends on the source alone (its keypoints, its encoding, its
//! downsampled copy), as every animation path of the engine does; `cold` times the path that
//! recomputes the source every frame, as the official `make_animation` does.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

use crate::checkpoint::FommModels;
use crate::config::FommConfig;

/// Milliseconds per animation frame.
#[derive(Debug, Clone)]
pub struct AnimateBench {
    pub height: usize,
    pub width: usize,
    pub warmup: usize,
    /// The source recomputed every frame (FOMM's `make_animation`), not reused.
    pub cold: bool,
    /// Every timed run, in order.
    pub runs_ms: Vec<f64>,
    /// Median ms of the parts of a frame, timed separately: where the time goes.
    pub stages: Vec<(&'static str, f64)>,
}

impl AnimateBench {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }

    pub fn frames_per_second(&self) -> f64 {
        1000.0 / self.median_ms()
    }
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// Times `runs` animation frames after `warmup` untimed ones; `on_run(i)` reports progress.
pub fn bench_animate(
    config: &FommConfig,
    device: &Device,
    warmup: usize,
    runs: usize,
    cold: bool,
    mut on_run: impl FnMut(usize),
) -> AnimateBench {
    let models = FommModels::init(config, device);
    let [h, w, c] = config.frame_shape;
    let image = || Tensor::<4>::random([1, c, h, w], Distribution::Uniform(0.0, 1.0), device);
    let source = image();
    let driving = image();
    let kp_source = models.kp_detector.forward(source.clone());
    let encoded = models.generator.encode_source(source.clone());

    let frame = || {
        let kp_driving = models.kp_detector.forward(driving.clone());
        let out = if cold {
            let kp_source = models.kp_detector.forward(source.clone());
            models.generator.forward(source.clone(), &kp_driving, &kp_source)
        } else {
            models.generator.forward_encoded(&encoded, &kp_driving, &kp_source)
        };
        // Reading the frame back waits for the device and counts the copy a real frame needs.
        out.prediction.into_data()
    };
    for _ in 0..warmup {
        frame();
    }
    let mut runs_ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        frame();
        runs_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        on_run(i);
    }

    let stage_runs = runs.clamp(1, 3);
    let time = |f: &dyn Fn()| {
        let ms: Vec<f64> = (0..stage_runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        median(&ms)
    };
    let kp_driving = models.kp_detector.forward(driving.clone());
    let kp_detector_ms = time(&|| {
        models.kp_detector.forward(driving.clone()).value.into_data();
    });
    let source_ms = time(&|| {
        models.generator.encode_source(source.clone()).features.into_data();
    });
    let dense_motion_ms = time(&|| {
        let dense = models.generator.dense_motion_network.forward_downsampled(
            encoded.downsampled.clone(),
            &kp_driving,
            &kp_source,
        );
        dense.deformation.into_data();
    });
    let generator_ms = time(&|| {
        models
            .generator
            .forward_encoded(&encoded, &kp_driving, &kp_source)
            .prediction
            .into_data();
    });
    AnimateBench {
        height: h,
        width: w,
        warmup,
        cold,
        runs_ms,
        stages: vec![
            ("keypoint detector", kp_detector_ms),
            ("dense motion", dense_motion_ms),
            ("warp + bottleneck + decoder", (generator_ms - dense_motion_ms).max(0.0)),
            ("source encoding (once per photo)", source_ms),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}

/// Seconds per training step (generator step + discriminator step, one batch).
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub height: usize,
    pub width: usize,
    pub batch_size: usize,
    pub variant: crate::config::Variant,
    /// The perceptual loss timed, as described to the user.
    pub perceptual: String,
    pub warmup: usize,
    /// Every timed step, in order, in milliseconds.
    pub runs_ms: Vec<f64>,
}

impl TrainBench {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }

    pub fn steps_per_second(&self) -> f64 {
        1000.0 / self.median_ms()
    }
}

/// Times `runs` training steps of `config`'s variant on random frames after `warmup` untimed
/// ones; the perceptual loss is VGG19 from `vgg19` (any weights time the same) or the pixel
/// fallback. `on_run(i)` reports progress.
pub fn bench_train(
    config: &FommConfig,
    device: &Device,
    vgg19: Option<&std::path::Path>,
    warmup: usize,
    runs: usize,
    mut on_run: impl FnMut(usize),
) -> crate::Result<TrainBench> {
    use crate::loss::{PerceptualFeatures, PerceptualLoss};
    use crate::rng::Rng;
    let train_device = device.clone().autodiff();
    let features = match vgg19 {
        Some(path) => PerceptualFeatures::Vgg19 {
            net: crate::import::load_vgg19(path, &train_device)?,
            source: path.to_path_buf(),
        },
        None => PerceptualFeatures::PixelPyramid,
    };
    let perceptual = PerceptualLoss::new(
        features,
        &config.train.scales,
        &config.train.loss_weights.perceptual,
        &train_device,
    );
    let described = perceptual.describe();
    let mut learner = crate::train::Learner::new(config.clone(), perceptual, device)?;
    let [h, w, c] = config.frame_shape;
    let b = config.train.batch_size;
    let frames = || Tensor::<4>::random([b, c, h, w], Distribution::Uniform(0.0, 1.0), &train_device);
    let mut step = |i: usize| {
        let mut rng = Rng::derive(&[0, i as u64]);
        // The losses are read back inside the step, which waits for the device.
        learner.step(frames(), frames(), 1.0, &mut rng, false)
    };
    for i in 0..warmup {
        step(i);
    }
    let mut runs_ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let start = Instant::now();
        step(warmup + i);
        runs_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        on_run(i);
    }
    Ok(TrainBench {
        height: h,
        width: w,
        batch_size: b,
        variant: config.prioritycut.variant,
        perceptual: described,
        warmup,
        runs_ms,
    })
}
