//! The random thin-plate-spline transform of the equivariance loss: a noisy affine map plus a
//! TPS with random weights on a grid of control points,
//!
//! `T(z) = A·z + t + Σ_k w_k · φ(z − p_k)`, the TPS term added to both coordinates,
//!
//! in each family's form ([`TpsForm`]): FOMM's (§3.3, `modules/model.py`, `Transform`)
//! `φ = r² · log(r + 1e-6)` with `r = |z − p_k|₁` (an L1 distance), or TPSMM's
//! (`modules/util.py`, `TPS(mode='random')`) `φ = s · log(s + 1e-9)` with `s = |z − p_k|₂²`.
//!
//! FOMM differentiates `T` by autograd; here its Jacobian is written out:
//! `∂T/∂z = A + 1 ⊗ Σ_k w_k ∂φ/∂z`, with `∂φ/∂z = (2 r log(r + ε) + r² / (r + ε)) · sign(z − p_k)`
//! (FOMM) or `(log(s + ε) + s / (s + ε)) · 2 (z − p_k)` (TPSMM).

use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::TransformParams;
use crate::model::keypoints::coordinate_grid_xy;
use crate::rng::Rng;

/// The radial function of a family's random TPS, and how it samples a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpsForm {
    /// `r² log(r + 1e-6)` of the L1 distance; frames sampled with `align_corners=False`.
    Fomm,
    /// `s log(s + 1e-9)` of the squared L2 distance; frames sampled with `align_corners=True`.
    Tpsmm,
}

impl TpsForm {
    fn epsilon(self) -> f64 {
        match self {
            TpsForm::Fomm => 1e-6,
            TpsForm::Tpsmm => 1e-9,
        }
    }
}

/// One random transform per batch element.
#[derive(Debug, Clone)]
pub struct RandomTps {
    /// [b][2][3]: identity + N(0, σ_affine²) noise.
    pub theta: Vec<[[f32; 3]; 2]>,
    /// (x, y) of the `points_tps × points_tps` control points, row by row over [-1, 1].
    pub control_points: Vec<[f32; 2]>,
    /// [b][points²] TPS weights ~ N(0, σ_tps²); empty without the TPS part.
    pub control_params: Vec<Vec<f32>>,
    pub form: TpsForm,
}

