//! PriorityCut (§3.2): the CutMix mask made of the top-k percent occluded pixels of the
//! foreground.
//!
//! - `M̄_bg`: the dense-motion mask's background channel (channel 0), binarized so that only
//!   confidently background pixels count as background.
//! - Eq. 1: `Ô_fg = M̄_bg + (1 − M̄_bg) ⊙ Ô`, the occlusion map (0 = occluded, 1 = visible)
//!   of the foreground; confident background reads as fully visible.
//! - `M_pc`: the k percent of the image's pixels with the lowest `Ô_fg`, never confident
//!   background (when the foreground is smaller than k percent, all of it).
//! - Eq. 2: `mix(x, x̂, M) = M ⊙ x + (1 − M) ⊙ x̂` between the driving frame and its reconstruction.
//!
//! Both maps come from the dense motion network at its reduced resolution and are resized
//! bilinearly to the image first.

use burn::tensor::{Tensor, TensorData};

use crate::model::blocks::resize_bilinear;

/// The maps PriorityCut is made of, all [b, 1, H, W] at image resolution.
#[derive(Debug, Clone)]
pub struct PriorityCutMaps {
    /// M̄_bg ∈ {0, 1}.
    pub background: Tensor<4>,
    /// Ô_fg (Eq. 1).
    pub foreground_occlusion: Tensor<4>,
    /// M_pc ∈ {0, 1}: 1 on the selected (most occluded foreground) pixels.
    pub mask: Tensor<4>,
}

/// Eq. 1: `Ô_fg = M̄_bg + (1 − M̄_bg) ⊙ Ô` with `M̄_bg = [M_bg ≥ threshold]`.
/// `m_bg`, `occlusion` [b, 1, H, W] → (M̄_bg, Ô_fg).
pub fn foreground_occlusion(m_bg: Tensor<4>, occlusion: Tensor<4>, threshold: f64) -> (Tensor<4>, Tensor<4>) {
    let background = m_bg.greater_equal_elem(threshold).float();
    let ones = background.ones_like();
    let o_fg = background.clone() + (ones - background.clone()) * occlusion;
    (background, o_fg)
}

