//! Colour maps for single-channel maps (occlusion, masks, per-pixel discriminator scores), as
//! 256-entry lookup tables: the GPU path samples the same table as a texture
//! (`shaders/colormap.wgsl`), the CPU fallback and the CLI's snapshot sheets index it, so every
//! path shows the same colours.

use image::Rgb;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Colormap {
    /// Perceptually ordered, for occlusion and masks.
    #[default]
    Viridis,
    /// Perceptually ordered, dark to bright.
    Magma,
    Gray,
    /// Blue (0: fake) through white to red (1: real): for the discriminator's per-pixel scores.
    FakeReal,
}

impl Colormap {
    pub const ALL: [Colormap; 4] = [Colormap::Viridis, Colormap::Magma, Colormap::Gray, Colormap::FakeReal];

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Magma => "magma",
            Colormap::Gray => "gray",
            Colormap::FakeReal => "fake ↔ real",
        }
    }

    fn stops(self) -> &'static [[f32; 3]] {
        match self {
            Colormap::Viridis => &[
                [68.0, 1.0, 84.0],
                [65.0, 68.0, 135.0],
                [42.0, 120.0, 142.0],
                [34.0, 168.0, 132.0],
                [122.0, 209.0, 81.0],
                [253.0, 231.0, 37.0],
            ],
            Colormap::Magma => &[
                [0.0, 0.0, 4.0],
                [59.0, 15.0, 112.0],
                [140.0, 41.0, 129.0],
                [222.0, 73.0, 104.0],
                [254.0, 159.0, 109.0],
                [252.0, 253.0, 191.0],
            ],
            Colormap::Gray => &[[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]],
            Colormap::FakeReal => &[[33.0, 102.0, 172.0], [247.0, 247.0, 247.0], [178.0, 24.0, 43.0]],
        }
    }

    /// The colour of `t` ∈ [0, 1] (NaN and values outside clamp to the ends).
    pub fn colour(self, t: f32) -> Rgb<u8> {
        let stops = self.stops();
        let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
        let x = t * (stops.len() - 1) as f32;
        let i = (x.floor() as usize).min(stops.len() - 2);
        let f = x - i as f32;
        let (a, b) = (stops[i], stops[i + 1]);
        Rgb(std::array::from_fn(|c| (a[c] + (b[c] - a[c]) * f).round() as u8))
    }

    /// 256 RGBA entries, the table the shader samples.
    pub fn lut(self) -> Vec<u8> {
        (0..256)
            .flat_map(|i| {
                let Rgb([r, g, b]) = self.colour(i as f32 / 255.0);
                [r, g, b, 255]
            })
            .collect()
    }
}

/// Shorthand for the default map.
pub fn viridis(t: f32) -> Rgb<u8> {
    Colormap::Viridis.colour(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_lut_agree() {
        assert_eq!(viridis(0.0), Rgb([68, 1, 84]));
        assert_eq!(viridis(1.0), Rgb([253, 231, 37]));
        assert_eq!(viridis(f32::NAN), Rgb([68, 1, 84]));
        for map in Colormap::ALL {
            let lut = map.lut();
            assert_eq!(lut.len(), 1024);
            let Rgb([r, g, b]) = map.colour(128.0 / 255.0);
            assert_eq!(&lut[512..515], &[r, g, b]);
        }
        assert_eq!(Colormap::FakeReal.colour(0.5), Rgb([247, 247, 247]));
    }
}
