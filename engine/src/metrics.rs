//! Video-reconstruction metrics (FOMM's protocol, the paper's Tables 1–3): L1, PSNR and SSIM on
//! images in [0, 1], their masked versions over a salient region and its complement, and 95%
//! confidence intervals of a mean over frames.
//!
//! SSIM is Wang et al.'s with an 11×11 Gaussian window (σ = 1.5, truncated at 3.5σ), K1 = 0.01,
//! K2 = 0.03, population (co)variances, averaged over the positions where the window fits and over
//! the three channels: scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=1)`, against which the tests check it.

use image::{GrayImage, RgbImage};

use crate::{EngineError, Result};

/// Gaussian window of SSIM: σ = 1.5, radius ⌊3.5σ + 0.5⌋ = 5 (scipy's `gaussian_filter`).
const SSIM_SIGMA: f64 = 1.5;
const SSIM_RADIUS: usize = 5;
const SSIM_K1: f64 = 0.01;
const SSIM_K2: f64 = 0.03;

/// The metrics of one reconstructed frame against its real frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMetrics {
    pub l1: f64,
    /// dB; +∞ for identical frames.
    pub psnr: f64,
    pub ssim: f64,
}

/// Metrics over a region (salient or its complement); `None` when the region is empty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionMetrics {
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
}

fn check_sizes(real: &RgbImage, fake: &RgbImage) -> Result<()> {
    if real.dimensions() != fake.dimensions() {
        return Err(EngineError::Invalid(format!(
            "metrics need frames of one size: {:?} vs {:?}",
            real.dimensions(),
            fake.dimensions()
        )));
    }
    if real.width() == 0 || real.height() == 0 {
        return Err(EngineError::Invalid("metrics of an empty frame".into()));
    }
    Ok(())
}

fn values(image: &RgbImage) -> Vec<f64> {
    image.as_raw().iter().map(|&v| f64::from(v) / 255.0).collect()
}

/// Mean absolute difference over pixels and channels, images in [0, 1].
pub fn l1(real: &RgbImage, fake: &RgbImage) -> Result<f64> {
    check_sizes(real, fake)?;
    let sum: f64 = real
        .as_raw()
        .iter()
        .zip(fake.as_raw())
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs() / 255.0)
        .sum();
    Ok(sum / real.as_raw().len() as f64)
}

/// PSNR in dB for a data range of 1 from a mean squared error; +∞ when it is 0.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 { f64::INFINITY } else { -10.0 * mse.log10() }
}

/// Mean squared error over the pixels where `keep` holds (all channels).
fn masked_mse(real: &RgbImage, fake: &RgbImage, keep: impl Fn(usize) -> bool) -> Option<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for (i, (a, b)) in real.pixels().zip(fake.pixels()).enumerate() {
        if keep(i) {
            for c in 0..3 {
                let d = (f64::from(a[c]) - f64::from(b[c])) / 255.0;
                sum += d * d;
            }
            count += 3;
        }
    }
    (count > 0).then(|| sum / count as f64)
}

pub fn psnr(real: &RgbImage, fake: &RgbImage) -> Result<f64> {
    check_sizes(real, fake)?;
    Ok(psnr_from_mse(masked_mse(real, fake, |_| true).unwrap_or(0.0)))
}

fn gaussian_window() -> [f64; 2 * SSIM_RADIUS + 1] {
    let mut window: [f64; 2 * SSIM_RADIUS + 1] = std::array::from_fn(|i| {
        let x = i as f64 - SSIM_RADIUS as f64;
        (-0.5 * x * x / (SSIM_SIGMA * SSIM_SIGMA)).exp()
    });
    let total: f64 = window.iter().sum();
    window.iter_mut().for_each(|w| *w /= total);
    window
}