/// Selects, in each image, the `round(k · H · W)` foreground pixels with the lowest `Ô_fg`
/// (ties broken by position, so the mask is deterministic); `k[i]` ∈ [0, 1] per image.
/// Returns M_pc [b, 1, H, W].
pub fn top_k_occluded(background: Tensor<4>, o_fg: Tensor<4>, k: &[f64]) -> Tensor<4> {
    let [b, _, h, w] = o_fg.dims();
    assert_eq!(k.len(), b, "one k per image");
    let device = o_fg.device();
    let to_vec =
        |t: Tensor<4>| -> Vec<f32> { t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default() };
    let background = to_vec(background);
    let occlusion = to_vec(o_fg);
    let n = h * w;
    let mut mask = vec![0.0f32; b * n];
    for (i, &fraction) in k.iter().enumerate() {
        let range = i * n..(i + 1) * n;
        let mut candidates: Vec<usize> = range.clone().filter(|&p| background[p] < 0.5).collect();
        candidates.sort_by(|&a, &c| occlusion[a].total_cmp(&occlusion[c]).then(a.cmp(&c)));
        let count = ((fraction.clamp(0.0, 1.0) * n as f64).round() as usize).min(candidates.len());
        for &p in &candidates[..count] {
            mask[p] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(mask, [b, 1, h, w]), &device)
}

/// The PriorityCut mask from the dense motion outputs: `mask` [b, kp+1, h, w] (channel 0 =
/// background) and `occlusion_map` [b, 1, h, w], resized to `height × width`. `k[i]` ∈ [0, 1].
pub fn priority_cut(
    dense_mask: Tensor<4>,
    occlusion_map: Tensor<4>,
    height: usize,
    width: usize,
    threshold: f64,
    k: &[f64],
) -> PriorityCutMaps {
    let [b, _, _, _] = dense_mask.dims();
    let m_bg = dense_mask.narrow(1, 0, 1);
    let resize = |t: Tensor<4>| {
        let [_, _, th, tw] = t.dims();
        if (th, tw) == (height, width) {
            t
        } else {
            resize_bilinear(t, height, width)
        }
    };
    let (background, o_fg) = foreground_occlusion(resize(m_bg), resize(occlusion_map), threshold);
    debug_assert_eq!(background.dims()[0], b);
    let mask = top_k_occluded(background.clone(), o_fg.clone(), k);
    PriorityCutMaps {
        background,
        foreground_occlusion: o_fg,
        mask,
    }
}

/// Eq. 2: `M ⊙ x + (1 − M) ⊙ x̂`; `mask` [b, 1, H, W] broadcasts over the channels.
pub fn mix(real: Tensor<4>, fake: Tensor<4>, mask: Tensor<4>) -> Tensor<4> {
    let [_, c, _, _] = real.dims();
    let mask = mask.repeat_dim(1, c);
    mask.clone() * real + (mask.ones_like() - mask) * fake
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::Device;

    fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32")
    }

    /// Random maps on a 32×32 image with a confident-background half; the mask must hold k% of
    /// the image, none of it background, and be exactly the lowest Ô_fg of the foreground.
    #[test]
    fn mask_is_the_k_percent_most_occluded_foreground() {
        let (h, w) = (32, 32);
        let n = h * w;
        let mut rng = Rng::seed(11);
        let m_bg: Vec<f32> = (0..2 * n)
            .map(|p| {
                if (p % n) % w < w / 2 {
                    0.6 + 0.4 * rng.uniform() as f32
                } else {
                    0.49 * rng.uniform() as f32
                }
            })
            .collect();
        let occlusion: Vec<f32> = (0..2 * n).map(|_| rng.uniform() as f32).collect();
        let (background, o_fg) = foreground_occlusion(
            tensor(m_bg.clone(), [2, 1, h, w]),
            tensor(occlusion.clone(), [2, 1, h, w]),
            0.5,
        );
        let k = [0.1, 0.37];
        let mask = values(top_k_occluded(background, o_fg.clone(), &k));
        let o_fg = values(o_fg);
        for (i, &fraction) in k.iter().enumerate() {
            let image = i * n..(i + 1) * n;
            let selected: Vec<usize> = image.clone().filter(|&p| mask[p] == 1.0).collect();
            assert!(mask[image.clone()].iter().all(|&v| v == 0.0 || v == 1.0));
            let expected = (fraction * n as f64).round() as usize;
            assert!(
                selected.len().abs_diff(expected) <= 1,
                "{} vs {expected}",
                selected.len()
            );
            assert!(selected.iter().all(|&p| m_bg[p] < 0.5), "confident background selected");
            // Eq. 1 on the foreground is the occlusion itself, and 1 on the background.
            for p in image.clone() {
                let want = if m_bg[p] >= 0.5 { 1.0 } else { occlusion[p] };
                assert_eq!(o_fg[p], want);
            }
            let worst_selected = selected.iter().map(|&p| o_fg[p]).fold(f32::MIN, f32::max);
            let best_unselected = image
                .filter(|&p| mask[p] == 0.0 && m_bg[p] < 0.5)
                .map(|p| o_fg[p])
                .fold(f32::MAX, f32::min);
            assert!(
                worst_selected <= best_unselected,
                "{worst_selected} > {best_unselected}"
            );
        }
    }

    #[test]
    fn small_foreground_is_taken_whole_and_never_more() {
        // 4 pixels, 3 of them confident background: k = 90% still selects only the one.
        let background = tensor(vec![1.0, 0.0, 1.0, 1.0], [1, 1, 2, 2]);
        let o_fg = tensor(vec![1.0, 0.7, 1.0, 1.0], [1, 1, 2, 2]);
        assert_eq!(
            values(top_k_occluded(background, o_fg, &[0.9])),
            vec![0.0, 1.0, 0.0, 0.0]
        );
    }

    #[test]
    fn mix_is_the_fake_at_zero_and_the_real_at_one() {
        let real = tensor((0..12).map(|v| v as f32).collect(), [1, 3, 2, 2]);
        let fake = tensor((0..12).map(|v| -(v as f32)).collect(), [1, 3, 2, 2]);
        let zeros = tensor(vec![0.0; 4], [1, 1, 2, 2]);
        let ones = tensor(vec![1.0; 4], [1, 1, 2, 2]);
        assert_eq!(values(mix(real.clone(), fake.clone(), zeros)), values(fake.clone()));
        assert_eq!(values(mix(real.clone(), fake.clone(), ones)), values(real.clone()));
        let half = tensor(vec![1.0, 0.0, 0.0, 1.0], [1, 1, 2, 2]);
        let mixed = values(mix(real, fake, half));
        assert_eq!(&mixed[..4], &[0.0, -1.0, -2.0, 3.0]);
    }

    #[test]
    fn priority_cut_resizes_dense_motion_maps_to_the_image() {
        let device = Device::flex();
        let dense_mask = Tensor::<4>::ones([1, 3, 4, 4], &device) / 3.0;
        let occlusion = Tensor::<4>::ones([1, 1, 4, 4], &device) * 0.5;
        let maps = priority_cut(dense_mask, occlusion, 16, 16, 0.5, &[0.25]);
        assert_eq!(maps.mask.dims(), [1, 1, 16, 16]);
        let selected: f32 = maps.mask.sum().into_scalar();
        assert_eq!(selected, 64.0);
        let background: f32 = maps.background.sum().into_scalar();
        assert_eq!(background, 0.0, "1/3 is not confident background");
    }
}
