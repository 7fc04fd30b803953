//! A joint detector for the synthetic figures that needs no weights: each part has its own
//! saturated hue (`data::synthetic::PARTS`) over a weakly saturated background, so a pixel's part
//! is read from its colour; each part's pixels give its extent along and across its axis; and the
//! figure's known build (`data::synthetic::BODY`) places the joints that other parts hide (the
//! neck under the head, the hips under the torso), as a pose network knows human anatomy.
//!
//! It runs on real and generated frames alike: a blurred or miscoloured part in a reconstruction
//! moves its joints or loses them, which is what AKD and MKR measure.

use image::RgbImage;

use super::{IdentityEvaluator, KeypointEvaluator};
use crate::data::synthetic::{BODY, JOINTS, PART_SATURATION, PARTS};

/// Indices into `PARTS` (not the generator's joint angles, `synthetic::angle`).
mod part {
    pub(super) const LEG_L: usize = 0;
    pub(super) const LEG_R: usize = 1;
    pub(super) const UPPER_ARM_L: usize = 2;
    pub(super) const FOREARM_L: usize = 3;
    pub(super) const TORSO: usize = 4;
    pub(super) const HEAD: usize = 5;
    pub(super) const UPPER_ARM_R: usize = 6;
    pub(super) const FOREARM_R: usize = 7;
}

/// One part's pixels, summarised along and across their principal axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartFit {
    /// Pixels (of the largest connected piece).
    pub area: usize,
    pub centroid: [f32; 2],
    /// Unit principal axis.
    pub axis: [f32; 2],
    /// Extremes of the pixel centres along the axis and across it, relative to the centroid.
    pub along: (f32, f32),
    pub across: (f32, f32),
}

impl PartFit {
    fn at(&self, along: f32, across: f32) -> [f32; 2] {
        let [dx, dy] = self.axis;
        [
            self.centroid[0] + dx * along - dy * across,
            self.centroid[1] + dy * along + dx * across,
        ]
    }

    /// The capsule's two axis ends: each extreme pulled in by the half width (the round cap).
    /// A pixel centre lies at most half a pixel inside the outline, so the extents across are
    /// widened by that before halving.
    fn ends(&self) -> [[f32; 2]; 2] {
        let radius = (self.across.1 - self.across.0 + 1.0) / 2.0;
        let middle = (self.across.0 + self.across.1) / 2.0;
        [
            self.at(self.along.0 - 0.5 + radius, middle),
            self.at(self.along.1 + 0.5 - radius, middle),
        ]
    }

    /// Its ends as (the one nearer `anchor`, the other).
    fn ends_from(&self, anchor: [f32; 2]) -> ([f32; 2], [f32; 2]) {
        let [a, b] = self.ends();
        if dist2(a, anchor) <= dist2(b, anchor) {
            (a, b)
        } else {
            (b, a)
        }
    }
}