/// Gaussian-weighted local means of `plane` (`width × height`) at the positions where the whole
/// window fits: a `(width − 10) × (height − 10)` plane.
fn local_mean(plane: &[f64], width: usize, height: usize, window: &[f64]) -> Vec<f64> {
    let r = SSIM_RADIUS;
    let (out_w, out_h) = (width - 2 * r, height - 2 * r);
    // Separable: rows first (all rows, valid columns), then columns.
    let mut rows = vec![0.0; out_w * height];
    for y in 0..height {
        for x in 0..out_w {
            rows[y * out_w + x] = window
                .iter()
                .enumerate()
                .map(|(k, w)| w * plane[y * width + x + k])
                .sum();
        }
    }
    let mut out = vec![0.0; out_w * out_h];
    for y in 0..out_h {
        for x in 0..out_w {
            out[y * out_w + x] = window
                .iter()
                .enumerate()
                .map(|(k, w)| w * rows[(y + k) * out_w + x])
                .sum();
        }
    }
    out
}

/// SSIM per position (channels averaged), over the positions where the window fits, with the
/// plane's size. Frames smaller than the window are refused.
pub fn ssim_map(real: &RgbImage, fake: &RgbImage) -> Result<(Vec<f64>, usize, usize)> {
    check_sizes(real, fake)?;
    let (width, height) = (real.width() as usize, real.height() as usize);
    let side = 2 * SSIM_RADIUS + 1;
    if width < side || height < side {
        return Err(EngineError::Invalid(format!(
            "SSIM needs frames of at least {side}×{side} pixels, got {width}×{height}"
        )));
    }
    let window = gaussian_window();
    let (a, b) = (values(real), values(fake));
    let (out_w, out_h) = (width - 2 * SSIM_RADIUS, height - 2 * SSIM_RADIUS);
    let (c1, c2) = (SSIM_K1 * SSIM_K1, SSIM_K2 * SSIM_K2);
    let mut map = vec![0.0; out_w * out_h];
    for c in 0..3 {
        let channel = |v: &[f64]| -> Vec<f64> { v.iter().skip(c).step_by(3).copied().collect() };
        let (pa, pb) = (channel(&a), channel(&b));
        let mean = |p: &[f64]| local_mean(p, width, height, &window);
        let product = |x: &[f64], y: &[f64]| -> Vec<f64> { x.iter().zip(y).map(|(x, y)| x * y).collect() };
        let (mu_a, mu_b) = (mean(&pa), mean(&pb));
        let aa = mean(&product(&pa, &pa));
        let bb = mean(&product(&pb, &pb));
        let ab = mean(&product(&pa, &pb));
        for i in 0..map.len() {
            let (ma, mb) = (mu_a[i], mu_b[i]);
            let var_a = aa[i] - ma * ma;
            let var_b = bb[i] - mb * mb;
            let cov = ab[i] - ma * mb;
            let s = ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (var_a + var_b + c2));
            map[i] += s / 3.0;
        }
    }
    Ok((map, out_w, out_h))
}

pub fn ssim(real: &RgbImage, fake: &RgbImage) -> Result<f64> {
    let (map, _, _) = ssim_map(real, fake)?;
    Ok(map.iter().sum::<f64>() / map.len() as f64)
}

/// L1, PSNR and SSIM of one frame.
pub fn frame_metrics(real: &RgbImage, fake: &RgbImage) -> Result<FrameMetrics> {
    Ok(frame_and_region_metrics(real, fake, None)?.0)
}

/// PSNR and SSIM inside the salient region (`mask` > 127) and outside it. PSNR counts the
/// region's pixels; SSIM averages its map over the region's pixels where the window fits.
pub fn masked_metrics(real: &RgbImage, fake: &RgbImage, mask: &GrayImage) -> Result<(RegionMetrics, RegionMetrics)> {
    let (_, regions) = frame_and_region_metrics(real, fake, Some(mask))?;
    regions.ok_or_else(|| EngineError::Invalid("no salient mask".into()))
}

