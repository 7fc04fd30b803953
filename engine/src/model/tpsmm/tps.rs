//! The thin-plate spline transformations of TPSMM (§3.1, Eq. 2; `modules/util.py`'s `TPS` in
//! mode `kp`): each group k of N = 5 driving keypoints `p^D` is mapped onto the source's `p^S` by
//!
//! `T_k(z) = A_k [z; 1] + Σ_i w_{k,i} U(‖p^D_{k,i} − z‖₂)`, `U(r) = r² log r²`,
//!
//! whose affine part `A_k` and weights `w_k` solve the (N+3)×(N+3) system
//! `[[K, P], [Pᵀ, 0]] + 0.01·I` times `[w; A]` = `[p^S; 0]` (`K_ij = U(‖p^D_i − p^D_j‖)`,
//! `P_i = [p^D_i, 1]`; the 0.01 ridge is the official code's).

use burn::tensor::{Device, Tensor, TensorData};

use super::POINTS_PER_TPS;
use crate::model::Keypoints;
use crate::model::keypoints::make_coordinate_grid;

/// Rows of each group's system: the N control points and the 3 affine unknowns.
const SYSTEM: usize = POINTS_PER_TPS + 3;

/// `r log r` on squared distances, with the official code's `1e-9` inside the log.
fn radial(squared: Tensor<4>) -> Tensor<4> {
    squared.clone() * (squared + 1e-9).log()
}

/// K thin-plate splines per batch element, each taking a frame's coordinates to the source's.
#[derive(Debug, Clone)]
pub struct ThinPlateSplines {
    /// [b, K, N, 2]: the driving keypoints the radial terms are centred on.
    control_points: Tensor<4>,
    /// [b, K, N + 3, 2]: the spline weights (rows 0..N) and the affine part (rows N..N+3, the
    /// x, y and constant terms), `param` in the official code.
    param: Tensor<4>,
}

impl ThinPlateSplines {
    /// The splines taking `kp_driving` onto `kp_source` (both [b, K·N, 2]).
    pub fn from_keypoints(kp_driving: &Keypoints, kp_source: &Keypoints) -> Self {
        let [b, points, _] = kp_driving.value.dims();
        let groups = points / POINTS_PER_TPS;
        let device = kp_driving.value.device();
        let driving = kp_driving.value.clone().reshape([b, groups, POINTS_PER_TPS, 2]);
        let source = kp_source.value.clone().reshape([b, groups, POINTS_PER_TPS, 2]);

        // K_ij = U(|p_i − p_j|), P = [p, 1], L = [[K, P], [Pᵀ, 0]] + 0.01 I.
        let differences = driving.clone().unsqueeze_dim::<5>(3) - driving.clone().unsqueeze_dim::<5>(2);
        let kernel = radial(differences.square().sum_dim(4).squeeze_dim::<4>(4));
        let ones = Tensor::<4>::ones([b, groups, POINTS_PER_TPS, 1], &device);
        let homogeneous = Tensor::cat(vec![driving.clone(), ones], 3);
        let top = Tensor::cat(vec![kernel, homogeneous.clone()], 3);
        let bottom = Tensor::cat(
            vec![homogeneous.swap_dims(2, 3), Tensor::zeros([b, groups, 3, 3], &device)],
            3,
        );
        let ridge = Tensor::<2>::eye(SYSTEM, &device).reshape([1, 1, SYSTEM, SYSTEM]) * 0.01;
        let system = Tensor::cat(vec![top, bottom], 2) + ridge;
        let targets = Tensor::cat(vec![source, Tensor::zeros([b, groups, 3, 2], &device)], 2);

        let (param, inverse) = solve(&system, &targets, &device);
        // The solve runs on the host; on an autodiff device its gradient is put back by the
        // first-order identity d(L⁻¹Y) = L⁻¹ dY − L⁻¹ dL L⁻¹Y, terms whose values are zero.
        let param = if device.is_autodiff() {
            let d_targets = targets.clone() - targets.detach();
            let d_system = system.clone() - system.detach();
            param.clone() + inverse.clone().matmul(d_targets) - inverse.matmul(d_system.matmul(param))
        } else {
            param
        };
        Self {
            control_points: driving,
            param,
        }
    }

    /// Each spline applied to an `h × w` grid over [−1, 1]: [b, K, h, w, 2] of source
    /// coordinates (`transform_frame`).
    pub fn warp_grid(&self, height: usize, width: usize) -> Tensor<5> {
        let [b, groups, _, _] = self.param.dims();
        let device = self.param.device();
        let (gx, gy) = make_coordinate_grid(height, width, &device);
        let pixels = height * width;
        let ones = Tensor::<2>::ones([height, width], &device);
        // [hw, 3]: (x, y, 1) per pixel.
        let homogeneous = Tensor::stack::<3>(vec![gx.clone(), gy.clone(), ones], 2).reshape([1, 1, pixels, 3]);
        let affine = self.param.clone().narrow(2, POINTS_PER_TPS, 3);
        let transformed = homogeneous.matmul(affine);

        // U(|z − p_i|) for every pixel z and control point i: [b, K, hw, N].
        let grid = Tensor::stack::<3>(vec![gx, gy], 2).reshape([1, 1, pixels, 1, 2]);
        let centres = self.control_points.clone().reshape([b, groups, 1, POINTS_PER_TPS, 2]);
        let squared = (grid - centres)
            .square()
            .sum_dim(4)
            .reshape([b, groups, pixels, POINTS_PER_TPS]);
        let weights = self.param.clone().narrow(2, 0, POINTS_PER_TPS);
        let warped = transformed + radial(squared).matmul(weights);
        warped.reshape([b, groups, height, width, 2])
    }
}