fn dist2(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// Hue (degrees), saturation and value of an RGB pixel.
fn hsv_of(p: &image::Rgb<u8>) -> (f32, f32, f32) {
    let [r, g, b] = p.0.map(|c| f32::from(c) / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    if max <= 0.0 || chroma <= 0.0 {
        return (0.0, 0.0, max);
    }
    let hue = if max == r {
        60.0 * ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        60.0 * ((b - r) / chroma + 2.0)
    } else {
        60.0 * ((r - g) / chroma + 4.0)
    };
    (hue, chroma / max, max)
}

/// Tuning of the colour classification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourRule {
    /// Pixels below this saturation are background (parts are drawn at `PART_SATURATION`,
    /// backgrounds at most `BACKGROUND_MAX_SATURATION`).
    pub min_saturation: f32,
    /// Pixels darker than this carry no reliable hue.
    pub min_value: f32,
    /// Largest distance (degrees) from a part's hue; the parts are 45° apart.
    pub hue_tolerance: f32,
    /// A part needs at least this share of the image's pixels to count as found.
    pub min_area_fraction: f32,
}

impl Default for ColourRule {
    fn default() -> Self {
        Self {
            min_saturation: 0.55 * PART_SATURATION,
            min_value: 0.1,
            hue_tolerance: 20.0,
            min_area_fraction: 0.0008,
        }
    }
}

impl ColourRule {
    /// The part a pixel shows, if any.
    fn part_of(&self, p: &image::Rgb<u8>) -> Option<usize> {
        let (hue, saturation, value) = hsv_of(p);
        if saturation < self.min_saturation || value < self.min_value {
            return None;
        }
        PARTS
            .iter()
            .enumerate()
            .map(|(i, (_, h))| {
                let d = (hue - h).rem_euclid(360.0);
                (i, d.min(360.0 - d))
            })
            .filter(|&(_, d)| d <= self.hue_tolerance)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }
}

/// Every part's fit in `image` (in `PARTS` order), from its largest 8-connected piece of pixels;
/// `None` for parts with too few pixels.
pub fn fit_parts(image: &RgbImage, rule: &ColourRule) -> [Option<PartFit>; 8] {
    fit_parts_and_torso(image, rule).0
}

fn trunk(parts: &[Option<PartFit>; 8], torso_pixels: &[[f32; 2]]) -> Option<Trunk> {
    Trunk::find(parts[part::HEAD].as_ref()?, parts[part::TORSO].as_ref()?, torso_pixels)
}

/// [`fit_parts`], and the torso's pixels (x, y).
fn fit_parts_and_torso(image: &RgbImage, rule: &ColourRule) -> ([Option<PartFit>; 8], Vec<[f32; 2]>) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let labels: Vec<Option<usize>> = image.pixels().map(|p| rule.part_of(p)).collect();
    let min_area = ((rule.min_area_fraction * (w * h) as f32).ceil() as usize).max(3);
    let mut best: [Vec<usize>; 8] = Default::default();
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    for start in 0..w * h {
        let Some(part) = labels[start] else { continue };
        if seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut piece = Vec::new();
        while let Some(i) = stack.pop() {
            piece.push(i);
            let (x, y) = ((i % w) as isize, (i / w) as isize);
            for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                    continue;
                }
                let j = ny as usize * w + nx as usize;
                if !seen[j] && labels[j] == Some(part) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if piece.len() > best[part].len() {
            best[part] = piece;
        }
    }
    let torso = best[part::TORSO]
        .iter()
        .map(|&i| [(i % w) as f32, (i / w) as f32])
        .collect();
    (
        best.map(|pixels| (pixels.len() >= min_area).then(|| fit(&pixels, w))),
        torso,
    )
}

fn fit(pixels: &[usize], width: usize) -> PartFit {
    let points: Vec<[f32; 2]> = pixels
        .iter()
        .map(|&i| [(i % width) as f32, (i / width) as f32])
        .collect();
    let n = points.len() as f32;
    let cx = points.iter().map(|p| p[0]).sum::<f32>() / n;
    let cy = points.iter().map(|p| p[1]).sum::<f32>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0f32, 0.0f32, 0.0f32);
    for p in &points {
        let (dx, dy) = (p[0] - cx, p[1] - cy);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let angle = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let axis = [angle.cos(), angle.sin()];
    let (mut along, mut across) = ((f32::MAX, f32::MIN), (f32::MAX, f32::MIN));
    for p in &points {
        let (dx, dy) = (p[0] - cx, p[1] - cy);
        let a = dx * axis[0] + dy * axis[1];
        let c = -dx * axis[1] + dy * axis[0];
        along = (along.0.min(a), along.1.max(a));
        across = (across.0.min(c), across.1.max(c));
    }
    PartFit {
        area: points.len(),
        centroid: [cx, cy],
        axis,
        along,
        across,
    }
}

/// The figure's trunk as the detector sees it: head centre and radius, the unit vector down
/// the torso, across it (towards the figure's right, +x when upright), the pixels per unit of
/// the figure's build, and how far below the head centre the pelvis lies (pixels).
#[derive(Debug, Clone, Copy)]
struct Trunk {
    head: [f32; 2],
    head_radius: f32,
    down: [f32; 2],
    side: [f32; 2],
    scale: f32,
    pelvis_below: f32,
}

