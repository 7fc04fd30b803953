//! A synthetic dataset in FOMM's layout, for tests, demos and the bundled model: textured
//! articulated figures (eight rigid parts on joints) moving over textured static backgrounds,
//! their parts occluding each other and the background.
//!
//! Every part has its own saturated hue (its texture only changes brightness), and backgrounds
//! are weakly saturated, so a part can be found in any image by its colour. Beside the videos,
//! `truth/` holds per frame the joints and part centres (pixels) with how visible each part is,
//! and the figure's coverage mask:
//!
//! ```text
//! OUT/train/fig-0000/0000.png …        FOMM's layout (frames folders), nothing else inside
//! OUT/test/…
//! OUT/truth/train/fig-0000/points.csv  frame,point,x,y,visible
//! OUT/truth/train/fig-0000/masks/0000.png
//! OUT/synthetic.json                   what was generated (parts, hues, seed)
//! ```

use std::f32::consts::PI;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};

use crate::rng::Rng;
use crate::{EngineError, Result};

/// The parts, back-to-front in the default drawing order, and their hues (degrees).
pub const PARTS: [(&str, f32); 8] = [
    ("leg_l", 270.0),
    ("leg_r", 315.0),
    ("upper_arm_l", 90.0),
    ("forearm_l", 135.0),
    ("torso", 0.0),
    ("head", 45.0),
    ("upper_arm_r", 180.0),
    ("forearm_r", 225.0),
];

/// Saturation and brightness of the part colours before texture.
pub const PART_SATURATION: f32 = 0.85;
/// Backgrounds stay below this saturation, well apart from the parts'.
pub const BACKGROUND_MAX_SATURATION: f32 = 0.25;

/// The joints reported in the ground truth.
pub const JOINTS: [&str; 12] = [
    "neck",
    "head_top",
    "shoulder_l",
    "elbow_l",
    "wrist_l",
    "shoulder_r",
    "elbow_r",
    "wrist_r",
    "hip_l",
    "ankle_l",
    "hip_r",
    "ankle_r",
];

/// The figure's build, in units of the frame side at scale 1 (each figure is scaled by 0.8–1.05).
/// The generator draws with it, and the joint detector (`evaluators::FigureJoints`) knows it,
/// as a pose network knows human anatomy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Body {
    pub torso_length: f32,
    pub torso_width: f32,
    /// Head centre above the neck, along the torso.
    pub head_above_neck: f32,
    pub head_radius: f32,
    /// Shoulders: across from the neck, and below it.
    pub shoulder_across: f32,
    pub shoulder_below: f32,
    /// Hips: across from the pelvis.
    pub hip_across: f32,
    /// (length, width) of the limbs.
    pub upper_arm: (f32, f32),
    pub forearm: (f32, f32),
    pub leg: (f32, f32),
}

pub const BODY: Body = Body {
    torso_length: 0.30,
    torso_width: 0.16,
    head_above_neck: 0.085,
    head_radius: 0.075,
    shoulder_across: 0.075,
    shoulder_below: 0.02,
    hip_across: 0.045,
    upper_arm: (0.16, 0.06),
    forearm: (0.14, 0.05),
    leg: (0.2, 0.07),
};

#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Frame side in pixels.
    pub size: u32,
    pub train_videos: usize,
    pub test_videos: usize,
    pub frames: usize,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            size: 64,
            train_videos: 24,
            test_videos: 6,
            frames: 32,
            seed: 0,
        }
    }
}

/// A point of the ground truth, in pixels (x right, y down).
#[derive(Debug, Clone, PartialEq)]
pub struct TruthPoint {
    pub name: String,
    pub x: f32,
    pub y: f32,
    /// For parts: the visible fraction of the part's area (0 = hidden); joints: 1.
    pub visible: f32,
}

/// One rendered frame.
#[derive(Debug, Clone)]
pub struct RenderedFrame {
    pub image: RgbImage,
    /// Figure coverage, 255 = figure.
    pub mask: GrayImage,
    pub points: Vec<TruthPoint>,
}

/// A rigid capsule: from `start` along `angle` (radians, 0 = down the image, counter-clockwise
/// towards +x) for `length`, `width` across; or a disc of radius `width / 2` when `length` is 0.
#[derive(Debug, Clone, Copy)]
struct Part {
    start: [f32; 2],
    angle: f32,
    length: f32,
    width: f32,
}

