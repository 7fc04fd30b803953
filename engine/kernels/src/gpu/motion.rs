//! The input of FOMM's dense motion network on the GPU in one launch: per pixel of each of the
//! K + 1 sparse motions (Eq. 4: the identity and each keypoint's local affine motion), the
//! motion, the keypoint heatmap (Eq. 6) and the source warped by it (Eq. 7), written straight
//! into the hourglass's input `[b, (K + 1)(c + 1), h, w]` and the motions beside it. The
//! keypoints from the detector's heatmaps, and the mask, occlusion map and dense motion from the
//! network's heads, one launch each too; the warped, occluded source features one more.
//!
//! Why: composed of tensor operations, this is ~40 small launches a frame on the GPU (slices of
//! the keypoints and Jacobians, the 2×2 inverse, concatenations, a repeat of the source, the
//! sampling), each over a few thousand values; the dense motion stage's launches then
//! outnumbered its convolutions' several times over.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::launch_size;
use super::motion_kernels::{heatmap_statistics_kernel, motion_input_kernel, motion_output_kernel, warp_scaled_kernel};

/// The motion operations as backend operations (lazy, in order, under fusion).
#[backend_extension(Cube, Fusion)]
pub trait MotionOps: Backend {
    /// The hourglass's input `[b, (K + 1)(c + 1), h, w]` from the source `[b, c, h, w]` and
    /// keypoints `[b, K, 2]` with, where `jacobians`, their Jacobians `[b, K, 2, 2]` (read only
    /// then: pass any tensor otherwise), then the sparse motions `[b, K + 1, h, w, 2]`, one after
    /// the other in one flat tensor of the source's dtype; `gaussian_factor` is `−1/2σ²`. The
    /// keypoints and Jacobians are f32.
    #[allow(clippy::too_many_arguments)]
    #[fusion(dtype = source, shape = Shape::new([motion_inputs_length(source, kp_driving)]))]
    fn motion_inputs(
        source: FloatTensor<Self>,
        kp_driving: FloatTensor<Self>,
        kp_source: FloatTensor<Self>,
        jacobian_driving: FloatTensor<Self>,
        jacobian_source: FloatTensor<Self>,
        gaussian_factor: f32,
        jacobians: bool,
    ) -> FloatTensor<Self>;

    /// From the keypoint detector's logits (the `keypoints` first channels of `prediction`
    /// `[b, ≥ K, h, w]`), with `jacobian` the softmax heatmaps' weighted Jacobians `[b, K, 2, 2]`
    /// from the maps at channels `first_map ..` of `maps` (4K, or 4 shared; read only then: pass
    /// any tensor otherwise), then their means `[b, K, 2]`, one after the other in one flat
    /// f32 tensor (keypoints are f32 whatever the maps are stored in).
    #[allow(clippy::too_many_arguments)]
    #[fusion(dtype = DType::F32, shape = heatmap_statistics_shape(prediction, keypoints, jacobian))]
    fn heatmap_statistics(
        prediction: FloatTensor<Self>,
        maps: FloatTensor<Self>,
        keypoints: usize,
        first_map: usize,
        shared_map: bool,
        temperature: f32,
        jacobian: bool,
    ) -> FloatTensor<Self>;

    /// From the dense motion network's heads `[b, masks (+ 1 occlusion), h, w]`: the softmax
    /// mask and the occlusion's sigmoid (the heads' shape), then the dense motion Σ mask ·
    /// `motions` `[b, masks, h, w, 2]` (`[b, h, w, 2]`), one after the other in one flat tensor.
    #[fusion(dtype = logits, shape = Shape::new([motion_outputs_length(logits)]))]
    fn motion_outputs(logits: FloatTensor<Self>, motions: FloatTensor<Self>, masks: usize) -> FloatTensor<Self>;