impl Trunk {
    /// From the head (a disc drawn over the torso) and the torso's pixels. The head's centre
    /// lies on the torso's axis, as does the centre of the torso's bottom cap, which nothing
    /// but an arm covers (the legs are drawn behind it).
    fn find(head: &PartFit, torso: &PartFit, torso_pixels: &[[f32; 2]]) -> Option<Self> {
        // Centre and radius from the extents: a bite taken by an arm drawn over the head moves
        // the centroid but rarely both extremes of a direction.
        let centre = head.at(
            (head.along.0 + head.along.1) / 2.0,
            (head.across.0 + head.across.1) / 2.0,
        );
        let radius = ((head.along.1 - head.along.0).max(head.across.1 - head.across.0) + 1.0) / 2.0;
        if !(radius > 0.0 && radius.is_finite()) {
            return None;
        }
        let scale = radius / BODY.head_radius;
        let cap = BODY.torso_width / 2.0 * scale;
        let mut down = torso.axis;
        let to_torso = [torso.centroid[0] - centre[0], torso.centroid[1] - centre[1]];
        if down[0] * to_torso[0] + down[1] * to_torso[1] < 0.0 {
            down = [-down[0], -down[1]];
        }
        let below = |p: &[f32; 2], down: [f32; 2]| (p[0] - centre[0]) * down[0] + (p[1] - centre[1]) * down[1];
        let bottom = |down: [f32; 2]| torso_pixels.iter().map(|p| below(p, down)).fold(f32::MIN, f32::max);
        // The axis through the bottom cap's centroid: the torso's own axis is pulled aside by
        // whatever arm covers it.
        let lowest = bottom(down);
        let cap_pixels: Vec<&[f32; 2]> = torso_pixels.iter().filter(|p| below(p, down) >= lowest - cap).collect();
        let n = cap_pixels.len() as f32;
        let cap_centroid = [
            cap_pixels.iter().map(|p| p[0]).sum::<f32>() / n,
            cap_pixels.iter().map(|p| p[1]).sum::<f32>() / n,
        ];
        let towards = [cap_centroid[0] - centre[0], cap_centroid[1] - centre[1]];
        let length = towards[0].hypot(towards[1]);
        if length > radius {
            down = [towards[0] / length, towards[1] / length];
        }
        Some(Self {
            head: centre,
            head_radius: radius,
            down,
            side: [down[1], -down[0]],
            scale,
            // The extreme pixel centre lies about half a pixel inside the cap's outline.
            pelvis_below: bottom(down) + 0.5 - cap,
        })
    }

    /// A point `below` pixels below the head centre along the torso and `across` build units
    /// across it.
    fn at_pixels(&self, below: f32, across: f32) -> [f32; 2] {
        let a = across * self.scale;
        [
            self.head[0] + self.down[0] * below + self.side[0] * a,
            self.head[1] + self.down[1] * below + self.side[1] * a,
        ]
    }

    /// The same with `below` in build units.
    fn at(&self, below: f32, across: f32) -> [f32; 2] {
        self.at_pixels(below * self.scale, across)
    }

    fn neck(&self) -> [f32; 2] {
        self.at(BODY.head_above_neck, 0.0)
    }
}

/// Finds the twelve joints of `data::synthetic::JOINTS` by colour.
#[derive(Debug, Clone, Default)]
pub struct FigureJoints {
    pub rule: ColourRule,
}