impl Part {
    fn direction(&self) -> [f32; 2] {
        [self.angle.sin(), self.angle.cos()]
    }

    fn end(&self) -> [f32; 2] {
        let d = self.direction();
        [self.start[0] + d[0] * self.length, self.start[1] + d[1] * self.length]
    }

    fn centre(&self) -> [f32; 2] {
        let d = self.direction();
        let half = self.length / 2.0;
        [self.start[0] + d[0] * half, self.start[1] + d[1] * half]
    }

    /// Part coordinates of `p`: along the axis from the start, and across it.
    fn local(&self, p: [f32; 2]) -> (f32, f32) {
        let d = self.direction();
        let (dx, dy) = (p[0] - self.start[0], p[1] - self.start[1]);
        (dx * d[0] + dy * d[1], -dx * d[1] + dy * d[0])
    }

    fn contains(&self, p: [f32; 2]) -> Option<(f32, f32)> {
        let (u, v) = self.local(p);
        let along = u.clamp(0.0, self.length);
        let r = self.width / 2.0;
        ((u - along).powi(2) + v.powi(2) <= r * r).then_some((u, v))
    }
}

/// One figure's fixed look and its motion, drawn from the video's random stream.
#[derive(Debug, Clone)]
struct Figure {
    scale: f32,
    centre: [f32; 2],
    drift: [f32; 2],
    drift_phase: [f32; 2],
    /// Per angle: base, amplitude, cycles per clip, phase.
    motion: [[f32; 4]; 8],
    right_in_front: bool,
    stripe_period: [f32; 8],
    stripe_phase: [f32; 8],
}

/// Indices of `Figure::motion`'s joint angles (not of `PARTS`, which the joint detector counts
/// in its own order).
mod angle {
    pub(super) const TORSO: usize = 0;
    pub(super) const HEAD: usize = 1;
    pub(super) const UPPER_L: usize = 2;
    pub(super) const FORE_L: usize = 3;
    pub(super) const UPPER_R: usize = 4;
    pub(super) const FORE_R: usize = 5;
    pub(super) const LEG_L: usize = 6;
    pub(super) const LEG_R: usize = 7;
}

impl Figure {
    fn random(rng: &mut Rng) -> Self {
        let deg = |d: f64| (d as f32).to_radians();
        let mut motion = [[0.0f32; 4]; 8];
        // (base, amplitude) ranges in degrees; arms swing widely, so they cross the torso.
        let ranges: [(f64, f64, f64, f64); 8] = [
            (-8.0, 8.0, 4.0, 14.0),     // torso sway
            (-10.0, 10.0, 5.0, 20.0),   // head nod, relative to torso
            (-70.0, -25.0, 25.0, 60.0), // left upper arm (towards -x)
            (-40.0, 0.0, 15.0, 50.0),   // left forearm, relative
            (25.0, 70.0, 25.0, 60.0),   // right upper arm
            (0.0, 40.0, 15.0, 50.0),    // right forearm, relative
            (-20.0, -5.0, 5.0, 20.0),   // left leg
            (5.0, 20.0, 5.0, 20.0),     // right leg
        ];
        for (m, (b0, b1, a0, a1)) in motion.iter_mut().zip(ranges) {
            *m = [
                deg(rng.range(b0, b1)),
                deg(rng.range(a0, a1)),
                rng.range(0.5, 1.6) as f32,
                rng.range(0.0, std::f64::consts::TAU) as f32,
            ];
        }
        Self {
            scale: rng.range(0.8, 1.05) as f32,
            centre: [rng.range(0.42, 0.58) as f32, rng.range(0.45, 0.55) as f32],
            drift: [rng.range(0.0, 0.08) as f32, rng.range(0.0, 0.05) as f32],
            drift_phase: [
                rng.range(0.0, std::f64::consts::TAU) as f32,
                rng.range(0.0, std::f64::consts::TAU) as f32,
            ],
            motion,
            right_in_front: rng.bernoulli(0.5),
            stripe_period: std::array::from_fn(|_| rng.range(0.035, 0.07) as f32),
            stripe_phase: std::array::from_fn(|_| rng.range(0.0, std::f64::consts::TAU) as f32),
        }
    }

    fn angle(&self, which: usize, t: f32) -> f32 {
        let [base, amplitude, cycles, phase] = self.motion[which];
        base + amplitude * (2.0 * PI * cycles * t + phase).sin()
    }