/// A frame's metrics and, with a salient mask, those of its two regions: the SSIM map, the costly
/// part, is computed once for all of them.
pub fn frame_and_region_metrics(
    real: &RgbImage,
    fake: &RgbImage,
    mask: Option<&GrayImage>,
) -> Result<(FrameMetrics, Option<(RegionMetrics, RegionMetrics)>)> {
    check_sizes(real, fake)?;
    if let Some(mask) = mask
        && mask.dimensions() != real.dimensions()
    {
        return Err(EngineError::Invalid(format!(
            "the salient mask is {:?}, the frames {:?}",
            mask.dimensions(),
            real.dimensions()
        )));
    }
    let (map, out_w, out_h) = ssim_map(real, fake)?;
    let frame = FrameMetrics {
        l1: l1(real, fake)?,
        psnr: psnr(real, fake)?,
        ssim: map.iter().sum::<f64>() / map.len() as f64,
    };
    let Some(mask) = mask else {
        return Ok((frame, None));
    };
    let salient: Vec<bool> = mask.as_raw().iter().map(|&v| v > 127).collect();
    let width = real.width() as usize;
    let region = |inside: bool| {
        let mse = masked_mse(real, fake, |i| salient[i] == inside);
        let (mut sum, mut count) = (0.0, 0usize);
        for y in 0..out_h {
            for x in 0..out_w {
                if salient[(y + SSIM_RADIUS) * width + x + SSIM_RADIUS] == inside {
                    sum += map[y * out_w + x];
                    count += 1;
                }
            }
        }
        RegionMetrics {
            psnr: mse.map(psnr_from_mse),
            ssim: (count > 0).then(|| sum / count as f64),
        }
    };
    Ok((frame, Some((region(true), region(false)))))
}

/// A mean with its 95% confidence interval (Student's t), as the paper's "±" columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub mean: f64,
    /// Half-width: the interval is mean ± this. NaN with fewer than two values or a non-finite one.
    pub half_width: f64,
    pub count: usize,
}

