//! Speed measurements with freshly initialised weights (speed does not depend on their values):
//! the animation path (keypoints of one driving frame plus the generator, dense motion
//! included, batch 1, read back to the CPU as a frame would be) and training steps.
//!
//! An animation frame reuses what depends on the source alone (its keypoints, its encoding, its
//! downsampled copy), as every animation path of the engine does; `cold` times the path that
//! recomputes the source every frame, as the official `make_animation` does.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};

use crate::backend::{Launches, count_launches, launches_kernels};
use crate::checkpoint::FommModels;
use crate::config::tpsmm::to_yaml;
use crate::config::{FommConfig, scaled};
use crate::family::MotionModel;
use crate::family::tpsmm::TpsmmAnimation;
use crate::kernels::Precision;
use crate::kernels::precision::storage_dtype;
use crate::model::InferenceForm;
use crate::model::tpsmm::{TpsmmConfig, TpsmmModels};
use crate::reference::{max_abs_error, worse};
use crate::train::TrainingConfig;

/// Milliseconds per animation frame.
#[derive(Debug, Clone)]
pub struct AnimateBench {
    pub height: usize,
    pub width: usize,
    pub warmup: usize,
    /// The source recomputed every frame (FOMM's `make_animation`), not reused.
    pub cold: bool,
    /// The networks ran in their inference form ([`crate::model::InferenceForm`]), as
    /// animation does on the CPU; false: the training form's eval mode.
    pub inference_form: bool,
    /// Every timed run, in order.
    pub runs_ms: Vec<f64>,
    /// Every timed run split where the host waits: recording the frame's operations (on a GPU:
    /// launching kernels as the queue fills), waiting for the device to finish, reading the
    /// frame back. On the CPU the first holds the arithmetic.
    pub phases_ms: Vec<RunPhases>,
    /// The parts of a frame, timed separately: where the time goes.
    pub stages: Vec<Stage>,
    /// The arithmetic counted from the config.
    pub work: AnimationWork,
    /// GPU kernel launches of one whole frame (`None` on the CPU).
    pub launches: Option<Launches>,
    /// On a GPU: whether frames read back without waiting for the device are the frames just
    /// computed (`None` on the CPU, which computes eagerly).
    pub read_back: Option<ReadBackCheck>,
    /// The process's memory once the timed frames ran (`None` where the OS does not say).
    pub memory: Option<ResidentMemory>,
    /// Cores the process kept busy on average over the timed runs ([`BusyCores`]).
    pub cores_busy: Option<f64>,
}

/// The process's resident memory from Linux's `/proc/self/status`: now (`VmRSS`) and at its
/// peak so far (`VmHWM`, the model's making included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResidentMemory {
    pub resident_mib: f64,
    pub peak_mib: f64,
}

impl ResidentMemory {
    /// This process's; `None` off Linux.
    pub fn read() -> Option<Self> {
        Self::from_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// From the text of a `/proc/<pid>/status` file.
    pub fn from_status(status: &str) -> Option<Self> {
        // "VmRSS:\t  614400 kB"
        let kib = |name: &str| -> Option<f64> { proc_field(status, name)?.split_whitespace().next()?.parse().ok() };
        Some(Self {
            resident_mib: kib("VmRSS")? / 1024.0,
            peak_mib: kib("VmHWM")? / 1024.0,
        })
    }

    pub fn describe(&self) -> String {
        format!("resident {:.0} MiB, peak {:.0} MiB", self.resident_mib, self.peak_mib)
    }
}

/// How many of the machine's cores a stretch of work kept busy on average: the process's CPU
/// time (every thread, user and system) over the wall time. Below the core count is time a core
/// waited: work on one thread while the others idled (in a training step on 2 cores, burn's
/// element-wise operations and its gradient sums on the calling thread), or threads waiting on
/// each other.
#[derive(Debug, Clone, Copy)]
pub struct BusyCores {
    started: Instant,
    cpu_seconds: Option<f64>,
}

impl BusyCores {
    /// Starts counting now.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            cpu_seconds: process_cpu_seconds(),
        }
    }

    /// Cores busy on average since [`BusyCores::start`]; `None` off Linux, and for less than
    /// [`BUSY_MIN_SECONDS`], which the CPU time's 10 ms ticks could not resolve.
    pub fn busy(&self) -> Option<f64> {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = process_cpu_seconds()? - self.cpu_seconds?;
        (wall >= BUSY_MIN_SECONDS).then_some(cpu / wall)
    }
}

/// The shortest stretch [`BusyCores`] reports on: its CPU time is read in ticks of 10 ms, so a
/// second's figure is good to ~2%.
pub const BUSY_MIN_SECONDS: f64 = 1.0;

/// A bench line's "1.73 of 2 cores busy" for what [`BusyCores::busy`] measured.
pub fn describe_busy(busy: Option<f64>) -> String {
    let cores = process_cores();
    match busy {
        Some(busy) => format!("{busy:.2} of {cores} cores busy"),
        None => format!("cores busy not counted (under {BUSY_MIN_SECONDS} s timed, or not Linux)"),
    }
}

/// The cores this process may run on, as every bench figure counts them (1 where unknown).
fn process_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// This process's CPU time so far, in seconds, from Linux's `/proc/self/stat`.
fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_from_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// User plus system time from the text of a `/proc/<pid>/stat` file: its 14th and 15th fields,
/// in clock ticks of 1/100 s (Linux's `USER_HZ`, fixed in its ABI). The 2nd field, the command
/// name in parentheses, may itself hold spaces and parentheses, so fields are counted after the
/// last `)`.
fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let ticks = |field: Option<&str>| field?.parse::<u64>().ok();
    let (user, system) = (ticks(fields.next())?, ticks(fields.next())?);
    Some((user + system) as f64 / 100.0)
}