    /// The parts at time `t` ∈ [0, 1], in `PARTS` order, in image-fraction units.
    fn pose(&self, t: f32) -> ([Part; 8], Vec<(&'static str, [f32; 2])>) {
        let s = self.scale;
        let centre = [
            self.centre[0] + self.drift[0] * (2.0 * PI * t + self.drift_phase[0]).sin(),
            self.centre[1] + self.drift[1] * (2.0 * PI * t + self.drift_phase[1]).sin(),
        ];
        let torso_angle = self.angle(angle::TORSO, t);
        let torso_length = BODY.torso_length * s;
        // The torso runs from the neck down to the pelvis.
        let up = [-(torso_angle.sin()), -(torso_angle.cos())];
        let side = [torso_angle.cos(), -torso_angle.sin()];
        let neck = [
            centre[0] + up[0] * torso_length / 2.0,
            centre[1] + up[1] * torso_length / 2.0,
        ];
        let pelvis = [
            centre[0] - up[0] * torso_length / 2.0,
            centre[1] - up[1] * torso_length / 2.0,
        ];
        let torso = Part {
            start: neck,
            angle: torso_angle,
            length: torso_length,
            width: BODY.torso_width * s,
        };
        let offset = |p: [f32; 2], across: f32, along: f32| {
            [
                p[0] + side[0] * across + up[0] * along,
                p[1] + side[1] * across + up[1] * along,
            ]
        };
        let head_angle = torso_angle + self.angle(angle::HEAD, t);
        let head_centre = offset(neck, 0.0, BODY.head_above_neck * s);
        let head = Part {
            start: head_centre,
            angle: head_angle,
            length: 0.0,
            width: 2.0 * BODY.head_radius * s,
        };
        let shoulder_l = offset(neck, -BODY.shoulder_across * s, -BODY.shoulder_below * s);
        let shoulder_r = offset(neck, BODY.shoulder_across * s, -BODY.shoulder_below * s);
        let limb = |start: [f32; 2], angle: f32, (length, width): (f32, f32)| Part {
            start,
            angle,
            length: length * s,
            width: width * s,
        };
        let upper_l = limb(shoulder_l, torso_angle + self.angle(angle::UPPER_L, t), BODY.upper_arm);
        let fore_l = limb(
            upper_l.end(),
            upper_l.angle + self.angle(angle::FORE_L, t),
            BODY.forearm,
        );
        let upper_r = limb(shoulder_r, torso_angle + self.angle(angle::UPPER_R, t), BODY.upper_arm);
        let fore_r = limb(
            upper_r.end(),
            upper_r.angle + self.angle(angle::FORE_R, t),
            BODY.forearm,
        );
        let hip_l = offset(pelvis, -BODY.hip_across * s, 0.0);
        let hip_r = offset(pelvis, BODY.hip_across * s, 0.0);
        let leg_l = limb(hip_l, torso_angle + self.angle(angle::LEG_L, t), BODY.leg);
        let leg_r = limb(hip_r, torso_angle + self.angle(angle::LEG_R, t), BODY.leg);
        let head_top = offset(head_centre, 0.0, BODY.head_radius * s);
        let joints = vec![
            ("neck", neck),
            ("head_top", head_top),
            ("shoulder_l", shoulder_l),
            ("elbow_l", upper_l.end()),
            ("wrist_l", fore_l.end()),
            ("shoulder_r", shoulder_r),
            ("elbow_r", upper_r.end()),
            ("wrist_r", fore_r.end()),
            ("hip_l", hip_l),
            ("ankle_l", leg_l.end()),
            ("hip_r", hip_r),
            ("ankle_r", leg_r.end()),
        ];
        ([leg_l, leg_r, upper_l, fore_l, torso, head, upper_r, fore_r], joints)
    }

    /// Part indices back to front: one arm behind the torso, the other in front.
    fn draw_order(&self) -> [usize; 8] {
        if self.right_in_front {
            [0, 1, 2, 3, 4, 5, 6, 7]
        } else {
            [0, 1, 6, 7, 4, 5, 2, 3]
        }
    }

    /// Texture brightness of part `index` at part coordinates (u, v): stripes across and
    /// along the part, and a face on the head, so that its motion shows.
    fn brightness(&self, index: usize, u: f32, v: f32, width: f32) -> f32 {
        if PARTS[index].0 == "head" {
            let r = width / 2.0;
            let (x, y) = (v / r, -u / r); // x across, y up the head
            let eye = |ex: f32| ((x - ex).powi(2) + (y - 0.25).powi(2)) < 0.03;
            let mouth = y < -0.3 && y > -0.5 && x.abs() < 0.35;
            return if eye(-0.35) || eye(0.35) || mouth {
                0.35
            } else {
                0.8 + 0.2 * (x * 5.0).sin() * (y * 5.0).cos()
            };
        }
        let p = self.stripe_period[index];
        let phase = self.stripe_phase[index];
        0.72 + 0.18 * (2.0 * PI * u / p + phase).sin() + 0.1 * (2.0 * PI * v / (0.8 * width)).cos()
    }
}

/// HSV (h in degrees, s and v in [0, 1]) to RGB in [0, 1].
pub fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let c = v * s;
    let hp = h.rem_euclid(360.0) / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// A static background: a weakly saturated base colour under a few random waves and blobs.
#[derive(Debug, Clone)]
struct Background {
    hue: f32,
    saturation: f32,
    waves: Vec<[f32; 4]>,
    blobs: Vec<[f32; 4]>,
}

impl Background {
    fn random(rng: &mut Rng) -> Self {
        Self {
            hue: rng.range(0.0, 360.0) as f32,
            saturation: rng.range(0.05, BACKGROUND_MAX_SATURATION as f64 - 0.05) as f32,
            waves: (0..3)
                .map(|_| {
                    let angle = rng.range(0.0, std::f64::consts::PI) as f32;
                    [
                        angle.cos(),
                        angle.sin(),
                        rng.range(4.0, 14.0) as f32,
                        rng.range(0.0, std::f64::consts::TAU) as f32,
                    ]
                })
                .collect(),
            blobs: (0..4)
                .map(|_| {
                    [
                        rng.range(0.0, 1.0) as f32,
                        rng.range(0.0, 1.0) as f32,
                        rng.range(0.06, 0.2) as f32,
                        rng.range(-0.25, 0.25) as f32,
                    ]
                })
                .collect(),
        }
    }

