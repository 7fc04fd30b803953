//! The input of FOMM's dense motion network on the GPU in two launches: the K + 1 sparse motions
//! (Eq. 4: the identity and each keypoint's local affine motion) in one, the keypoint heatmaps
//! (Eq. 6) and the source warped by each motion (Eq. 7) in the other, written straight into the
//! hourglass's input `[b, (K + 1)(c + 1), h, w]`.
//!
//! Why: composed of tensor operations, this is ~40 small launches a frame on the GPU (slices of
//! the keypoints and Jacobians, the 2×2 inverse, concatenations, a repeat of the source, the
//! sampling), each over a few thousand values; the dense motion stage's launches then
//! outnumbered its convolutions' several times over.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use super::launch_size;
use super::motion_kernels::{
    heatmap_statistics_kernel, motion_input_kernel, motion_output_kernel, sparse_motion_kernel,
};

/// The motion operations as backend operations (lazy, in order, under fusion).
#[backend_extension(Cube, Fusion)]
pub trait MotionOps: Backend {
    /// `[b, K + 1, h, w, 2]` from keypoints `[b, K, 2]` and, with `jacobians`, their Jacobians
    /// `[b, K, 2, 2]` (read only then: pass any tensor otherwise).
    #[fusion(dtype = kp_driving, shape = Shape::new([kp_driving[0], kp_driving[1] + 1, size[0], size[1], 2]))]
    fn sparse_motions(
        kp_driving: FloatTensor<Self>,
        kp_source: FloatTensor<Self>,
        jacobian_driving: FloatTensor<Self>,
        jacobian_source: FloatTensor<Self>,
        size: [usize; 2],
        jacobians: bool,
    ) -> FloatTensor<Self>;

    /// The hourglass's input `[b, (K + 1)(c + 1), h, w]` from the source `[b, c, h, w]` and the
    /// sparse motions; `gaussian_factor` is `−1/2σ²`.
    #[fusion(dtype = source, shape = Shape::new([source[0], motions[1] * (source[1] + 1), source[2], source[3]]))]
    fn motion_inputs(
        source: FloatTensor<Self>,
        motions: FloatTensor<Self>,
        kp_driving: FloatTensor<Self>,
        kp_source: FloatTensor<Self>,
        gaussian_factor: f32,
    ) -> FloatTensor<Self>;

    /// From the keypoint detector's logits `[b, K, h, w]`, the softmax heatmaps' means `[b, K,
    /// 2]`, or with `jacobian` their weighted Jacobians `[b, K, 2, 2]` from `maps` `[b, 4K or 4,
    /// h, w]` (read only then: pass any tensor otherwise).
    #[fusion(dtype = prediction, shape = heatmap_statistics_shape(prediction, jacobian))]
    fn heatmap_statistics(
        prediction: FloatTensor<Self>,
        maps: FloatTensor<Self>,
        temperature: f32,
        jacobian: bool,
    ) -> FloatTensor<Self>;

    /// From the dense motion network's heads `[b, masks (+ 1 occlusion), h, w]`: the softmax mask
    /// and the occlusion's sigmoid (same shape), or with `deformation` the dense motion `[b, h, w,
    /// 2]` = Σ mask · `motions` `[b, masks, h, w, 2]` (read only then: pass any tensor
    /// otherwise).
    #[fusion(dtype = logits, shape = motion_output_shape(logits, deformation))]
    fn motion_outputs(
        logits: FloatTensor<Self>,
        motions: FloatTensor<Self>,
        masks: usize,
        deformation: bool,
    ) -> FloatTensor<Self>;
}

/// `[b, n(+1), h, w]` of the mask and occlusion, or `[b, h, w, 2]` of the dense motion.
fn motion_output_shape(logits: &Shape, deformation: &bool) -> Shape {
    match deformation {
        true => Shape::new([logits[0], logits[2], logits[3], 2]),
        false => logits.clone(),
    }
}

fn heatmap_statistics_shape(prediction: &Shape, jacobian: &bool) -> Shape {
    match jacobian {
        true => Shape::new([prediction[0], prediction[1], 2, 2]),
        false => Shape::new([prediction[0], prediction[1], 2]),
    }
}