/// Frames of two driving images, alternately, each read back as soon as it is recorded and
/// compared with the same frame read after the device has finished everything. A read must wait
/// for the work its frame depends on; if it ever returns a stale or half-written frame, the first
/// difference is not zero. The second says whether the two frames differ at all (with seeded
/// weights they differ little), without which the check could not tell them apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadBackCheck {
    pub unsynced_vs_synced: f32,
    pub between_drivings: f32,
}

impl ReadBackCheck {
    pub fn passed(&self) -> bool {
        self.unsynced_vs_synced == 0.0 && self.between_drivings > 0.0
    }
}

/// Where one timed run's time went, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunPhases {
    pub record: f64,
    pub wait: f64,
    pub read: f64,
}

impl RunPhases {
    /// The whole run.
    pub fn total(&self) -> f64 {
        self.record + self.wait + self.read
    }

    /// The mean of each phase over `runs`.
    pub fn mean(runs: &[RunPhases]) -> RunPhases {
        let n = runs.len().max(1) as f64;
        runs.iter().fold(RunPhases::default(), |sum, run| RunPhases {
            record: sum.record + run.record / n,
            wait: sum.wait + run.wait / n,
            read: sum.read + run.read / n,
        })
    }
}

/// A part of a frame: its median ms, its work, and on a GPU the kernels it launches.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: &'static str,
    pub ms: f64,
    pub work: Work,
    /// GPU kernel launches of one run of the stage (`None` on the CPU).
    pub launches: Option<Launches>,
}

impl Stage {
    pub fn gflops_per_second(&self) -> f64 {
        self.work.gflop / (self.ms / 1000.0)
    }

    /// The logical traffic's rate: what the stage must move, over its time.
    pub fn gigabytes_per_second(&self) -> f64 {
        self.work.megabytes / self.ms
    }

    /// [`Work::executed_gflop`] over the stage's time.
    pub fn executed_gflops_per_second(&self) -> f64 {
        self.work.executed_gflop / (self.ms / 1000.0)
    }
}

impl AnimateBench {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }

    pub fn frames_per_second(&self) -> f64 {
        1000.0 / self.median_ms()
    }

    /// The mean is what a video's frames cost together: unlike the median, it counts the
    /// occasional stall.
    pub fn mean_ms(&self) -> f64 {
        mean(&self.runs_ms)
    }

    /// Runs over twice the median: stalls the median does not show.
    pub fn stalled_runs(&self) -> usize {
        let median = self.median_ms();
        self.runs_ms.iter().filter(|&&ms| ms > 2.0 * median).count()
    }

    /// GFLOP of the frame timed (with the source's part when `cold`).
    pub fn gflop_per_frame(&self) -> f64 {
        self.work_per_frame().gflop
    }

    /// The work of the frame timed (with the source's part when `cold`).
    pub fn work_per_frame(&self) -> Work {
        if self.cold {
            self.work.per_frame_cold()
        } else {
            self.work.per_frame()
        }
    }

    pub fn gflops_per_second(&self) -> f64 {
        self.gflop_per_frame() * self.frames_per_second()
    }
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
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

/// Writes an animation model of `config` with seeded random weights to `dir` (`model.bpk` and
/// `config.yaml`, as `export-model` does), for benches that load a model as users do but must
/// not need a file that cannot travel.
pub fn write_seeded_model(config: &FommConfig, dir: &Path) -> crate::Result<()> {
    let device = Device::flex();
    device.seed(BENCH_SEED);
    let model = crate::family::fomm::FommAnimation {
        models: FommModels::init(config, &device),
        config: config.clone(),
    };
    model.export_for_animation(dir).map(|_| ())
}

/// An animation frame's timing for a model of any family, through what animation asks of it
/// ([`MotionModel`]): the stages are the driving keypoints, the source's encoding (once per
/// photo; every frame with `cold`) and the generation.
#[derive(Debug, Clone)]
pub struct MotionModelBench {
    pub runs_ms: Vec<f64>,
    pub warmup: usize,
    pub cold: bool,
    /// Median ms of each stage alone: keypoints of a frame, the source's encoding, generation.
    pub keypoints_ms: f64,
    pub source_ms: f64,
    pub generate_ms: f64,
    pub memory: Option<ResidentMemory>,
    /// Cores the process kept busy on average over the timed runs ([`BusyCores`]).
    pub cores_busy: Option<f64>,
}

impl MotionModelBench {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }
}

/// A TPSMM model of `config` with seeded random weights (speed does not depend on their
/// values), in its inference form unless `training_form`.
pub fn seeded_tpsmm(config: &TpsmmConfig, device: &Device, training_form: bool) -> TpsmmAnimation {
    device.seed(BENCH_SEED);
    let mut models = TpsmmModels::new(config, device);
    models.bg_predictor = None;
    let models = if training_form {
        models
    } else {
        models.into_inference_form()
    };
    TpsmmAnimation::new(models, config.clone(), to_yaml(config))
}

