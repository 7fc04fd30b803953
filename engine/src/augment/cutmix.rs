//! Vanilla CutMix (Yun et al. 2019) as U-Net GAN applies it to its discriminator: one random
//! rectangle per image. Used by the `unet-cutmix` ablation; mixing is PriorityCut's
//! [`mix`](super::prioritycut::mix) with this mask.
//!
//! The rectangle covers the same fraction k of the image that PriorityCut would select for that
//! sample, so the two ablation rows differ only in the mask's shape and place, not its size.

use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::Rng;

/// A box of area ≈ `k · H · W` (aspect ratio of the image, as Yun et al.'s `rand_bbox`) centred
/// on a uniformly random pixel and clipped to the image: 1 inside, 0 outside. Returns the mask
/// [b, 1, H, W] for one `k[i]` ∈ [0, 1] per image.
pub fn cutmix_mask(height: usize, width: usize, k: &[f64], rng: &mut Rng, device: &Device) -> Tensor<4> {
    let b = k.len();
    let mut mask = vec![0.0f32; b * height * width];
    for (i, &fraction) in k.iter().enumerate() {
        let side = fraction.clamp(0.0, 1.0).sqrt();
        let (cut_h, cut_w) = (height as f64 * side, width as f64 * side);
        let cy = rng.below(height) as f64;
        let cx = rng.below(width) as f64;
        let clip = |v: f64, max: usize| v.round().clamp(0.0, max as f64) as usize;
        let (y0, y1) = (clip(cy - cut_h / 2.0, height), clip(cy + cut_h / 2.0, height));
        let (x0, x1) = (clip(cx - cut_w / 2.0, width), clip(cx + cut_w / 2.0, width));
        let image = &mut mask[i * height * width..(i + 1) * height * width];
        for y in y0..y1 {
            image[y * width + x0..y * width + x1].fill(1.0);
        }
    }
    Tensor::from_data(TensorData::new(mask, [b, 1, height, width]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_one_rectangle_of_about_k_of_the_image_when_it_fits() {
        let device = Device::flex();
        let mut rng = Rng::seed(2);
        let (h, w) = (40, 40);
        let mut fully_inside = 0;
        for _ in 0..50 {
            let k = rng.uniform();
            let mask: Vec<f32> = cutmix_mask(h, w, &[k], &mut rng, &device)
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32");
            let ones: Vec<(usize, usize)> = (0..h * w).filter(|&p| mask[p] == 1.0).map(|p| (p / w, p % w)).collect();
            if ones.is_empty() {
                continue;
            }
            // The ones fill their bounding box exactly: one rectangle.
            let y0 = ones.iter().map(|p| p.0).min().unwrap_or(0);
            let y1 = ones.iter().map(|p| p.0).max().unwrap_or(0);
            let x0 = ones.iter().map(|p| p.1).min().unwrap_or(0);
            let x1 = ones.iter().map(|p| p.1).max().unwrap_or(0);
            assert_eq!(ones.len(), (y1 - y0 + 1) * (x1 - x0 + 1));
            let area = ones.len() as f64 / (h * w) as f64;
            assert!(area <= k + 0.06, "area {area} > k {k}");
            let inside = y0 > 0 && x0 > 0 && y1 < h - 1 && x1 < w - 1;
            if inside {
                fully_inside += 1;
                assert!((area - k).abs() < 0.06, "area {area} vs k {k}");
            }
        }
        assert!(fully_inside > 5);
    }
}