impl MotionOps for CubeBackend {
    fn sparse_motions(
        kp_driving: CubeTensor,
        kp_source: CubeTensor,
        jacobian_driving: CubeTensor,
        jacobian_source: CubeTensor,
        size: [usize; 2],
        jacobians: bool,
    ) -> CubeTensor {
        let [batch, keypoints, _] = kp_driving.shape().dims::<3>();
        let (client, device, dtype) = (kp_driving.client.clone(), kp_driving.device.clone(), kp_driving.dtype);
        let shape = Shape::new([batch, keypoints + 1, size[0], size[1], 2]);
        let motions = empty_device_dtype(client.clone(), device, shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, batch * (keypoints + 1) * size[0] * size[1]);
        sparse_motion_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            kp_driving.into_tensor_arg(),
            kp_source.into_tensor_arg(),
            jacobian_driving.into_tensor_arg(),
            jacobian_source.into_tensor_arg(),
            motions.clone().into_tensor_arg(),
            jacobians,
            dtype_to_storage_type(dtype),
        );
        motions
    }

    fn motion_inputs(
        source: CubeTensor,
        motions: CubeTensor,
        kp_driving: CubeTensor,
        kp_source: CubeTensor,
        gaussian_factor: f32,
    ) -> CubeTensor {
        let [batch, channels, height, width] = source.shape().dims::<4>();
        let count = motions.shape()[1];
        let (client, device, dtype) = (source.client.clone(), source.device.clone(), source.dtype);
        let shape = Shape::new([batch, count * (channels + 1), height, width]);
        let inputs = empty_device_dtype(client.clone(), device, shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, batch * count * height * width);
        motion_input_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            source.into_tensor_arg(),
            // The kernel reads (x, y) pairs at consecutive places.
            into_contiguous(motions).into_tensor_arg(),
            kp_driving.into_tensor_arg(),
            kp_source.into_tensor_arg(),
            inputs.clone().into_tensor_arg(),
            gaussian_factor,
            dtype_to_storage_type(dtype),
        );
        inputs
    }

    fn motion_outputs(logits: CubeTensor, motions: CubeTensor, masks: usize, deformation: bool) -> CubeTensor {
        let shape = motion_output_shape(&logits.shape(), &deformation);
        let [batch, _, height, width] = logits.shape().dims::<4>();
        let (client, device, dtype) = (logits.client.clone(), logits.device.clone(), logits.dtype);
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
            deformation,
            dtype_to_storage_type(dtype),
        );
        out
    }

    fn heatmap_statistics(prediction: CubeTensor, maps: CubeTensor, temperature: f32, jacobian: bool) -> CubeTensor {
        let shape = heatmap_statistics_shape(&prediction.shape(), &jacobian);
        let heatmaps = shape[0] * shape[1];
        let (client, device, dtype) = (prediction.client.clone(), prediction.device.clone(), prediction.dtype);
        let out = empty_device_dtype(client.clone(), device, shape, dtype);
        let (cube_count, cube_dim) = launch_size(&client, heatmaps);
        heatmap_statistics_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            prediction.into_tensor_arg(),
            maps.into_tensor_arg(),
            out.clone().into_tensor_arg(),
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
    let [_, _, height, width] = source.dims();
    let cube = |t: &Tensor<3>| t.clone().try_into_primitive::<Cube>().ok();
    let jacobians = match (jacobian_driving, jacobian_source) {
        (Some(driving), Some(source)) => Some((
            driving.clone().try_into_primitive::<Cube>().ok()?,
            source.clone().try_into_primitive::<Cube>().ok()?,
        )),
        _ => None,
    };
    let estimated = jacobians.is_some();
    // Without Jacobians the keypoints stand in for them, unread.
    let (jacobian_driving, jacobian_source) = match jacobians {
        Some(pair) => pair,
        None => (cube(kp_driving)?, cube(kp_source)?),
    };
    let motions = <Cube as MotionOps>::sparse_motions(
        cube(kp_driving)?,
        cube(kp_source)?,
        jacobian_driving,
        jacobian_source,
        [height, width],
        estimated,
    );
    let inputs = <Cube as MotionOps>::motion_inputs(
        source.clone().try_into_primitive::<Cube>().ok()?,
        motions.clone(),
        cube(kp_driving)?,
        cube(kp_source)?,
        (-0.5 / kp_variance) as f32,
    );
    Some(MotionInputs {
        sparse_motions: Tensor::from_primitive::<Cube>(motions),
        hourglass_input: Tensor::from_primitive::<Cube>(inputs),
    })
}

/// FOMM's keypoints from the detector's logits `[b, K, h, w]` (softmax with `temperature`, then
/// each heatmap's mean on the grid) and, given its Jacobian maps `[b, 4K or 4, h, w]`, their
/// heatmap-weighted averages `[b, K, 2, 2]`: two launches, where burn's softmax, products and sums
/// launch a dozen. `None` unless the tensors are plain ones on a GPU whose kernels are ours.
pub fn heatmap_keypoints(
    prediction: &Tensor<4>,
    jacobian_maps: Option<&Tensor<4>>,
    temperature: f64,
) -> Option<(Tensor<3>, Option<Tensor<4>>)> {
    let device = prediction.device();
    if device.is_autodiff() || !super::serves(&device) {
        return None;
    }
    let logits = prediction.clone().try_into_primitive::<Cube>().ok()?;
    let temperature = temperature as f32;
    let values = <Cube as MotionOps>::heatmap_statistics(logits.clone(), logits.clone(), temperature, false);
    let jacobians = match jacobian_maps {
        Some(maps) => {
            let maps = maps.clone().try_into_primitive::<Cube>().ok()?;
            let jacobians = <Cube as MotionOps>::heatmap_statistics(logits, maps, temperature, true);
            Some(Tensor::from_primitive::<Cube>(jacobians))
        }
        None => None,
    };
    Some((Tensor::from_primitive::<Cube>(values), jacobians))
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
/// mask-weighted sum of `motions` `[b, masks, h, w, 2]`) in two launches, where burn's softmax,
/// sigmoid, product and sum launch about nine. `None` unless the tensors are plain ones on a GPU
/// whose kernels are ours.
pub fn motion_outputs(logits: &Tensor<4>, motions: &Tensor<5>, masks: usize) -> Option<MotionOutputs> {
    let device = logits.device();
    if device.is_autodiff() || !super::serves(&device) {
        return None;
    }
    let [_, channels, _, _] = logits.dims();
    let heads = logits.clone().try_into_primitive::<Cube>().ok()?;
    let motions = motions.clone().try_into_primitive::<Cube>().ok()?;
    let maps = <Cube as MotionOps>::motion_outputs(heads.clone(), heads.clone(), masks, false);
    let deformation = <Cube as MotionOps>::motion_outputs(heads, motions, masks, true);
    let maps = Tensor::<4>::from_primitive::<Cube>(maps);
    Some(MotionOutputs {
        mask: maps.clone().narrow(1, 0, masks),
        occlusion: (channels > masks).then(|| maps.narrow(1, masks, 1)),
        deformation: Tensor::from_primitive::<Cube>(deformation),
    })
}