impl FigureJoints {
    /// The joints in `JOINTS` order.
    pub fn joints(&self, image: &RgbImage) -> [Option<[f32; 2]>; 12] {
        let (parts, torso_pixels) = fit_parts_and_torso(image, &self.rule);
        let mut joints = [None; 12];
        if let Some(t) = trunk(&parts, &torso_pixels) {
            let neck = BODY.head_above_neck;
            joints[0] = Some(t.neck());
            joints[1] = Some(t.at(-BODY.head_radius, 0.0));
            joints[2] = Some(t.at(neck + BODY.shoulder_below, -BODY.shoulder_across));
            joints[5] = Some(t.at(neck + BODY.shoulder_below, BODY.shoulder_across));
            joints[8] = Some(t.at_pixels(t.pelvis_below, -BODY.hip_across));
            joints[10] = Some(t.at_pixels(t.pelvis_below, BODY.hip_across));
        }
        // Arms: the elbow is the forearm's end nearer the shoulder (the forearm is drawn over the
        // upper arm there), else the upper arm's far end; the wrist is the forearm's far end.
        for (upper, fore, shoulder, elbow, wrist) in [
            (part::UPPER_ARM_L, part::FOREARM_L, 2, 3, 4),
            (part::UPPER_ARM_R, part::FOREARM_R, 5, 6, 7),
        ] {
            let anchor = joints[shoulder].or(parts[upper].map(|u| u.centroid));
            match (parts[fore], anchor) {
                (Some(f), Some(anchor)) => {
                    let (near, far) = f.ends_from(anchor);
                    joints[elbow] = Some(near);
                    joints[wrist] = Some(far);
                }
                (None, _) => {
                    if let (Some(u), Some(s)) = (parts[upper], joints[shoulder]) {
                        joints[elbow] = Some(u.ends_from(s).1);
                    }
                }
                _ => {}
            }
        }
        // Ankles: the leg's end away from the hip.
        for (leg, hip, ankle) in [(part::LEG_L, 8, 9), (part::LEG_R, 10, 11)] {
            if let (Some(l), Some(h)) = (parts[leg], joints[hip]) {
                joints[ankle] = Some(l.ends_from(h).1);
            }
        }
        joints
    }
}

impl KeypointEvaluator for FigureJoints {
    fn describe(&self) -> String {
        "the synthetic figures' colour joint detector (12 joints)".into()
    }

    fn keypoint_names(&self) -> Vec<String> {
        JOINTS.iter().map(|j| j.to_string()).collect()
    }

    fn detect(&self, image: &RgbImage) -> Vec<Option<[f32; 2]>> {
        self.joints(image).to_vec()
    }
}

/// A synthetic figure's identity: its build, which no pose changes: the head's radius and the
/// length from the head's centre down to the pelvis, in units of the frame side. Both come from
/// the head and the torso alone, which even a blurred reconstruction keeps (the thin limbs are
/// the first thing lost, and would leave AED unmeasured exactly where it matters). A
/// reconstruction that shrinks or stretches the figure drifts away from the real frame's build.
#[derive(Debug, Clone, Default)]
pub struct FigureProportions {
    pub rule: ColourRule,
}

impl IdentityEvaluator for FigureProportions {
    fn describe(&self) -> String {
        "the synthetic figures' build (head radius and head-to-pelvis length, per frame side)".into()
    }