    fn colour(&self, p: [f32; 2]) -> [f32; 3] {
        let mut v = 0.55;
        for [dx, dy, freq, phase] in &self.waves {
            v += 0.07 * (2.0 * PI * freq * (p[0] * dx + p[1] * dy) + phase).sin();
        }
        for [bx, by, radius, amount] in &self.blobs {
            if (p[0] - bx).powi(2) + (p[1] - by).powi(2) < radius * radius {
                v += amount;
            }
        }
        hsv(self.hue, self.saturation, v.clamp(0.1, 0.95))
    }
}

/// Samples per pixel side (anti-aliasing).
const SUPERSAMPLE: u32 = 2;

fn render(figure: &Figure, background: &Background, t: f32, size: u32) -> RenderedFrame {
    let (parts, joints) = figure.pose(t);
    let order = figure.draw_order();
    let n = SUPERSAMPLE;
    let mut image = RgbImage::new(size, size);
    let mut mask = GrayImage::new(size, size);
    let mut covered = [0u32; 8];
    let mut visible = [0u32; 8];
    let samples = (n * n) as f32;
    for py in 0..size {
        for px in 0..size {
            let mut sum = [0.0f32; 3];
            let mut figure_samples = 0;
            for sy in 0..n {
                for sx in 0..n {
                    let p = [
                        (px as f32 + (sx as f32 + 0.5) / n as f32) / size as f32,
                        (py as f32 + (sy as f32 + 0.5) / n as f32) / size as f32,
                    ];
                    let mut top = None;
                    for &i in &order {
                        if let Some((u, v)) = parts[i].contains(p) {
                            covered[i] += 1;
                            top = Some((i, u, v));
                        }
                    }
                    let colour = match top {
                        Some((i, u, v)) => {
                            visible[i] += 1;
                            figure_samples += 1;
                            let b = figure.brightness(i, u, v, parts[i].width).clamp(0.2, 1.0);
                            hsv(PARTS[i].1, PART_SATURATION, b)
                        }
                        None => background.colour(p),
                    };
                    for c in 0..3 {
                        sum[c] += colour[c];
                    }
                }
            }
            image.put_pixel(
                px,
                py,
                image::Rgb(sum.map(|v| (v / samples * 255.0).round().clamp(0.0, 255.0) as u8)),
            );
            mask.put_pixel(
                px,
                py,
                image::Luma([(figure_samples as f32 / samples * 255.0).round() as u8]),
            );
        }
    }
    let to_pixels = |p: [f32; 2]| (p[0] * size as f32 - 0.5, p[1] * size as f32 - 0.5);
    let mut points = Vec::with_capacity(PARTS.len() + joints.len());
    for (i, part) in parts.iter().enumerate() {
        let (x, y) = to_pixels(part.centre());
        let fraction = if covered[i] == 0 {
            0.0
        } else {
            visible[i] as f32 / covered[i] as f32
        };
        points.push(TruthPoint {
            name: PARTS[i].0.to_string(),
            x,
            y,
            visible: fraction,
        });
    }
    for (name, p) in joints {
        let (x, y) = to_pixels(p);
        points.push(TruthPoint {
            name: name.to_string(),
            x,
            y,
            visible: 1.0,
        });
    }
    RenderedFrame { image, mask, points }
}

/// The frames of one synthetic video, from its own random stream.
pub fn render_video(seed: u64, video: u64, frames: usize, size: u32) -> Vec<RenderedFrame> {
    let mut rng = Rng::derive(&[seed, video]);
    let figure = Figure::random(&mut rng);
    let background = Background::random(&mut rng);
    (0..frames)
        .map(|i| render(&figure, &background, i as f32 / frames.max(1) as f32, size))
        .collect()
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct SyntheticSummary {
    pub root: PathBuf,
    pub train_videos: usize,
    pub test_videos: usize,
    pub frames: usize,
}

/// Writes a synthetic dataset to `out`; `on_video(done, total)` reports progress. Refuses a
/// folder that already holds something other than an earlier synthetic dataset.
pub fn generate(
    out: &Path,
    config: &SyntheticConfig,
    mut on_video: impl FnMut(usize, usize),
) -> Result<SyntheticSummary> {
    if config.size < 16 || config.frames < 2 || config.train_videos == 0 || config.test_videos == 0 {
        return Err(EngineError::Invalid(
            "a synthetic dataset needs size ≥ 16, at least 2 frames, and at least one train and one test video".into(),
        ));
    }
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map_err(|e| EngineError::io(out, e))?
            .next()
            .is_none();
        if !empty && !out.join("synthetic.json").is_file() {
            return Err(EngineError::media(
                out,
                "exists and is not an empty folder or a synthetic dataset",
            ));
        }
    }
    let total = config.train_videos + config.test_videos;
    let jobs: Vec<(&str, usize, u64)> = (0..config.train_videos)
        .map(|i| ("train", i, i as u64))
        .chain((0..config.test_videos).map(|i| ("test", i, (config.train_videos + i) as u64)))
        .collect();
    let write_video = |(split, index, video): (&str, usize, u64)| -> Result<()> {
        let name = format!("fig-{index:04}");
        let frames_dir = out.join(split).join(&name);
        let truth_dir = out.join("truth").join(split).join(&name);
        let masks_dir = truth_dir.join("masks");
        for dir in [&frames_dir, &masks_dir] {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        }
        let mut csv = String::from("frame,point,x,y,visible\n");
        for (f, frame) in render_video(config.seed, video, config.frames, config.size)
            .iter()
            .enumerate()
        {
            crate::files::write_png(&frames_dir.join(format!("{f:04}.png")), &frame.image)?;
            crate::files::write_png(&masks_dir.join(format!("{f:04}.png")), &frame.mask)?;
            for p in &frame.points {
                let _ = writeln!(csv, "{f},{},{:.3},{:.3},{:.3}", p.name, p.x, p.y, p.visible);
            }
        }
        crate::files::write_atomic(&truth_dir.join("points.csv"), csv.as_bytes())
    };
    // Videos are independent: render them on every core.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (sender, receiver) = std::sync::mpsc::channel::<Result<()>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let sender = sender.clone();
            let (jobs, next, write_video) = (&jobs, &next, &write_video);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&job) = jobs.get(i) else { break };
                    if sender.send(write_video(job)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut done = 0;
        for result in receiver {
            result?;
            done += 1;
            on_video(done, total);
        }
        Ok::<(), EngineError>(())
    })?;
    let parts: Vec<String> = PARTS
        .iter()
        .map(|(name, hue)| format!("{{\"name\": \"{name}\", \"hue\": {hue}}}"))
        .collect();
    let summary = format!(
        "{{\n  \"generator\": \"prioritycut synthetic figures\",\n  \"seed\": {},\n  \"size\": {},\n  \"frames\": {},\n  \
         \"train_videos\": {},\n  \"test_videos\": {},\n  \"part_saturation\": {PART_SATURATION},\n  \
         \"background_max_saturation\": {BACKGROUND_MAX_SATURATION},\n  \"parts\": [{}],\n  \"joints\": {:?}\n}}\n",
        config.seed,
        config.size,
        config.frames,
        config.train_videos,
        config.test_videos,
        parts.join(", "),
        JOINTS,
    );
    crate::files::write_atomic(&out.join("synthetic.json"), summary.as_bytes())?;
    Ok(SyntheticSummary {
        root: out.to_path_buf(),
        train_videos: config.train_videos,
        test_videos: config.test_videos,
        frames: config.frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saturation(p: &image::Rgb<u8>) -> f32 {
        let max = p.0.iter().copied().max().unwrap_or(0) as f32;
        let min = p.0.iter().copied().min().unwrap_or(0) as f32;
        if max == 0.0 { 0.0 } else { (max - min) / max }
    }

    #[test]
    fn figures_move_occlude_and_stand_out_from_the_background() {
        let frames = render_video(3, 1, 8, 64);
        assert_eq!(frames.len(), 8);
        assert_ne!(frames[0].image, frames[4].image, "the figure moves");
        // The background does not move: a pixel far from the figure in every frame is constant.
        let far = (0..64u32)
            .flat_map(|y| (0..64u32).map(move |x| (x, y)))
            .find(|&(x, y)| frames.iter().all(|f| f.mask.get_pixel(x, y)[0] == 0));
        let (x, y) = far.expect("some background pixel is never covered");
        assert!(
            frames
                .iter()
                .all(|f| f.image.get_pixel(x, y) == frames[0].image.get_pixel(x, y))
        );
        for frame in &frames {
            let coverage = frame.mask.pixels().filter(|p| p[0] == 255).count();
            assert!((300..3000).contains(&coverage), "figure covers {coverage} px");
            // Inside the figure, only pixels on the seam of two parts (whose hues average) lose
            // saturation; outside it, none is saturated.
            let mut figure = 0;
            let mut saturated = 0;
            for (pixel, m) in frame.image.pixels().zip(frame.mask.pixels()) {
                let s = saturation(pixel);
                match m[0] {
                    255 => {
                        figure += 1;
                        saturated += usize::from(s > 0.6);
                    }
                    0 => assert!(s < BACKGROUND_MAX_SATURATION + 0.02, "background pixel {pixel:?}"),
                    _ => {}
                }
            }
            assert!(saturated as f64 > 0.93 * figure as f64, "{saturated} of {figure}");
            assert_eq!(frame.points.len(), PARTS.len() + JOINTS.len());
            let torso = frame.points.iter().find(|p| p.name == "torso").expect("torso");
            assert_eq!(
                frame.mask.get_pixel(torso.x.round() as u32, torso.y.round() as u32)[0],
                255
            );
        }
        // Somewhere in the clip a part is partly hidden by another.
        assert!(
            frames
                .iter()
                .flat_map(|f| f.points.iter().take(PARTS.len()))
                .any(|p| p.visible < 0.95),
            "no occlusion"
        );
    }

    #[test]
    fn generate_writes_fomm_layout_with_truth_beside_it() {
        let out = crate::test_support::temp_dir("synthetic");
        let config = SyntheticConfig {
            size: 32,
            train_videos: 2,
            test_videos: 1,
            frames: 3,
            seed: 1,
        };
        let mut calls = 0;
        generate(&out, &config, |_, _| calls += 1).expect("generate");
        assert_eq!(calls, 3);
        let frames: Vec<_> = std::fs::read_dir(out.join("train/fig-0001")).expect("video").collect();
        assert_eq!(frames.len(), 3, "only frames inside a video folder");
        let csv = std::fs::read_to_string(out.join("truth/test/fig-0000/points.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 1 + 3 * (PARTS.len() + JOINTS.len()));
        assert!(out.join("truth/train/fig-0000/masks/0002.png").is_file());
        assert!(out.join("synthetic.json").is_file());
        // Same seed, same pixels.
        let again = render_video(1, 0, 3, 32);
        let saved = image::open(out.join("train/fig-0000/0001.png")).expect("png").to_rgb8();
        assert_eq!(again[1].image, saved);
        // A folder with other content is refused.
        let busy = out.join("train");
        assert!(generate(&busy, &config, |_, _| {}).is_err());
    }
}