impl RandomTps {
    pub fn sample(batch: usize, params: &TransformParams, rng: &mut Rng) -> Self {
        let theta = (0..batch)
            .map(|_| {
                let mut t = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0]];
                for row in &mut t {
                    for v in row.iter_mut() {
                        *v += (rng.normal() * params.sigma_affine) as f32;
                    }
                }
                t
            })
            .collect();
        let tps = params.points_tps > 0 && params.sigma_tps > 0.0;
        let n = if tps { params.points_tps } else { 0 };
        let control_params = if tps {
            (0..batch)
                .map(|_| (0..n * n).map(|_| (rng.normal() * params.sigma_tps) as f32).collect())
                .collect()
        } else {
            Vec::new()
        };
        Self::new(theta, n, control_params)
    }

    /// A given transform: `theta` per element, and `points` control points per side with their
    /// weights (`control_params[b].len() == points²`), or none for an affine map.
    pub fn new(theta: Vec<[[f32; 3]; 2]>, points: usize, control_params: Vec<Vec<f32>>) -> Self {
        let axis = |i: usize| 2.0 * (i as f32 / (points.max(2) - 1) as f32) - 1.0;
        let control_points = (0..points * points)
            .map(|k| [axis(k % points), axis(k / points)])
            .collect();
        Self {
            theta,
            control_points,
            control_params,
            form: TpsForm::Fomm,
        }
    }

    /// The same transform in `form`.
    pub fn in_form(mut self, form: TpsForm) -> Self {
        self.form = form;
        self
    }

    pub fn batch(&self) -> usize {
        self.theta.len()
    }

    fn has_tps(&self) -> bool {
        !self.control_params.is_empty() && !self.control_points.is_empty()
    }

    /// theta entry (r, c) of every element as [b, 1, 1].
    fn theta_entry(&self, r: usize, c: usize, device: &Device) -> Tensor<3> {
        let values: Vec<f32> = self.theta.iter().map(|t| t[r][c]).collect();
        Tensor::from_data(TensorData::new(values, [self.batch(), 1, 1]), device)
    }

    /// Per element and point: the offsets `z − p_k` in x and y, and the weights, [b, n, K].
    fn tps_terms(&self, x: &Tensor<3>, y: &Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let device = x.device();
        let k = self.control_points.len();
        let px: Vec<f32> = self.control_points.iter().map(|p| p[0]).collect();
        let py: Vec<f32> = self.control_points.iter().map(|p| p[1]).collect();
        let px = Tensor::<3>::from_data(TensorData::new(px, [1, 1, k]), &device);
        let py = Tensor::<3>::from_data(TensorData::new(py, [1, 1, k]), &device);
        let weights: Vec<f32> = self.control_params.iter().flatten().copied().collect();
        let weights = Tensor::<3>::from_data(TensorData::new(weights, [self.batch(), 1, k]), &device);
        (x.clone() - px, y.clone() - py, weights)
    }

    /// The distance the form's radial function takes: `|z − p|₁` (FOMM) or `|z − p|₂²` (TPSMM).
    fn distance(&self, dx: &Tensor<3>, dy: &Tensor<3>) -> Tensor<3> {
        match self.form {
            TpsForm::Fomm => dx.clone().abs() + dy.clone().abs(),
            TpsForm::Tpsmm => dx.clone().square() + dy.clone().square(),
        }
    }

    fn split(coordinates: &Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let x = coordinates.clone().narrow(2, 0, 1);
        let y = coordinates.clone().narrow(2, 1, 1);
        (x, y)
    }

    /// `coordinates` [b, n, 2] (x, y) → T(coordinates) [b, n, 2].
    pub fn warp_coordinates(&self, coordinates: Tensor<3>) -> Tensor<3> {
        let device = coordinates.device();
        let (x, y) = Self::split(&coordinates);
        let t = |r, c| self.theta_entry(r, c, &device);
        let mut wx = t(0, 0) * x.clone() + t(0, 1) * y.clone() + t(0, 2);
        let mut wy = t(1, 0) * x.clone() + t(1, 1) * y.clone() + t(1, 2);
        if self.has_tps() {
            let (dx, dy, weights) = self.tps_terms(&x, &y);
            let distance = self.distance(&dx, &dy);
            let shifted_log = (distance.clone() + self.form.epsilon()).log();
            let radial = match self.form {
                TpsForm::Fomm => distance.square() * shifted_log,
                TpsForm::Tpsmm => distance * shifted_log,
            };
            let offset = (radial * weights).sum_dim(2);
            wx = wx + offset.clone();
            wy = wy + offset;
        }
        Tensor::cat(vec![wx, wy], 2)
    }

    /// ∂T/∂z at `coordinates` [b, n, 2] → [b, n, 2, 2], rows = output (x, y).
    pub fn jacobian(&self, coordinates: Tensor<3>) -> Tensor<4> {
        let device = coordinates.device();
        let [b, n, _] = coordinates.dims();
        let (x, y) = Self::split(&coordinates);
        let t = |r, c| self.theta_entry(r, c, &device) + x.zeros_like();
        let (mut gx, mut gy) = (x.zeros_like(), x.zeros_like());
        if self.has_tps() {
            let (dx, dy, weights) = self.tps_terms(&x, &y);
            let distance = self.distance(&dx, &dy);
            let shifted = distance.clone() + self.form.epsilon();
            let (along_x, along_y) = match self.form {
                TpsForm::Fomm => {
                    let derivative =
                        distance.clone() * shifted.clone().log() * 2.0 + distance.clone().square() / shifted;
                    (derivative.clone() * dx.sign(), derivative * dy.sign())
                }
                TpsForm::Tpsmm => {
                    let derivative = (shifted.clone().log() + distance / shifted) * 2.0;
                    (derivative.clone() * dx, derivative * dy)
                }
            };
            gx = (along_x * weights.clone()).sum_dim(2);
            gy = (along_y * weights).sum_dim(2);
        }
        let top = Tensor::cat(vec![t(0, 0) + gx.clone(), t(0, 1) + gy.clone()], 2);
        let bottom = Tensor::cat(vec![t(1, 0) + gx, t(1, 1) + gy], 2);
        Tensor::stack::<4>(vec![top, bottom], 2).reshape([b, n, 2, 2])
    }

    /// The frames [b, c, h, w] resampled at T(grid), reflection padding, as the family's
    /// `transform_frame` and the `grid_sample` after it.
    pub fn transform_frame(&self, frame: Tensor<4>) -> Tensor<4> {
        let device = frame.device();
        let [b, _, h, w] = frame.dims();
        let grid = coordinate_grid_xy(h, w, &device)
            .reshape([1, h * w, 2])
            .repeat_dim(0, b);
        let grid = self.warp_coordinates(grid).reshape([b, h, w, 2]);
        frame.grid_sample_2d(
            grid,
            GridSampleOptions::new(InterpolateMode::Bilinear)
                .with_padding_mode(GridSamplePaddingMode::Reflection)
                .with_align_corners(self.form == TpsForm::Tpsmm),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[f32], device: &Device) -> Tensor<3> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len() / 2, 2]), device)
    }

    #[test]
    fn identity_transform_changes_nothing() {
        let device = Device::flex();
        let tps = RandomTps::new(vec![[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], 0, Vec::new());
        let p = points(&[0.3, -0.2, 0.9, 0.5], &device);
        let warped = tps.warp_coordinates(p.clone());
        warped
            .into_data()
            .assert_approx_eq::<f32>(&p.into_data(), burn::tensor::Tolerance::absolute(1e-7));
        let j: Vec<f32> = tps
            .jacobian(points(&[0.1, 0.2], &device))
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32");
        assert_eq!(j, vec![1.0, 0.0, 0.0, 1.0]);
    }

    /// The analytic Jacobian against central finite differences of `warp_coordinates`.
    #[test]
    fn jacobian_matches_finite_differences() {
        for form in [TpsForm::Fomm, TpsForm::Tpsmm] {
            jacobian_matches_finite_differences_in(form);
        }
    }

    fn jacobian_matches_finite_differences_in(form: TpsForm) {
        let device = Device::flex();
        let mut rng = Rng::seed(5);
        let params = TransformParams::new().with_sigma_tps(0.3);
        let tps = RandomTps::sample(1, &params, &mut rng).in_form(form);
        let (x, y) = (0.37f32, -0.21f32);
        let j: Vec<f32> = tps
            .jacobian(points(&[x, y], &device))
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32");
        let h = 1e-3f32;
        let warp = |x: f32, y: f32| -> Vec<f32> {
            tps.warp_coordinates(points(&[x, y], &device))
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32")
        };
        let (xp, xm, yp, ym) = (warp(x + h, y), warp(x - h, y), warp(x, y + h), warp(x, y - h));
        let numeric = [
            (xp[0] - xm[0]) / (2.0 * h),
            (yp[0] - ym[0]) / (2.0 * h),
            (xp[1] - xm[1]) / (2.0 * h),
            (yp[1] - ym[1]) / (2.0 * h),
        ];
        for (a, n) in j.iter().zip(numeric) {
            assert!((a - n).abs() < 2e-3, "{form:?}: analytic {j:?} numeric {numeric:?}");
        }
    }
}
