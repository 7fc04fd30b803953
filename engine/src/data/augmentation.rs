//! FOMM's training-time augmentation of a clip (`augmentation.py`, `AllAugmentationTransform`
//! with `flip_param` and `jitter_param`): the same random flips and colour jitter for every
//! frame of the clip, so source and driving stay consistent.
//!
//! The jitter follows torchvision's functional adjustments on 8-bit images: brightness blends
//! with black, contrast with the mean grey level, saturation with the grey image, and hue
//! rotates in HSV; their order is shuffled per clip, as FOMM does.

use image::RgbImage;

use crate::config::DatasetParams;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Jitter {
    Brightness(f32),
    Contrast(f32),
    Saturation(f32),
    Hue(f32),
}

/// Applies FOMM's random flips and colour jitter to `clip` (in place), in FOMM's order: time
/// flip and horizontal flip (each with probability ½), then jitter.
pub fn augment_clip(clip: &mut [RgbImage], params: &DatasetParams, rng: &mut Rng) {
    if params.time_flip && rng.bernoulli(0.5) {
        clip.reverse();
    }
    if params.horizontal_flip && rng.bernoulli(0.5) {
        for frame in clip.iter_mut() {
            image::imageops::flip_horizontal_in_place(frame);
        }
    }
    let mut jitters = Vec::with_capacity(4);
    let factor = |rng: &mut Rng, amount: f64| rng.range((1.0 - amount).max(0.0), 1.0 + amount) as f32;
    if params.brightness > 0.0 {
        jitters.push(Jitter::Brightness(factor(rng, params.brightness)));
    }
    if params.contrast > 0.0 {
        jitters.push(Jitter::Contrast(factor(rng, params.contrast)));
    }
    if params.saturation > 0.0 {
        jitters.push(Jitter::Saturation(factor(rng, params.saturation)));
    }
    if params.hue > 0.0 {
        jitters.push(Jitter::Hue(rng.range(-params.hue, params.hue) as f32));
    }
    rng.shuffle(&mut jitters);
    for frame in clip.iter_mut() {
        for &jitter in &jitters {
            apply(frame, jitter);
        }
    }
}

/// ITU-R 601-2 luma, as PIL's conversion to "L".
fn luma(p: &image::Rgb<u8>) -> f32 {
    p[0] as f32 * 0.299 + p[1] as f32 * 0.587 + p[2] as f32 * 0.114
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

fn apply(frame: &mut RgbImage, jitter: Jitter) {
    match jitter {
        Jitter::Brightness(f) => {
            for p in frame.pixels_mut() {
                p.0 = p.0.map(|c| to_u8(c as f32 * f));
            }
        }
        Jitter::Contrast(f) => {
            let count = (frame.width() * frame.height()).max(1) as f32;
            let mean = (frame.pixels().map(luma).sum::<f32>() / count).round();
            for p in frame.pixels_mut() {
                p.0 = p.0.map(|c| to_u8(c as f32 * f + mean * (1.0 - f)));
            }
        }
        Jitter::Saturation(f) => {
            for p in frame.pixels_mut() {
                let grey = luma(p).round();
                p.0 = p.0.map(|c| to_u8(c as f32 * f + grey * (1.0 - f)));
            }
        }
        Jitter::Hue(shift) => {
            for p in frame.pixels_mut() {
                let (h, s, v) = rgb_to_hsv(p.0);
                p.0 = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
            }
        }
    }
}

/// RGB (0–255) → HSV with every component in [0, 1].
fn rgb_to_hsv([r, g, b]: [u8; 3]) -> (f32, f32, f32) {
    let (r, g, b) = (r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let h = if delta == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / delta + 2.0) / 6.0
    } else {
        ((r - g) / delta + 4.0) / 6.0
    };
    let s = if max == 0.0 { 0.0 } else { delta / max };
    (h, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [u8; 3] {
    let sector = h * 6.0;
    let i = sector.floor();
    let f = sector - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let (r, g, b) = match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [to_u8(r * 255.0), to_u8(g * 255.0), to_u8(b * 255.0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> Vec<RgbImage> {
        (0..2)
            .map(|i| RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 100 + i * 50])))
            .collect()
    }

    #[test]
    fn hsv_round_trip() {
        for rgb in [
            [0u8, 0, 0],
            [255, 255, 255],
            [200, 30, 90],
            [12, 250, 101],
            [77, 77, 200],
        ] {
            let (h, s, v) = rgb_to_hsv(rgb);
            assert_eq!(hsv_to_rgb(h, s, v), rgb);
        }
    }

    #[test]
    fn flips_act_on_the_whole_clip() {
        let params = DatasetParams::new()
            .with_brightness(0.0)
            .with_contrast(0.0)
            .with_saturation(0.0)
            .with_hue(0.0);
        let original = clip();
        let (mut reversed, mut mirrored) = (false, false);
        for seed in 0..40 {
            let mut c = clip();
            augment_clip(&mut c, &params, &mut Rng::seed(seed));
            let time = c[0].get_pixel(0, 0)[2] != original[0].get_pixel(0, 0)[2];
            let flip = c[0].get_pixel(0, 0)[0] != original[0].get_pixel(0, 0)[0];
            reversed |= time;
            mirrored |= flip;
            // Both frames get the same horizontal flip.
            assert_eq!(c[0].get_pixel(0, 0)[0], c[1].get_pixel(0, 0)[0]);
        }
        assert!(reversed && mirrored);
    }

    #[test]
    fn jitter_changes_colours_within_its_range_and_identically_per_frame() {
        let params = DatasetParams::new().with_time_flip(false).with_horizontal_flip(false);
        let mut c = clip();
        augment_clip(&mut c, &params, &mut Rng::seed(3));
        let original = clip();
        let changed = c[0].pixels().zip(original[0].pixels()).any(|(a, b)| a != b);
        assert!(changed);
        // A 10% jitter moves no channel by more than a few tens of levels.
        for (a, b) in c[0].pixels().zip(original[0].pixels()) {
            for ch in 0..3 {
                assert!((a[ch] as i32 - b[ch] as i32).abs() < 90, "{a:?} {b:?}");
            }
        }
        // Frames differing only in blue: the jitter with the same factors keeps pixel (0, 0) of
        // both frames related the same way on every run.
        let mut again = clip();
        augment_clip(&mut again, &params, &mut Rng::seed(3));
        assert_eq!(again, c);
    }
}