/// `L⁻¹ Y` and `L⁻¹` for each group's system, in f64 on the host (the systems are 8×8).
fn solve(system: &Tensor<4>, targets: &Tensor<4>, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let [b, groups, n, _] = system.dims();
    let values = |t: &Tensor<4>| -> Vec<f64> {
        t.clone()
            .detach()
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap_or_default()
    };
    let (l, y) = (values(system), values(targets));
    let mut params = Vec::with_capacity(b * groups * n * 2);
    let mut inverses = Vec::with_capacity(b * groups * n * n);
    for g in 0..b * groups {
        let inverse = invert(&l[g * n * n..(g + 1) * n * n], n);
        for r in 0..n {
            for c in 0..2 {
                params.push((0..n).map(|k| inverse[r * n + k] * y[(g * n + k) * 2 + c]).sum::<f64>() as f32);
            }
        }
        inverses.extend(inverse.iter().map(|&v| v as f32));
    }
    (
        Tensor::from_data(TensorData::new(params, [b, groups, n, 2]), device),
        Tensor::from_data(TensorData::new(inverses, [b, groups, n, n]), device),
    )
}

/// The inverse of a row-major `n × n` matrix by Gauss–Jordan elimination with partial
/// pivoting; a singular matrix (which the ridge rules out for finite keypoints) gives NaNs.
fn invert(matrix: &[f64], n: usize) -> Vec<f64> {
    let mut a = matrix.to_vec();
    let mut inverse = vec![0.0; n * n];
    for i in 0..n {
        inverse[i * n + i] = 1.0;
    }
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&r, &s| a[r * n + col].abs().total_cmp(&a[s * n + col].abs()))
            .unwrap_or(col);
        if pivot != col {
            for k in 0..n {
                a.swap(pivot * n + k, col * n + k);
                inverse.swap(pivot * n + k, col * n + k);
            }
        }
        let scale = 1.0 / a[col * n + col];
        for k in 0..n {
            a[col * n + k] *= scale;
            inverse[col * n + k] *= scale;
        }
        for row in 0..n {
            if row == col {
                continue;
            }
            let factor = a[row * n + col];
            if factor != 0.0 {
                for k in 0..n {
                    a[row * n + k] -= factor * a[col * n + k];
                    inverse[row * n + k] -= factor * inverse[col * n + k];
                }
            }
        }
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        // A matrix whose first pivot is zero, so the elimination must swap rows.
        let m = [0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.0, 1.0];
        let inv = invert(&m, 3);
        for r in 0..3 {
            for c in 0..3 {
                let v: f64 = (0..3).map(|k| m[r * 3 + k] * inv[k * 3 + c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-12, "{inv:?}");
            }
        }
    }

    #[test]
    fn splines_map_the_driving_keypoints_near_the_source_keypoints() {
        // With the small ridge the spline nearly interpolates: T(p^D_i) ≈ p^S_i.
        let device = Device::flex();
        let driving = [-0.5f32, -0.5, 0.5, -0.5, 0.0, 0.0, -0.5, 0.5, 0.5, 0.5];
        let source: Vec<f32> = driving.iter().map(|v| v * 0.8 + 0.1).collect();
        let kp = |v: Vec<f32>| Keypoints {
            value: Tensor::from_data(TensorData::new(v, [1, 5, 2]), &device),
            jacobian: None,
        };
        let splines = ThinPlateSplines::from_keypoints(&kp(driving.to_vec()), &kp(source.clone()));
        // A 3×3 grid over [−1, 1] has (0, 0) at its centre: the driving keypoint 2.
        let grid = splines.warp_grid(3, 3).into_data().try_to_vec::<f32>().expect("f32");
        let centre = &grid[(3 + 1) * 2..(3 + 1) * 2 + 2];
        assert!(
            (centre[0] - source[4]).abs() < 1e-2 && (centre[1] - source[5]).abs() < 1e-2,
            "{centre:?}"
        );
        // The keypoints are an affine image of each other, so the spline is close to that affine
        // map even far from them (the ridge on the affine block keeps it from being exact).
        let corner = &grid[0..2];
        assert!(corner.iter().all(|v| (v - (-0.8 + 0.1)).abs() < 3e-2), "{corner:?}");
    }
}
