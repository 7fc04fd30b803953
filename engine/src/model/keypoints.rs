//! Keypoints and the coordinate geometry FOMM builds on (`make_coordinate_grid`,
//! `kp2gaussian` in `modules/util.py`).

use burn::tensor::{Device, FloatDType, Tensor, TensorCreationOptions, TensorData};

/// Keypoints of a batch of images, as FOMM's `{'value', 'jacobian'}` dict.
#[derive(Debug, Clone)]
pub struct Keypoints {
    /// [batch, kp, 2]: (x, y) in [-1, 1].
    pub value: Tensor<3>,
    /// [batch, kp, 2, 2]: the local affine transformation near each keypoint.
    pub jacobian: Option<Tensor<4>>,
}

impl Keypoints {
    /// Batch element `index` alone, keeping the batch dimension.
    pub fn select(&self, index: usize) -> Self {
        Self {
            value: self.value.clone().narrow(0, index, 1),
            jacobian: self.jacobian.clone().map(|j| j.narrow(0, index, 1)),
        }
    }

    /// The keypoints in `dtype` (an f16 model's are cast at its edges: see
    /// [`crate::checkpoint::FommModels::in_precision`]).
    pub fn cast(&self, dtype: FloatDType) -> Self {
        Self {
            value: self.value.clone().cast(dtype),
            jacobian: self.jacobian.clone().map(|j| j.cast(dtype)),
        }
    }

    /// The x and y components of the values, each [batch, kp].
    pub fn xy(&self) -> (Tensor<2>, Tensor<2>) {
        let [b, k, _] = self.value.dims();
        let x = self.value.clone().narrow(2, 0, 1).reshape([b, k]);
        let y = self.value.clone().narrow(2, 1, 1).reshape([b, k]);
        (x, y)
    }
}

/// The x and y coordinates of an `h × w` grid spanning [-1, 1] inclusive, each [h, w].
///
/// Computed in f32 with torch's operation order (`2 * (i / (n - 1)) - 1`), so grids agree bit
/// for bit with the official code; stored on `options`' device in its dtype (the device's
/// default, or that of the tensors the grid meets: f16 for a model stored so).
pub fn make_coordinate_grid(
    height: usize,
    width: usize,
    options: impl Into<TensorCreationOptions>,
) -> (Tensor<2>, Tensor<2>) {
    let axis = |n: usize| -> Vec<f32> {
        let denom = n.saturating_sub(1).max(1) as f32;
        (0..n).map(|i| 2.0 * (i as f32 / denom) - 1.0).collect()
    };
    let xs = axis(width);
    let ys = axis(height);
    let gx: Vec<f32> = (0..height).flat_map(|_| xs.iter().copied()).collect();
    let gy: Vec<f32> = ys.iter().flat_map(|&y| std::iter::repeat_n(y, width)).collect();
    let options = options.into();
    (
        Tensor::from_data(TensorData::new(gx, [height, width]), options.clone()),
        Tensor::from_data(TensorData::new(gy, [height, width]), options),
    )
}

/// The grid as one tensor [h, w, 2] of (x, y), the layout `grid_sample` takes.
pub fn coordinate_grid_xy(height: usize, width: usize, device: &Device) -> Tensor<3> {
    let (gx, gy) = make_coordinate_grid(height, width, device);
    Tensor::stack(vec![gx, gy], 2)
}

/// Eq. 6's Gaussian around each keypoint: `exp(-0.5 · |z − p_k|² / variance)`.
///
/// `value` [batch, kp, 2] → [batch, kp, h, w]
pub fn kp2gaussian(value: &Tensor<3>, height: usize, width: usize, variance: f64) -> Tensor<4> {
    let [b, k, _] = value.dims();
    let (gx, gy) = make_coordinate_grid(height, width, (&value.device(), value.dtype()));
    let mx = value.clone().narrow(2, 0, 1).reshape([b, k, 1, 1]);
    let my = value.clone().narrow(2, 1, 1).reshape([b, k, 1, 1]);
    let dx = gx.reshape([1, 1, height, width]) - mx;
    let dy = gy.reshape([1, 1, height, width]) - my;
    ((dx.clone() * dx + dy.clone() * dy) * (-0.5 / variance)).exp()
}

/// The driving keypoints' Gaussians minus the source's, a zero channel (the background's) in
/// front: the heatmap input of FOMM's dense motion network (Eq. 6, H_k) and TPSMM's.
///
/// values [batch, kp, 2] → [batch, kp + 1, h, w]
pub fn heatmap_difference(
    kp_driving: &Tensor<3>,
    kp_source: &Tensor<3>,
    height: usize,
    width: usize,
    variance: f64,
) -> Tensor<4> {
    let heatmap = kp2gaussian(kp_driving, height, width, variance) - kp2gaussian(kp_source, height, width, variance);
    let [b, _, _, _] = heatmap.dims();
    let zeros = Tensor::zeros([b, 1, height, width], (&heatmap.device(), heatmap.dtype()));
    Tensor::cat(vec![zeros, heatmap], 1)
}

/// Inverse of a batch of 2×2 matrices [.., 2, 2] by the closed form.
pub fn inverse_2x2(m: Tensor<4>) -> Tensor<4> {
    let [b, k, _, _] = m.dims();
    let entry = |r: usize, c: usize| m.clone().slice([0..b, 0..k, r..r + 1, c..c + 1]);
    let (a, bb, c, d) = (entry(0, 0), entry(0, 1), entry(1, 0), entry(1, 1));
    let det = a.clone() * d.clone() - bb.clone() * c.clone();
    let top = Tensor::cat(vec![d, bb.neg()], 3);
    let bottom = Tensor::cat(vec![c.neg(), a], 3);
    Tensor::cat(vec![top, bottom], 2) / det
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_spans_minus_one_to_one() {
        let device = Device::flex();
        let (gx, gy) = make_coordinate_grid(3, 5, &device);
        let gx = gx.into_data().try_to_vec::<f32>().expect("f32");
        let gy = gy.into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(&gx[..5], &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(gy[0], -1.0);
        assert_eq!(gy[5], 0.0);
        assert_eq!(gy[14], 1.0);
    }

    #[test]
    fn gaussian_peaks_at_the_keypoint() {
        let device = Device::flex();
        let kp = Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 0.0], [1, 1, 2]), &device);
        let g = kp2gaussian(&kp, 5, 5, 0.01)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(g[12], 1.0);
        // One step (0.5) away: exp(-0.5 · 0.25 / 0.01).
        assert!((g[13] - (-12.5f32).exp()).abs() < 1e-9);
    }

    #[test]
    fn inverse_times_matrix_is_identity() {
        let device = Device::flex();
        let m = Tensor::<4>::from_data(TensorData::new(vec![2.0f32, 1.0, 0.5, 3.0], [1, 1, 2, 2]), &device);
        let product = m
            .clone()
            .matmul(inverse_2x2(m))
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        for (got, want) in product.iter().zip([1.0, 0.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-6, "{product:?}");
        }
    }
}