    /// `source` `[b, c, h, w]` sampled at `grid` `[b, h, w, 2]` (torch's `grid_sample`,
    /// `align_corners=False`, zeros outside), times `scale` `[b, 1, h, w]`.
    #[fusion(dtype = source, shape = source.clone())]
    fn warp_scaled(source: FloatTensor<Self>, grid: FloatTensor<Self>, scale: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The values of [`MotionOps::motion_inputs`]'s output: the hourglass's input, then the sparse
/// motions.
fn motion_inputs_length(source: &Shape, kp_driving: &Shape) -> usize {
    let [batch, channels, height, width] = source.dims::<4>();
    let count = kp_driving[1] + 1;
    batch * count * height * width * (channels + 1 + 2)
}

/// The values of [`MotionOps::motion_outputs`]'s output: the maps (the heads' shape), then the
/// dense motion.
fn motion_outputs_length(logits: &Shape) -> usize {
    let [batch, channels, height, width] = logits.dims::<4>();
    batch * (channels + 2) * height * width
}

fn heatmap_statistics_shape(prediction: &Shape, keypoints: &usize, jacobian: &bool) -> Shape {
    let values_per_heatmap = if *jacobian { 4 + 2 } else { 2 };
    Shape::new([prediction[0] * keypoints * values_per_heatmap])
}

/// A flat output of two contiguous parts, `first` then `second`, as tensors of those shapes: views
/// of its buffer where a part starts and ends on the device's memory alignment (burn's slice),
/// else a copy of that part.
fn two_parts<const A: usize, const B: usize>(
    flat: Tensor<1>,
    first: [usize; A],
    second: [usize; B],
) -> (Tensor<A>, Tensor<B>) {
    let first_length = first.iter().product();
    let second_length = second.iter().product();
    (
        flat.clone().narrow(0, 0, first_length).reshape(first),
        flat.narrow(0, first_length, second_length).reshape(second),
    )
}

impl MotionOps for CubeBackend {
    fn motion_inputs(
        source: CubeTensor,
        kp_driving: CubeTensor,
        kp_source: CubeTensor,
        jacobian_driving: CubeTensor,
        jacobian_source: CubeTensor,
        gaussian_factor: f32,
        jacobians: bool,
    ) -> CubeTensor {
        let [batch, _, height, width] = source.shape().dims::<4>();
        let count = kp_driving.shape()[1] + 1;
        let (client, device, dtype) = (source.client.clone(), source.device.clone(), source.dtype);
        let shape = Shape::new([motion_inputs_length(&source.shape(), &kp_driving.shape())]);
        let out = empty_device_dtype(client.clone(), device, shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, batch * count * height * width);
        motion_input_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            source.into_tensor_arg(),
            kp_driving.into_tensor_arg(),
            kp_source.into_tensor_arg(),
            jacobian_driving.into_tensor_arg(),
            jacobian_source.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            gaussian_factor,
            jacobians,
            dtype_to_storage_type(dtype),
        );
        out
    }

    fn motion_outputs(logits: CubeTensor, motions: CubeTensor, masks: usize) -> CubeTensor {
        let [batch, _, height, width] = logits.shape().dims::<4>();
        let (client, device, dtype) = (logits.client.clone(), logits.device.clone(), logits.dtype);
        let shape = Shape::new([motion_outputs_length(&logits.shape())]);
        let out = empty_device_dtype(client.clone(), device, shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, batch * height * width);
        motion_output_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            logits.into_tensor_arg(),
            motions.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            masks as u32,
            dtype_to_storage_type(dtype),
        );
        out
    }

    fn warp_scaled(source: CubeTensor, grid: CubeTensor, scale: CubeTensor) -> CubeTensor {
        let (client, device, dtype) = (source.client.clone(), source.device.clone(), source.dtype);
        let out = empty_device_dtype(client.clone(), device, source.shape(), dtype);
        let (cube_count, cube_dim) = launch_size(&client, out.shape().num_elements());
        warp_scaled_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            source.into_tensor_arg(),
            grid.into_tensor_arg(),
            scale.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            dtype_to_storage_type(dtype),
        );
        out
    }

    fn heatmap_statistics(
        prediction: CubeTensor,
        maps: CubeTensor,
        keypoints: usize,
        first_map: usize,
        shared_map: bool,
        temperature: f32,
        jacobian: bool,
    ) -> CubeTensor {
        let shape = heatmap_statistics_shape(&prediction.shape(), &keypoints, &jacobian);
        let heatmaps = prediction.shape()[0] * keypoints;
        let (client, device, dtype) = (prediction.client.clone(), prediction.device.clone(), prediction.dtype);
        let out = empty_device_dtype(client.clone(), device, shape, DType::F32);
        let (cube_count, cube_dim) = launch_size(&client, heatmaps);
        heatmap_statistics_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            prediction.into_tensor_arg(),
            maps.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            keypoints as u32,
            first_map as u32,
            u32::from(shared_map),
            temperature,
            jacobian,
            dtype_to_storage_type(dtype),
        );
        out
    }
}