impl Interval {
    /// The mean and 95% interval of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n < 2 || !mean.is_finite() {
            return Some(Self {
                mean,
                half_width: f64::NAN,
                count: n,
            });
        }
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Some(Self {
            mean,
            half_width: t_975(n - 1) * (variance / n as f64).sqrt(),
            count: n,
        })
    }

    /// `0.0413±9e-05` in the paper's style (the interval with one significant digit).
    pub fn format(&self, decimals: usize) -> String {
        let mean = if self.mean.is_infinite() {
            "∞".to_string()
        } else {
            format!("{:.*}", decimals, self.mean)
        };
        if self.half_width.is_finite() {
            format!("{mean}±{:.0e}", self.half_width)
        } else {
            mean
        }
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            // Cornish–Fisher expansion around the normal quantile: < 1e-4 off beyond 30 df.
            let z = 1.959_963_984_540_054_f64;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer images of the scikit-image reference script (see `reference_values`).
    fn pattern(kind: &str) -> RgbImage {
        let base = |x: u32, y: u32, c: u32| (x * x * 3 + y * 5 + c * 70 + (x * y) % 17 * 9) % 256;
        RgbImage::from_fn(32, 24, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                let c = c as u32;
                let v = match kind {
                    "noisy" => (base(x, y, c) as i64 + ((x * 31 + y * 17 + c * 7) % 41) as i64 - 20).clamp(0, 255),
                    "shifted" => base(x.saturating_sub(1), y, c) as i64,
                    "darker" => (base(x, y, c) * 3 / 4) as i64,
                    _ => base(x, y, c) as i64,
                };
                v as u8
            }))
        })
    }

    /// Values from scikit-image 0.26.0 (`structural_similarity(A, B, channel_axis=2,
    /// gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)`,
    /// `peak_signal_noise_ratio(A, B, data_range=1.0)`, `np.abs(A - B).mean()`) on the same
    /// images built with numpy.
    #[test]
    fn reference_values() {
        let real = pattern("base");
        for (kind, l1_ref, psnr_ref, ssim_ref) in [
            ("noisy", 0.0389756944, 26.8696840986, 0.9870581708),
            ("shifted", 0.3415883715, 7.6901577465, -0.0296425963),
            ("darker", 0.1281096814, 16.6356550400, 0.9208338565),
        ] {
            let m = frame_metrics(&real, &pattern(kind)).expect("metrics");
            assert!((m.l1 - l1_ref).abs() < 1e-9, "{kind} l1 {}", m.l1);
            assert!((m.psnr - psnr_ref).abs() < 1e-8, "{kind} psnr {}", m.psnr);
            assert!((m.ssim - ssim_ref).abs() < 1e-8, "{kind} ssim {}", m.ssim);
        }
    }

    #[test]
    fn identical_frames_and_known_differences() {
        let a = pattern("base");
        let m = frame_metrics(&a, &a).expect("metrics");
        assert_eq!(m.l1, 0.0);
        assert_eq!(m.psnr, f64::INFINITY);
        assert!((m.ssim - 1.0).abs() < 1e-12);
        // A uniform difference of 51 levels (0.2): L1 0.2, PSNR = -10 log10(0.04) ≈ 13.98 dB.
        let grey = RgbImage::from_pixel(16, 16, image::Rgb([100, 100, 100]));
        let lighter = RgbImage::from_pixel(16, 16, image::Rgb([151, 151, 151]));
        let m = frame_metrics(&grey, &lighter).expect("metrics");
        assert!((m.l1 - 0.2).abs() < 1e-12);
        assert!((m.psnr - 13.979_400_086_720_377).abs() < 1e-9);
        // Flat images: SSIM is the luminance term alone.
        let (x, y) = (100.0 / 255.0, 151.0 / 255.0);
        let expected = (2.0 * x * y + 1e-4) / (x * x + y * y + 1e-4);
        assert!((m.ssim - expected).abs() < 1e-12);
    }

    #[test]
    fn bad_sizes_are_errors() {
        let small = RgbImage::new(8, 8);
        assert!(ssim(&small, &small).is_err(), "smaller than the window");
        assert!(l1(&small, &RgbImage::new(8, 9)).is_err());
        assert!(masked_metrics(&pattern("base"), &pattern("base"), &GrayImage::new(3, 3)).is_err());
    }

    #[test]
    fn masked_metrics_split_the_frame() {
        let real = pattern("base");
        let mut fake = real.clone();
        // Damage the left half only; the salient region is the right half.
        for y in 0..24 {
            for x in 0..16 {
                fake.put_pixel(x, y, image::Rgb([0, 0, 0]));
            }
        }
        let mask = GrayImage::from_fn(32, 24, |x, _| image::Luma([if x >= 16 { 255 } else { 0 }]));
        let (salient, rest) = masked_metrics(&real, &fake, &mask).expect("masked");
        assert_eq!(salient.psnr, Some(f64::INFINITY));
        assert!(rest.psnr.expect("psnr") < 10.0);
        // The window reaches 5 px across the border: salient positions from x = 21 on are exact.
        assert!(salient.ssim.expect("ssim") > rest.ssim.expect("ssim"));
        let empty = GrayImage::new(32, 24);
        let (salient, rest) = masked_metrics(&real, &fake, &empty).expect("masked");
        assert_eq!(salient, RegionMetrics { psnr: None, ssim: None });
        assert!(rest.psnr.is_some());
    }

    #[test]
    fn intervals_shrink_as_frames_grow() {
        // A fixed, spread-out sequence; more of it narrows the interval about as 1/sqrt(n).
        let values: Vec<f64> = (0..400).map(|i| ((i * 37) % 101) as f64 / 100.0).collect();
        let small = Interval::of(&values[..25]).expect("interval");
        let large = Interval::of(&values).expect("interval");
        assert!(large.half_width < small.half_width / 3.0, "{small:?} {large:?}");
        // Two values 0 and 2: mean 1, s = sqrt(2), half-width = 12.706 * sqrt(2) / sqrt(2).
        let two = Interval::of(&[0.0, 2.0]).expect("interval");
        assert!((two.mean - 1.0).abs() < 1e-12 && (two.half_width - 12.706).abs() < 1e-9);
        assert!(Interval::of(&[]).is_none());
        assert!(Interval::of(&[1.0]).expect("one").half_width.is_nan());
        assert_eq!(Interval::of(&[f64::INFINITY, 3.0]).expect("inf").format(2), "∞");
        // Beyond the table the expansion joins it smoothly.
        assert!((t_975(30) - t_975(31)).abs() < 0.01 && (t_975(1000) - 1.962).abs() < 1e-3);
        assert_eq!(
            Interval::of(&[0.0413, 0.0414, 0.0412]).expect("i").format(4),
            "0.0413±2e-4"
        );
    }
}