    fn embed(&self, image: &RgbImage) -> Option<Vec<f32>> {
        let (parts, torso_pixels) = fit_parts_and_torso(image, &self.rule);
        let side = image.width().max(image.height()) as f32;
        let trunk = trunk(&parts, &torso_pixels)?;
        Some(vec![trunk.head_radius / side, trunk.pelvis_below / side])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{TruthPoint, render_video};

    fn truth(points: &[TruthPoint], name: &str) -> TruthPoint {
        points.iter().find(|p| p.name == name).cloned().expect(name)
    }

    /// Joint errors (pixels) over the frames of a few videos, for joints whose parts are fully
    /// in view, and how many of those the detector missed.
    fn errors(size: u32, in_view: f32) -> (Vec<(String, f32)>, usize) {
        let detector = FigureJoints::default();
        let (mut errors, mut missed) = (Vec::new(), 0);
        // Parts a joint's position is read from; a joint counts only when they are all in view.
        let needs: [&[&str]; 12] = [
            &["head", "torso"],
            &["head", "torso"],
            &["head", "torso"],
            &["head", "torso", "forearm_l"],
            &["forearm_l"],
            &["head", "torso"],
            &["head", "torso", "forearm_r"],
            &["forearm_r"],
            &["head", "torso"],
            &["head", "torso", "leg_l"],
            &["head", "torso"],
            &["head", "torso", "leg_r"],
        ];
        for video in 0..6 {
            for frame in render_video(11, video, 8, size) {
                let found = detector.joints(&frame.image);
                for (j, name) in JOINTS.iter().enumerate() {
                    if needs[j].iter().any(|part| truth(&frame.points, part).visible < in_view) {
                        continue;
                    }
                    let t = truth(&frame.points, name);
                    match found[j] {
                        Some(p) => errors.push((name.to_string(), dist2(p, [t.x, t.y]).sqrt())),
                        None => missed += 1,
                    }
                }
            }
        }
        (errors, missed)
    }

    #[test]
    fn finds_the_ground_truth_joints_of_synthetic_frames() {
        // Joints whose parts are at least 80% in view, then every joint (hidden arms included,
        // where a detector may be fooled).
        for (size, in_view) in [(64, 0.8), (128, 0.8), (64, 0.0), (128, 0.0)] {
            let (mut errors, missed) = errors(size, in_view);
            errors.sort_by(|a, b| a.1.total_cmp(&b.1));
            let n = errors.len();
            let median = errors[n / 2].1;
            let p90 = errors[n * 9 / 10].1;
            eprintln!(
                "{size} px, parts {in_view} in view: {n} joints, {missed} missed, median {median:.2} px, 90% {p90:.2} px"
            );
            assert!(n > 400, "too few joints: {n}");
            assert!(median < 1.0, "median error {median} px");
            assert!(p90 < 2.0, "90th percentile {p90} px");
            if in_view > 0.0 {
                assert_eq!(missed, 0);
            } else {
                assert!(missed * 50 < n, "{missed} of {n} missed");
            }
        }
    }

    #[test]
    fn background_and_grey_images_have_no_joints() {
        let detector = FigureJoints::default();
        let grey = RgbImage::from_pixel(64, 64, image::Rgb([120, 120, 120]));
        assert!(detector.joints(&grey).iter().all(Option::is_none));
        // A lone torso-coloured blob gives no trunk without a head.
        let mut image = grey.clone();
        for y in 20..40 {
            for x in 28..36 {
                image.put_pixel(x, y, image::Rgb([220, 40, 33]));
            }
        }
        let parts = fit_parts(&image, &ColourRule::default());
        assert!(parts[part::TORSO].is_some_and(|t| t.area == 160));
        assert!(detector.joints(&image).iter().all(Option::is_none));
        assert!(FigureProportions::default().embed(&image).is_none());
    }

    #[test]
    fn proportions_follow_the_figure_not_its_pose() {
        let identity = FigureProportions::default();
        let embeddings: Vec<Vec<Vec<f32>>> = (0..6)
            .map(|video| {
                render_video(5, video, 8, 128)
                    .iter()
                    .map(|f| identity.embed(&f.image).expect("every frame shows a head and a torso"))
                    .collect()
            })
            .collect();
        let mean = |e: &[Vec<f32>]| -> Vec<f32> {
            (0..2)
                .map(|k| e.iter().map(|v| v[k]).sum::<f32>() / e.len() as f32)
                .collect()
        };
        let distance = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt();
        // Within a video the build barely moves; between figures of different scale it does.
        let means: Vec<Vec<f32>> = embeddings.iter().map(|e| mean(e)).collect();
        let within: f32 = embeddings
            .iter()
            .zip(&means)
            .flat_map(|(e, m)| e.iter().map(move |v| distance(v, m)))
            .sum::<f32>()
            / embeddings.iter().map(Vec::len).sum::<usize>() as f32;
        let mut between = Vec::new();
        for a in 0..means.len() {
            for b in a + 1..means.len() {
                between.push(distance(&means[a], &means[b]));
            }
        }
        let spread = between.iter().copied().fold(0.0f32, f32::max);
        eprintln!("within {within:.4}, largest between {spread:.4}");
        assert!(within < spread / 2.0, "within {within} vs between {spread}");
    }
}