/// Times `runs` frames of `model` at `frame_shape` after `warmup` untimed ones, batch 1.
pub fn bench_motion_model(
    model: &dyn MotionModel,
    frame_shape: [usize; 3],
    device: &Device,
    warmup: usize,
    runs: usize,
    cold: bool,
    mut on_run: impl FnMut(usize),
) -> MotionModelBench {
    let [h, w, c] = frame_shape;
    device.seed(BENCH_SEED);
    let image = || Tensor::<4>::random([1, c, h, w], Distribution::Uniform(0.0, 1.0), device);
    let (source, driving) = (image(), image());
    let kp_source = model.keypoints(source.clone());
    let encoded = model.encode_source(source.clone());
    let frame = || {
        let start = Instant::now();
        let kp_driving = model.keypoints(driving.clone());
        let out = if cold {
            let kp_source = model.keypoints(source.clone());
            model.generate(&model.encode_source(source.clone()), &kp_driving, &kp_source)
        } else {
            model.generate(&encoded, &kp_driving, &kp_source)
        };
        out.prediction.into_data();
        start.elapsed().as_secs_f64() * 1000.0
    };
    for _ in 0..warmup {
        frame();
    }
    let busy = BusyCores::start();
    let runs_ms = (0..runs)
        .map(|i| {
            let ms = frame();
            on_run(i);
            ms
        })
        .collect();
    let cores_busy = busy.busy();
    let memory = ResidentMemory::read();
    let stage = |f: &dyn Fn()| {
        let ms: Vec<f64> = (0..runs.clamp(1, 3))
            .map(|_| {
                let start = Instant::now();
                f();
                let _ = device.sync();
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        median(&ms)
    };
    let kp_driving = model.keypoints(driving.clone());
    MotionModelBench {
        keypoints_ms: stage(&|| {
            model.keypoints(driving.clone()).value.into_data();
        }),
        source_ms: stage(&|| {
            let encoded = model.encode_source(source.clone());
            encoded.downsampled.into_data();
            for level in encoded.features {
                level.into_data();
            }
        }),
        generate_ms: stage(&|| {
            model.generate(&encoded, &kp_driving, &kp_source).prediction.into_data();
        }),
        runs_ms,
        warmup,
        cold,
        memory,
        cores_busy,
    }
}

/// [`write_seeded_model`] for a TPSMM config: its animation model with seeded weights.
pub fn write_seeded_tpsmm(config: &TpsmmConfig, dir: &Path) -> crate::Result<()> {
    seeded_tpsmm(config, &Device::flex(), true)
        .export_for_animation(dir)
        .map(|_| ())
}

/// Times `runs` animation frames after `warmup` untimed ones; `on_run(i)` reports progress.
pub fn bench_animate(
    config: &FommConfig,
    device: &Device,
    warmup: usize,
    runs: usize,
    cold: bool,
    training_form: bool,
    mut on_run: impl FnMut(usize),
) -> AnimateBench {
    device.seed(BENCH_SEED);
    let models = FommModels::init(config, device);
    let models = if training_form {
        models
    } else {
        models.in_precision(storage_dtype(device)).with_inference_form()
    };
    let [h, w, c] = config.frame_shape;
    let image = || Tensor::<4>::random([1, c, h, w], Distribution::Uniform(0.0, 1.0), device);
    let source = image();
    let driving = image();
    let kp_source = models.keypoints(source.clone());
    let encoded = models.encode_source(source.clone());

    let frame = || {
        let start = Instant::now();
        let kp_driving = models.keypoints(driving.clone());
        let out = if cold {
            let kp_source = models.keypoints(source.clone());
            models.generate(&models.encode_source(source.clone()), &kp_driving, &kp_source)
        } else {
            models.generate(&encoded, &kp_driving, &kp_source)
        };
        let recorded = Instant::now();
        let _ = device.sync();
        let finished = Instant::now();
        // Reading the frame back counts the copy a real frame needs.
        out.prediction.into_data();
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
        RunPhases {
            record: ms(start, recorded),
            wait: ms(recorded, finished),
            read: ms(finished, Instant::now()),
        }
    };
    // At least one untimed frame before launches are counted (autotuning's trials launch too);
    // the report says how many ran.
    let warmup = if launches_kernels(device) {
        warmup.max(1)
    } else {
        warmup
    };
    for _ in 0..warmup {
        frame();
    }
    let mut runs_ms = Vec::with_capacity(runs);
    let mut phases_ms = Vec::with_capacity(runs);
    let busy = BusyCores::start();
    for i in 0..runs {
        let phases = frame();
        runs_ms.push(phases.total());
        phases_ms.push(phases);
        on_run(i);
    }
    let cores_busy = busy.busy();
    let memory = ResidentMemory::read();
    let launches = count_launches(device, || {
        frame();
    });
    let read_back = launches_kernels(device).then(|| {
        let other = driving.clone().neg().add_scalar(1.0);
        let predict = |driving: &Tensor<4>| {
            let kp_driving = models.keypoints(driving.clone());
            models.generate(&encoded, &kp_driving, &kp_source).prediction
        };
        let synced = |driving: &Tensor<4>| {
            let prediction = predict(driving);
            let _ = device.sync();
            prediction.into_data()
        };
        let expected = [synced(&driving), synced(&other)];
        let mut unsynced_vs_synced = 0.0f32;
        for i in 0..4 {
            let read = predict(if i % 2 == 0 { &driving } else { &other }).into_data();
            unsynced_vs_synced = worse(unsynced_vs_synced, largest_difference(&read, &expected[i % 2]));
        }
        ReadBackCheck {
            unsynced_vs_synced,
            between_drivings: largest_difference(&expected[0], &expected[1]),
        }
    });

    let stage_runs = runs.clamp(1, 3);
    // A stage's median ms over `stage_runs`, and the launches of one more run.
    let time = |f: &dyn Fn()| {
        let ms: Vec<f64> = (0..stage_runs)
            .map(|_| {
                let start = Instant::now();
                f();
                // A read can return before work its output does not need has run.
                let _ = device.sync();
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        (median(&ms), count_launches(device, f))
    };
    let kp_driving = models.keypoints(driving.clone());
    let (kp_detector_ms, kp_detector_launches) = time(&|| {
        models.keypoints(driving.clone()).value.into_data();
    });
    let (source_ms, source_launches) = time(&|| {
        models.encode_source(source.clone()).features.into_data();
    });
    let (dense_motion_ms, dense_motion_launches) = time(&|| {
        let dense = models.dense_motion(encoded.downsampled.clone(), &kp_driving, &kp_source);
        dense.deformation.into_data();
    });
    let (generator_ms, generator_launches) = time(&|| {
        models
            .generate(&encoded, &kp_driving, &kp_source)
            .prediction
            .into_data();
    });
    // The generator's launches include dense motion's: the rest is the warp and the decoder.
    let decoder_launches = generator_launches.map(|g| Launches {
        total: g
            .total
            .saturating_sub(dense_motion_launches.as_ref().map_or(0, |d| d.total)),
        by_kernel: Vec::new(),
    });
    let work = AnimationWork::of(config, crate::kernels::precision())
        .stored_in(burn::tensor::DType::from(models.storage_dtype()).size());
    let stage = |name, ms, work, launches| Stage {
        name,
        ms,
        work,
        launches,
    };
    AnimateBench {
        height: h,
        width: w,
        warmup,
        cold,
        inference_form: models.has_inference_form(),
        runs_ms,
        phases_ms,
        stages: vec![
            stage(
                "keypoint detector",
                kp_detector_ms,
                work.kp_detector,
                kp_detector_launches,
            ),
            stage(
                "dense motion",
                dense_motion_ms,
                work.dense_motion,
                dense_motion_launches,
            ),
            stage(
                "warp + bottleneck + decoder",
                (generator_ms - dense_motion_ms).max(0.0),
                work.decoder,
                decoder_launches,
            ),
            stage(
                "source encoding (once per photo)",
                source_ms,
                work.source_encoding,
                source_launches,
            ),
        ],
        work,
        launches,
        read_back,
        memory,
        cores_busy,
    }
}

/// The largest absolute difference between two frames' values, as verify-reference measures it
/// (NaN for a non-finite value; infinite if either cannot be read as f32 or their sizes differ).
fn largest_difference(a: &burn::tensor::TensorData, b: &burn::tensor::TensorData) -> f32 {
    // Frames of a model stored in f16 are read back as they are, and compared in f32.
    let values = |data: &burn::tensor::TensorData| data.clone().convert::<f32>().try_into_vec::<f32>();
    match (values(a), values(b)) {
        (Ok(a), Ok(b)) if a.len() == b.len() => max_abs_error(&a, &b),
        _ => f32::INFINITY,
    }
}

/// The work of a part of a frame, counted from the config: its arithmetic (2 FLOP per
/// multiply-add of every convolution, which is all but a few percent of it: norms, activations,
/// softmax and grid sampling are left out) and the logical bytes its convolutions must move
/// at least (input and weights read once, output written once, f32), against which a device's
/// bandwidth is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    pub gflop: f64,
    pub megabytes: f64,
    /// The arithmetic the CPU's inference kernels execute for it, in f32 multiply-add slots (2
    /// FLOP each): Winograd's products where they replace a 3×3 convolution's multiplies, and a
    /// bf16 dot product's two multiply-adds per lane as one slot (it takes one f32 FMA's). What
    /// the CPU's measured FP32 peak is held against.
    pub executed_gflop: f64,
}

impl std::ops::Add for Work {
    type Output = Work;

    fn add(self, other: Work) -> Work {
        Work {
            gflop: self.gflop + other.gflop,
            megabytes: self.megabytes + other.megabytes,
            executed_gflop: self.executed_gflop + other.executed_gflop,
        }
    }
}

impl std::ops::Mul<f64> for Work {
    type Output = Work;

    fn mul(self, times: f64) -> Work {
        Work {
            gflop: self.gflop * times,
            megabytes: self.megabytes * times,
            executed_gflop: self.executed_gflop * times,
        }
    }
}

impl std::iter::Sum for Work {
    fn sum<I: Iterator<Item = Work>>(iter: I) -> Work {
        iter.fold(Work::default(), |a, b| a + b)
    }
}

/// The work of one animation frame, by part, counted from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnimationWork {
    /// The keypoint detector on one frame.
    pub kp_detector: Work,
    pub dense_motion: Work,
    /// `first` + the down blocks: what depends on the source alone.
    pub source_encoding: Work,
    /// Bottleneck, up blocks and the final convolution.
    pub decoder: Work,
}

impl AnimationWork {
    /// The work of `config`'s frame, its executed arithmetic as the CPU's inference kernels
    /// run it in `precision` (the bottleneck's residual blocks are what bf16 takes).
    pub fn of(config: &FommConfig, precision: Precision) -> Self {
        let conv3x3 = |cin, cout, h, w, upsampled| conv3x3_in(cin, cout, h, w, precision, false, upsampled);
        let [h, w, c] = config.frame_shape;
        let kp = &config.kp_detector;
        let (kh, kw) = (scaled(h, kp.scale_factor), scaled(w, kp.scale_factor));
        let features = kp.block_expansion + c;
        let (oh, ow) = ((kh + 2 * kp.pad).saturating_sub(6), (kw + 2 * kp.pad).saturating_sub(6));
        let jacobians = if kp.single_jacobian_map { 1 } else { kp.num_kp };
        let kp_detector = hourglass(kp.block_expansion, c, kp.num_blocks, kp.max_features, kh, kw, &conv3x3)
            + conv(features, kp.num_kp, 7, oh, ow)
            + if kp.estimate_jacobian {
                conv(features, 4 * jacobians, 7, oh, ow)
            } else {
                Work::default()
            };

        let g = &config.generator;
        let dm = &g.dense_motion;
        let (dh, dw) = (scaled(h, dm.scale_factor), scaled(w, dm.scale_factor));
        let inputs = (g.num_kp + 1) * (c + 1);
        let features = dm.block_expansion + inputs;
        let dense_motion = hourglass(
            dm.block_expansion,
            inputs,
            dm.num_blocks,
            dm.max_features,
            dh,
            dw,
            &conv3x3,
        ) + conv(features, g.num_kp + 1, 7, dh, dw)
            + if g.estimate_occlusion_map {
                conv(features, 1, 7, dh, dw)
            } else {
                Work::default()
            };

        let ch = |level: usize| g.max_features.min(g.block_expansion << level);
        let n = g.num_down_blocks;
        let at = |level: usize| (h >> level, w >> level);
        let mut source_encoding = conv(c, g.block_expansion, 7, h, w);
        let mut decoder = conv(g.block_expansion, c, 7, h, w);
        for i in 0..n {
            let (lh, lw) = at(i);
            source_encoding = source_encoding + conv3x3(ch(i), ch(i + 1), lh, lw, false);
            decoder = decoder + conv3x3(ch(i + 1), ch(i), lh, lw, true);
        }
        let (bh, bw) = at(n);
        let residual = conv3x3_in(ch(n), ch(n), bh, bw, precision, true, false);
        decoder = decoder + residual * (2 * g.num_bottleneck_blocks) as f64;
        Self {
            kp_detector,
            dense_motion,
            source_encoding,
            decoder,
        }
    }

    /// The same work with maps and weights of `bytes_per_value` bytes (2 for a model stored in
    /// f16) instead of f32's 4.
    pub fn stored_in(self, bytes_per_value: usize) -> Self {
        let scale = |work: Work| Work {
            megabytes: work.megabytes * bytes_per_value as f64 / 4.0,
            ..work
        };
        Self {
            kp_detector: scale(self.kp_detector),
            dense_motion: scale(self.dense_motion),
            source_encoding: scale(self.source_encoding),
            decoder: scale(self.decoder),
        }
    }

    /// A frame when the source's part is reused: driving keypoints, dense motion, decoder.
    pub fn per_frame(&self) -> Work {
        self.kp_detector + self.dense_motion + self.decoder
    }

    /// A frame of FOMM's `make_animation`, which recomputes the source's part.
    pub fn per_frame_cold(&self) -> Work {
        self.per_frame() + self.source_encoding
    }
}

/// A `k`×`k` convolution producing `cout` × `h` × `w` from `cin` channels (same size), run
/// directly (as the CPU runs the 7×7 ones).
fn conv(cin: usize, cout: usize, k: usize, h: usize, w: usize) -> Work {
    let (pixels, weights) = ((h * w) as f64, (cin * cout * k * k) as f64);
    let gflop = 2.0 * weights * pixels / 1e9;
    Work {
        gflop,
        megabytes: 4.0 * ((cin + cout) as f64 * pixels + weights) / 1e6,
        executed_gflop: gflop,
    }
}

/// A 3×3 convolution as [`conv`], its executed arithmetic the multiplies inference's kernel
/// chooses for the map in `precision` (`residual`: a residual block's, which bf16 takes;
/// `upsampled`: an up-block's, whose input is upsampled ×2 first).
fn conv3x3_in(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    precision: Precision,
    residual: bool,
    upsampled: bool,
) -> Work {
    let (multiplies, runs_in) = crate::kernels::inference_multiplies(precision, residual, upsampled, h, w);
    let slots = if runs_in == Precision::Bf16 { 0.5 } else { 1.0 };
    Work {
        executed_gflop: 2.0 * slots * (multiplies * cin * cout) as f64 / 1e9,
        ..conv(cin, cout, 3, h, w)
    }
}

/// FOMM's hourglass on an `h`×`w` input: 3×3 convolutions (`conv3x3(C_in, C_out, h, w, upsampled)`) down
/// (then pooled) and up (after upsampling), with the skips' channels.
fn hourglass(
    expansion: usize,
    inputs: usize,
    blocks: usize,
    max: usize,
    h: usize,
    w: usize,
    conv3x3: &dyn Fn(usize, usize, usize, usize, bool) -> Work,
) -> Work {
    let ch = |level: usize| max.min(expansion << level);
    (0..blocks)
        .map(|i| {
            let (lh, lw) = (h >> i, w >> i);
            let down_in = if i == 0 { inputs } else { ch(i) };
            let up_in = if i == blocks - 1 { 1 } else { 2 } * ch(i + 1);
            conv3x3(down_in, ch(i + 1), lh, lw, false) + conv3x3(up_in, ch(i), lh, lw, true)
        })
        .sum()
}

/// The value of the first `name : value` line of a /proc file's text (/proc/cpuinfo: the first
/// processor's; /proc/self/status).
fn proc_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

/// The CPU a figure was measured on, as /proc/cpuinfo names it: every bench line carries it, so
/// that a figure is never read against the wrong machine (the CPU kind changes between our
/// machines: Zen 3, 4 and 5 differ in vector width and in bf16/int8 dot products).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMachine {
    pub model_name: String,
    pub family: Option<u32>,
    pub model: Option<u32>,
    pub cores: usize,
    /// The widest vector instructions present: "AVX-512", "AVX2", "SSE" or "none".
    pub vector: &'static str,
    /// AVX512-BF16 (bf16 dot products: Zen 4/5, Intel since Cooper Lake).
    pub bf16: bool,
    /// AVX512-VNNI or AVX-VNNI (int8 dot products).
    pub vnni: bool,
}

impl CpuMachine {
    /// This machine (its first processor's entry in /proc/cpuinfo; cores as the process sees them).
    pub fn detect() -> Self {
        let cores = process_cores();
        Self::from_cpuinfo(cores, &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
    }

    pub fn from_cpuinfo(cores: usize, cpuinfo: &str) -> Self {
        let field = |name: &str| proc_field(cpuinfo, name);
        let flags: Vec<&str> = field("flags")
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default();
        let has = |flag: &str| flags.contains(&flag);
        let vector = if has("avx512f") {
            "AVX-512"
        } else if has("avx2") {
            "AVX2"
        } else if has("sse2") {
            "SSE"
        } else {
            "none"
        };
        Self {
            model_name: field("model name").unwrap_or("unknown CPU").to_string(),
            family: field("cpu family").and_then(|v| v.parse().ok()),
            model: field("model").and_then(|v| v.parse().ok()),
            cores,
            vector,
            bf16: has("avx512_bf16"),
            vnni: has("avx512_vnni") || has("avx_vnni"),
        }
    }

    pub fn describe(&self) -> String {
        let number = |n: Option<u32>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
        let yes_no = |present: bool| if present { "yes" } else { "no" };
        format!(
            "{} (family {} model {}), {} cores, {}, AVX512-BF16 {}, VNNI {}",
            self.model_name,
            number(self.family),
            number(self.model),
            self.cores,
            self.vector,
            yes_no(self.bf16),
            yes_no(self.vnni)
        )
    }
}

/// This CPU's FP32 peak, estimated as cores × SIMD lanes × FMA units × 2 FLOP × clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuPeak {
    pub cores: usize,
    /// FP32 lanes one FMA unit retires per cycle: the vector width the CPU actually executes.
    pub lanes: usize,
    pub fma_units: usize,
    pub ghz: f64,
    /// Zen 4 decodes AVX-512 but runs it on 256-bit units, so it counts 8 lanes, not 16.
    pub avx512_half_rate: bool,
}

impl CpuPeak {
    /// Cores and SIMD width as detected; two FMA units per core (Zen 3–5, and Intel since
    /// Haswell); the clock from /proc/cpuinfo where it is readable, else 2.45 GHz.
    pub fn estimate() -> Self {
        let cores = process_cores();
        #[cfg(target_arch = "x86_64")]
        let vector_lanes = if std::arch::is_x86_feature_detected!("avx512f") {
            16
        } else if std::arch::is_x86_feature_detected!("avx2") {
            8
        } else {
            4
        };
        #[cfg(not(target_arch = "x86_64"))]
        let vector_lanes = 4;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_cpuinfo(cores, vector_lanes, &cpuinfo)
    }

    /// The estimate from the detected vector width and the text of /proc/cpuinfo (its first
    /// processor's `vendor_id`, `cpu family` and `cpu MHz`).
    pub fn from_cpuinfo(cores: usize, vector_lanes: usize, cpuinfo: &str) -> Self {
        let field = |name: &str| proc_field(cpuinfo, name);
        let ghz = field("cpu MHz")
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(2.45, |mhz| mhz / 1000.0);
        // AMD family 25 (0x19) is Zen 3 and Zen 4; only Zen 4 has AVX-512, double-pumped.
        let zen4 = field("vendor_id") == Some("AuthenticAMD") && field("cpu family") == Some("25");
        let avx512_half_rate = zen4 && vector_lanes == 16;
        Self {
            cores,
            lanes: if avx512_half_rate { 8 } else { vector_lanes },
            fma_units: 2,
            ghz,
            avx512_half_rate,
        }
    }

    pub fn gflops(&self) -> f64 {
        (self.cores * self.lanes * self.fma_units * 2) as f64 * self.ghz
    }

    pub fn describe(&self) -> String {
        format!(
            "~{:.0} GFLOP/s FP32 peak (estimate: {} cores x {} lanes{} x {} FMA x 2 x {:.2} GHz)",
            self.gflops(),
            self.cores,
            self.lanes,
            if self.avx512_half_rate {
                " (Zen 4: AVX-512 on 256-bit units)"
            } else {
                ""
            },
            self.fma_units,
            self.ghz
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{
        BUSY_MIN_SECONDS, BusyCores, CpuMachine, CpuPeak, ResidentMemory, RunPhases, cpu_seconds_from_stat,
        describe_busy, mean, median, process_cores,
    };

    #[test]
    fn the_machine_is_named_from_cpuinfo() {
        let zen4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n";
        let machine = CpuMachine::from_cpuinfo(2, zen4);
        assert_eq!(
            machine.describe(),
            "AMD EPYC 9R14 (family 25 model 17), 2 cores, AVX-512, AVX512-BF16 yes, VNNI yes"
        );
        let zen3 = CpuMachine::from_cpuinfo(2, "cpu family\t: 25\nmodel\t\t: 1\nflags\t: sse2 avx2 fma\n");
        assert_eq!((zen3.vector, zen3.bf16, zen3.vnni), ("AVX2", false, false));
        assert_eq!(
            CpuMachine::from_cpuinfo(1, "").describe(),
            "unknown CPU (family ? model ?), 1 cores, none, AVX512-BF16 no, VNNI no"
        );
    }

    #[test]
    fn peak_counts_the_width_the_cpu_executes() {
        let info = |family: &str| {
            format!(
                "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: 17\ncpu MHz\t\t: 2600.000\n"
            )
        };
        // Zen 3 (AVX2): 2 cores x 8 lanes x 2 FMA x 2 x 2.6 GHz.
        let zen3 = CpuPeak::from_cpuinfo(2, 8, &info("25"));
        assert!((zen3.gflops() - 166.4).abs() < 1e-9, "{zen3:?}");
        // Zen 4 decodes AVX-512 but retires 8 lanes per FMA unit: the same peak as Zen 3's.
        let zen4 = CpuPeak::from_cpuinfo(2, 16, &info("25"));
        assert_eq!((zen4.lanes, zen4.avx512_half_rate), (8, true));
        assert!(zen4.describe().contains("Zen 4"), "{}", zen4.describe());
        // Zen 5 (family 26) has full-width AVX-512 units.
        let zen5 = CpuPeak::from_cpuinfo(2, 16, &info("26"));
        assert!((zen5.gflops() - 332.8).abs() < 1e-9, "{zen5:?}");
        // No clock readable: the documented 2.45 GHz fallback.
        assert!((CpuPeak::from_cpuinfo(1, 8, "").ghz - 2.45).abs() < 1e-12);
    }

    #[test]
    fn vox256_work_matches_a_count_by_hand() {
        let work = super::AnimationWork::of(&crate::config::FommConfig::vox256(), super::Precision::F32);
        let giga = 1e-9;
        // first 7x7 3->64 at 256^2, 3x3 64->128 at 256^2, 3x3 128->256 at 128^2.
        let encoding =
            2.0 * (3.0 * 64.0 * 49.0 * 65536.0 + 64.0 * 128.0 * 9.0 * 65536.0 + 128.0 * 256.0 * 9.0 * 16384.0);
        assert!((work.source_encoding.gflop - encoding * giga).abs() < 1e-9, "{work:?}");
        // Six ResBlocks of two 3x3 256->256 at 64^2, then the mirror of the encoding.
        let bottleneck = 12.0 * 2.0 * 256.0 * 256.0 * 9.0 * 4096.0;
        assert!(
            (work.decoder.gflop - (bottleneck + encoding) * giga).abs() < 1e-9,
            "{work:?}"
        );
        assert!(work.kp_detector.gflop > 1.0 && work.kp_detector.gflop < 3.0, "{work:?}");
        assert!(
            work.dense_motion.gflop > 4.0 && work.dense_motion.gflop < 9.0,
            "{work:?}"
        );
        let cold = work.per_frame_cold();
        let warm = work.per_frame() + work.source_encoding;
        assert!((cold.gflop - warm.gflop).abs() < 1e-9 && (cold.megabytes - warm.megabytes).abs() < 1e-9);
        // The first 7x7 convolution's bytes: 3 + 64 maps of 256^2 and 3*64*49 weights, f32.
        let first = 4.0 * (67.0 * 65536.0 + 3.0 * 64.0 * 49.0) / 1e6;
        let rest = 4.0
            * ((64.0 + 128.0) * 65536.0 + 64.0 * 128.0 * 9.0 + (128.0 + 256.0) * 16384.0 + 128.0 * 256.0 * 9.0)
            / 1e6;
        assert!((work.source_encoding.megabytes - first - rest).abs() < 1e-9, "{work:?}");
    }

    /// The arithmetic executed: the 7×7 convolutions as counted; the 64² bottleneck by
    /// F(4×4, 3×3), a quarter of its multiplies (an eighth of the slots in bf16, whose dot
    /// product does two per slot); the 128² and 256² maps by F(6×6, 3×3), 64 products per 36
    /// outputs over ⌈side/6⌉² tiles, 49 of them for the decoder's upsampled inputs where our
    /// packed micro-kernel runs (the others are zero in every tile).
    #[test]
    fn vox256_executed_work_counts_the_kernels_products() {
        let config = crate::config::FommConfig::vox256();
        let (f32_work, bf16_work) = (
            super::AnimationWork::of(&config, super::Precision::F32),
            super::AnimationWork::of(&config, super::Precision::Bf16),
        );
        let giga = 1e-9;
        let bottleneck = 12.0 * 2.0 * 256.0 * 256.0 * 9.0 * 4096.0;
        let upsampled_products = if crate::kernels::cpu::unsafe_simd::f32_gemm::supported() {
            49.0
        } else {
            64.0
        };
        let f6_tiles = |side: f64| (side / 6.0).ceil().powi(2) * upsampled_products;
        // The decoder: 7x7 64->3 at 256^2, 3x3 128->64 at 256^2 and 256->128 at 128^2.
        let direct_7x7 = 2.0 * 64.0 * 3.0 * 49.0 * 65536.0;
        let decoder_f6 = 2.0 * (128.0 * 64.0 * f6_tiles(256.0) + 256.0 * 128.0 * f6_tiles(128.0));
        let expected = (bottleneck / 4.0 + decoder_f6 + direct_7x7) * giga;
        assert!(
            (f32_work.decoder.executed_gflop - expected).abs() < 1e-9,
            "{f32_work:?}"
        );
        let expected_bf16 = (bottleneck / 8.0 + decoder_f6 + direct_7x7) * giga;
        assert!(
            (bf16_work.decoder.executed_gflop - expected_bf16).abs() < 1e-9,
            "{bf16_work:?}"
        );
        // Only the bottleneck takes bf16.
        assert_eq!(f32_work.kp_detector, bf16_work.kp_detector);
        assert_eq!(f32_work.dense_motion, bf16_work.dense_motion);
        for part in [f32_work.kp_detector, f32_work.dense_motion, f32_work.source_encoding] {
            assert!(
                part.executed_gflop < part.gflop && part.executed_gflop > 0.1 * part.gflop,
                "{part:?}"
            );
        }
    }

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        let status = "Name:\tprioritycut\nVmPeak:\t 9000000 kB\nVmHWM:\t 1228800 kB\nVmRSS:\t  614400 kB\n";
        let memory = ResidentMemory::from_status(status).expect("both fields");
        assert_eq!((memory.resident_mib, memory.peak_mib), (600.0, 1200.0));
        assert_eq!(memory.describe(), "resident 600 MiB, peak 1200 MiB");
        assert!(ResidentMemory::from_status("Name:\tx\n").is_none());
        // The bench reads its own on Linux.
        if cfg!(target_os = "linux") {
            assert!(ResidentMemory::read().is_some_and(|m| m.resident_mib > 0.0));
        }
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        // utime 250 and stime 37 ticks; the name holds spaces and a ')' of its own.
        let stat = "4242 (prio (cut) x) R 1 4242 4242 0 -1 4194304 900 0 0 0 250 37 0 0 20 0 3 0 77 1 2";
        assert_eq!(cpu_seconds_from_stat(stat), Some(2.87));
        assert_eq!(cpu_seconds_from_stat("4242 (x) R 1 2"), None);
        assert_eq!(cpu_seconds_from_stat("no name here"), None);
        if cfg!(target_os = "linux") {
            // Work on this thread alone counts, and cannot keep more cores busy than exist.
            let busy = BusyCores::start();
            let mut x = 0u64;
            let start = std::time::Instant::now();
            while start.elapsed().as_secs_f64() < BUSY_MIN_SECONDS + 0.1 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let cores = process_cores() as f64;
            let busy = busy.busy().expect("Linux reports CPU time");
            assert!(busy > 0.3 && busy <= cores + 0.1, "{busy}");
            assert!(describe_busy(Some(busy)).ends_with("cores busy"));
            // Too short a stretch to resolve is not reported.
            assert_eq!(BusyCores::start().busy(), None);
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn mean_counts_the_stalls_the_median_hides() {
        let runs = [7.0, 150.0, 7.0, 160.0, 8.0];
        assert_eq!(median(&runs), 8.0);
        assert_eq!(mean(&runs), 66.4);
        let phases = [
            RunPhases {
                record: 1.0,
                wait: 4.0,
                read: 1.0,
            },
            RunPhases {
                record: 3.0,
                wait: 2.0,
                read: 1.0,
            },
        ];
        assert_eq!(
            RunPhases::mean(&phases),
            RunPhases {
                record: 2.0,
                wait: 3.0,
                read: 1.0
            }
        );
    }
}

/// Seconds per training step (generator step + discriminator step, one batch).
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub height: usize,
    pub width: usize,
    pub batch_size: usize,
    pub variant: crate::config::Variant,
    /// The family trained ("FOMM", "TPSMM").
    pub family: &'static str,
    /// The epoch the steps were taken at (TPSMM's schedule switches work on and off by epoch).
    pub epoch: usize,
    /// The perceptual loss timed, as described to the user.
    pub perceptual: String,
    pub warmup: usize,
    /// Every timed step, in order, in milliseconds.
    pub runs_ms: Vec<f64>,
    /// GPU kernel launches of one step (`None` on the CPU).
    pub launches: Option<Launches>,
    /// Cores the process kept busy on average over the timed runs ([`BusyCores`]).
    pub cores_busy: Option<f64>,
    /// One more step, stage by stage, each stage waited for on the device: `(stage, ms)` in
    /// the order they ran (empty for a family whose learner times no stages).
    pub stages_ms: Vec<(&'static str, f64)>,
}

impl TrainBench {
    /// The stages as `stage 12 ms (3%)`, the share of their sum.
    pub fn describe_stages(&self) -> String {
        let total: f64 = self.stages_ms.iter().map(|(_, ms)| ms).sum();
        self.stages_ms
            .iter()
            .map(|(stage, ms)| format!("{stage} {ms:.0} ms ({:.0}%)", 100.0 * ms / total.max(f64::MIN_POSITIVE)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }

    pub fn steps_per_second(&self) -> f64 {
        1000.0 / self.median_ms()
    }
}

/// The perceptual loss a training bench times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchPerceptual {
    /// VGG19 with torchvision's weights from this file.
    Vgg19File(PathBuf),
    /// VGG19 with seeded random weights: the same work as real weights, no file needed.
    Vgg19Seeded,
    /// The pixel-pyramid fallback (training without VGG19 weights): much cheaper.
    PixelPyramid,
}

/// The seed of the random weights that benches without a weights file use.
pub const BENCH_SEED: u64 = 2022;

/// Times `runs` training steps of `config`'s variant on random frames after `warmup` untimed
/// ones with the `perceptual` loss (any VGG19 weights time the same), at the family's steady state ([`crate::train::FamilyTraining::steady_epoch`]).
/// `on_run(i)` reports progress.
pub fn bench_train(
    config: &TrainingConfig,
    device: &Device,
    perceptual: &BenchPerceptual,
    warmup: usize,
    runs: usize,
    mut on_run: impl FnMut(usize),
) -> crate::Result<TrainBench> {
    use crate::loss::{PerceptualFeatures, PerceptualLoss};
    use crate::rng::Rng;
    let train_device = device.clone().autodiff();
    if *perceptual != BenchPerceptual::PixelPyramid {
        crate::train::check_vgg_sizes(config)?;
    }
    let features = match perceptual {
        BenchPerceptual::Vgg19File(path) => PerceptualFeatures::Vgg19 {
            net: crate::import::load_vgg19(path, &train_device)?,
            weights: path.display().to_string(),
        },
        BenchPerceptual::Vgg19Seeded => {
            train_device.seed(BENCH_SEED);
            PerceptualFeatures::Vgg19 {
                net: crate::model::vgg19::Vgg19::new(&train_device).no_grad().frozen(),
                weights: format!("seeded random weights, seed {BENCH_SEED}"),
            }
        }
        BenchPerceptual::PixelPyramid => PerceptualFeatures::PixelPyramid,
    };
    let (scales, weights) = config.perceptual();
    let perceptual = PerceptualLoss::new(features, scales, weights, &train_device);
    let described = perceptual.describe();
    let mut learner = config.learner(perceptual, device)?;
    let [h, w, c] = config.frame_shape();
    let (_, _, b) = config.schedule();
    let epoch = config.steady_epoch();
    let frames = || Tensor::<4>::random([b, c, h, w], Distribution::Uniform(0.0, 1.0), &train_device);
    let step = |learner: &mut Box<dyn crate::train::family::StepLearner>, i: usize| {
        let mut rng = Rng::derive(&[0, i as u64]);
        learner.step(frames(), frames(), epoch, &mut rng, false)
    };
    for i in 0..warmup {
        step(&mut learner, i);
    }
    let mut runs_ms = Vec::with_capacity(runs);
    let busy = BusyCores::start();
    for i in 0..runs {
        let start = Instant::now();
        step(&mut learner, warmup + i);
        // The losses are read inside the step, but the optimiser's updates may still be queued.
        let _ = device.sync();
        runs_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        on_run(i);
    }
    let cores_busy = busy.busy();
    learner.time_stages(true);
    step(&mut learner, warmup + runs);
    let stages_ms = learner
        .stage_times()
        .into_iter()
        .map(|(stage, s)| (stage, s * 1e3))
        .collect();
    learner.time_stages(false);
    let launches = count_launches(device, || {
        step(&mut learner, warmup + runs + 1);
    });
    Ok(TrainBench {
        height: h,
        width: w,
        batch_size: b,
        variant: config.variant(),
        family: config.family(),
        epoch,
        perceptual: described,
        warmup,
        runs_ms,
        launches,
        cores_busy,
        stages_ms,
    })
}