/// The dense motion network's input, made on the GPU.
#[derive(Debug, Clone)]
pub struct MotionInputs {
    /// `[b, K + 1, h, w, 2]`: the identity, then each keypoint's motion (Eq. 4).
    pub sparse_motions: Tensor<5>,
    /// `[b, (K + 1)(c + 1), h, w]`: per motion its heatmap (Eq. 6), then the source warped by it.
    pub hourglass_input: Tensor<4>,
}

/// The sparse motions and the hourglass's input of FOMM's dense motion network for `source`
/// `[b, c, h, w]` and keypoint values `[b, K, 2]` with their Jacobians `[b, K, 2, 2]` if
/// estimated, Gaussians of variance `kp_variance`; `None` unless every tensor is a plain one on
/// a GPU whose kernels are ours ([`super::serves`]).
pub fn motion_inputs(
    source: &Tensor<4>,
    (kp_driving, jacobian_driving): (&Tensor<3>, Option<&Tensor<4>>),
    (kp_source, jacobian_source): (&Tensor<3>, Option<&Tensor<4>>),
    kp_variance: f64,
) -> Option<MotionInputs> {
    let device = source.device();
    if device.is_autodiff() || !super::serves(&device) {
        return None;
    }
    let (driving, source_kp) = (in_f32(kp_driving)?, in_f32(kp_source)?);
    let jacobians = match (jacobian_driving, jacobian_source) {
        (Some(driving), Some(source)) => Some((in_f32(driving)?, in_f32(source)?)),
        _ => None,
    };
    let estimated = jacobians.is_some();
    // Without Jacobians the keypoints stand in for them, unread.
    let (jacobian_driving, jacobian_source) = jacobians.unwrap_or_else(|| (driving.clone(), source_kp.clone()));
    let [batch, channels, height, width] = source.dims();
    let count = kp_driving.dims()[1] + 1;
    let out = <Cube as MotionOps>::motion_inputs(
        source.clone().try_into_primitive::<Cube>().ok()?,
        driving,
        source_kp,
        jacobian_driving,
        jacobian_source,
        (-0.5 / kp_variance) as f32,
        estimated,
    );
    let (hourglass_input, sparse_motions) = two_parts(
        Tensor::from_primitive::<Cube>(out),
        [batch, count * (channels + 1), height, width],
        [batch, count, height, width, 2],
    );
    Some(MotionInputs {
        sparse_motions,
        hourglass_input,
    })
}

/// Keypoint values or Jacobians as the motion kernel reads them: f32 (a cast only where a
/// caller's are not), on burn's CubeCL backend.
fn in_f32<const D: usize>(tensor: &Tensor<D>) -> Option<FloatTensor<Cube>> {
    tensor.clone().cast(FloatDType::F32).try_into_primitive::<Cube>().ok()
}

/// FOMM's keypoints from the detector's logits `[b, K, h, w]` (softmax with `temperature`, then
/// each heatmap's mean on the grid) and, given its Jacobian maps `[b, 4K or 4, h, w]`, their
/// heatmap-weighted averages `[b, K, 2, 2]`, in f32 whatever the maps' dtype: one launch, where
/// burn's softmax, products and sums launch a dozen. `None` unless the tensors are plain ones on
/// a GPU whose kernels are ours.
pub fn heatmap_keypoints(
    prediction: &Tensor<4>,
    jacobian_maps: Option<&Tensor<4>>,
    temperature: f64,
) -> Option<(Tensor<3>, Option<Tensor<4>>)> {
    // Without Jacobian maps the logits stand in for them, unread.
    let maps = jacobian_maps.unwrap_or(prediction);
    let keypoints = prediction.dims()[1];
    keypoint_statistics(prediction, maps, keypoints, 0, jacobian_maps.is_some(), temperature)
}

/// [`heatmap_keypoints`] of the detector's two heads run as one convolution: `heads`
/// `[b, K (+ 4K or 4), h, w]`, the logits of `keypoints` heatmaps then their Jacobian maps,
/// where there are any, read in place (a slice of the maps would copy them wherever their
/// offset is off the device's alignment).
pub fn heatmap_keypoints_of_heads(
    heads: &Tensor<4>,
    keypoints: usize,
    temperature: f64,
) -> Option<(Tensor<3>, Option<Tensor<4>>)> {
    let jacobian = heads.dims()[1] > keypoints;
    keypoint_statistics(heads, heads, keypoints, keypoints, jacobian, temperature)
}

fn keypoint_statistics(
    prediction: &Tensor<4>,
    maps: &Tensor<4>,
    keypoints: usize,
    first_map: usize,
    jacobian: bool,
    temperature: f64,
) -> Option<(Tensor<3>, Option<Tensor<4>>)> {
    let device = prediction.device();
    if device.is_autodiff() || !super::serves(&device) {
        return None;
    }
    let batch = prediction.dims()[0];
    let shared_map = maps.dims()[1] - first_map == 4;
    let primitive = |t: &Tensor<4>| t.clone().try_into_primitive::<Cube>().ok();
    let statistics = Tensor::from_primitive::<Cube>(<Cube as MotionOps>::heatmap_statistics(
        primitive(prediction)?,
        primitive(maps)?,
        keypoints,
        first_map,
        shared_map,
        temperature as f32,
        jacobian,
    ));
    if !jacobian {
        return Some((statistics.reshape([batch, keypoints, 2]), None));
    }
    let (jacobians, values) = two_parts(statistics, [batch, keypoints, 2, 2], [batch, keypoints, 2]);
    Some((values, Some(jacobians)))
}

/// What the dense motion network's heads give, made on the GPU.
#[derive(Debug, Clone)]
pub struct MotionOutputs {
    /// `[b, masks, h, w]`: the softmax over the sparse motions.
    pub mask: Tensor<4>,
    /// `[b, 1, h, w]`: the occlusion map's sigmoid, where the heads have its channel.
    pub occlusion: Option<Tensor<4>>,
    /// `[b, h, w, 2]`: the mask-weighted sum of the sparse motions.
    pub deformation: Tensor<4>,
}

/// FOMM's mask (softmax over the `masks` first channels of `logits` `[b, masks (+ 1), h, w]`),
/// occlusion map (sigmoid of the channel after them, if any) and dense motion (the
/// mask-weighted sum of `motions` `[b, masks, h, w, 2]`) in one launch, where burn's softmax,
/// sigmoid, product and sum launch about nine. `None` unless the tensors are plain ones on a GPU
/// whose kernels are ours.
pub fn motion_outputs(logits: &Tensor<4>, motions: &Tensor<5>, masks: usize) -> Option<MotionOutputs> {
    let device = logits.device();
    if device.is_autodiff() || !super::serves(&device) {
        return None;
    }
    let [batch, channels, height, width] = logits.dims();
    let heads = logits.clone().try_into_primitive::<Cube>().ok()?;
    let motions = motions.clone().try_into_primitive::<Cube>().ok()?;
    let (maps, deformation) = two_parts(
        Tensor::from_primitive::<Cube>(<Cube as MotionOps>::motion_outputs(heads, motions, masks)),
        [batch, channels, height, width],
        [batch, height, width, 2],
    );
    Some(MotionOutputs {
        mask: maps.clone().narrow(1, 0, masks),
        occlusion: (channels > masks).then(|| maps.narrow(1, masks, 1)),
        deformation,
    })
}

/// FOMM's occluded, warped source features (the generator's `out = deform_input(out,
/// deformation) · occlusion_map`): `features` `[b, c, h, w]` sampled at `deformation`
/// `[b, h, w, 2]` and multiplied by `occlusion` `[b, 1, h, w]` in one launch, where burn's
/// sampling and product take two and write the warped features in between. `None` unless the
/// three are plain tensors on a GPU whose kernels are ours, at one resolution.
pub fn warp_occluded(features: &Tensor<4>, deformation: &Tensor<4>, occlusion: &Tensor<4>) -> Option<Tensor<4>> {
    let device = features.device();
    if device.is_autodiff() || !super::serves(&device) {
        return None;
    }
    let [batch, _, height, width] = features.dims();
    if deformation.dims() != [batch, height, width, 2] || occlusion.dims() != [batch, 1, height, width] {
        return None;
    }
    let primitive = |t: &Tensor<4>| t.clone().try_into_primitive::<Cube>().ok();
    let warped = <Cube as MotionOps>::warp_scaled(primitive(features)?, primitive(deformation)?, primitive(occlusion)?);
    Some(Tensor::from_primitive::<Cube>(warped))
}
