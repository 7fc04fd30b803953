//! What a training monitor sees of a step, whatever model family trains: the first pair's
//! images, the generator's background and occlusion maps, PriorityCut's maps, the CutMix and
//! the U-Net decoder's scores. Computed without touching the training state.

use burn::module::Module;
use burn::tensor::Tensor;

use super::unet::DiscriminatorPass;
use crate::augment::{mix, priority_cut};
use crate::config::{PriorityCutParams, Variant};
use crate::frames::tensor_to_image;
use crate::model::blocks::resize_bilinear;
use crate::model::unet_discriminator::UNetDiscriminator;
use crate::render::{Map, Snapshot, SnapshotImage, SnapshotMap};

/// What a step computed, kept for a snapshot.
#[derive(Debug)]
pub struct StepTensors {
    pub source: Tensor<4>,
    pub driving: Tensor<4>,
    pub deformed: Tensor<4>,
    pub prediction: Tensor<4>,
    /// [b, ≥1, h', w'] channel 0 = the background's share of the motion (FOMM's mask, TPSMM's
    /// contribution maps).
    pub background: Tensor<4>,
    /// The finest occlusion map, where the generator predicts one.
    pub occlusion: Option<Tensor<4>>,
    /// The coarser occlusion masks (TPSMM's), coarsest first; none for FOMM.
    pub coarser_occlusions: Vec<Tensor<4>>,
    pub kp_source: Tensor<3>,
    pub kp_driving: Tensor<3>,
    /// The discriminator step's CutMix and decoder maps.
    pub discriminator: DiscriminatorPass,
}

/// TPSMM's occlusion masks (coarsest first) as [`StepTensors`] takes them: the finest, and the
/// coarser ones.
pub fn finest_and_coarser(masks: &[Tensor<4>]) -> (Option<Tensor<4>>, Vec<Tensor<4>>) {
    match masks.split_last() {
        Some((finest, coarser)) => (Some(finest.clone()), coarser.to_vec()),
        None => (None, Vec::new()),
    }
}

/// The first pair of the step, as a monitor shows it. Anything the step did not compute runs on
/// the plain (inference) device.
pub fn snapshot(
    variant: Variant,
    params: &PriorityCutParams,
    unet: Option<&UNetDiscriminator>,
    t: StepTensors,
) -> Snapshot {
    let first = |x: &Tensor<4>| x.clone().narrow(0, 0, 1).detach().inner();
    let [_, _, h, w] = t.driving.dims();
    let (source, driving, prediction) = (first(&t.source), first(&t.driving), first(&t.prediction));
    let background = first(&t.background);
    let occlusion = t
        .occlusion
        .as_ref()
        .map(first)
        .unwrap_or_else(|| background.clone().narrow(1, 0, 1).ones_like());
    let k_display = (params.k_min + params.k_max) / 200.0;
    let maps = priority_cut(
        background.clone(),
        occlusion.clone(),
        h,
        w,
        params.background_threshold,
        &[k_display],
    );
    let (mask, mixed) = match &t.discriminator.cutmix {
        Some((mask, mixed)) => (first(mask), first(mixed)),
        None => {
            let mask = maps.mask.clone();
            (mask.clone(), mix(driving.clone(), prediction.clone(), mask))
        }
    };
    let mut images = vec![
        (SnapshotImage::Source, tensor_to_image(source)),
        (SnapshotImage::Driving, tensor_to_image(driving)),
        (SnapshotImage::Deformed, tensor_to_image(first(&t.deformed))),
        (SnapshotImage::Prediction, tensor_to_image(prediction)),
        (SnapshotImage::Cutmix, tensor_to_image(mixed.clone())),
    ];
    images.shrink_to_fit();
    let resize = |x: Tensor<4>| resize_bilinear(x, h, w);
    // Each coarser mask is half the side of the next; named by how far below the finest.
    let coarser = t.coarser_occlusions.iter().rev().enumerate();
    let mut out_maps: Vec<(SnapshotMap, Map)> = coarser
        .filter_map(|(i, mask)| {
            let which = SnapshotMap::coarser_occlusion(i + 1)?;
            Some((which, to_map(resize(first(mask)), (0.0, 1.0))))
        })
        .rev()
        .collect();
    out_maps.extend([
        (SnapshotMap::Occlusion, to_map(resize(occlusion), (0.0, 1.0))),
        (
            SnapshotMap::Background,
            to_map(resize(background.narrow(1, 0, 1)), (0.0, 1.0)),
        ),
        (SnapshotMap::BackgroundBinary, to_map(maps.background, (0.0, 1.0))),
        (
            SnapshotMap::ForegroundOcclusion,
            to_map(maps.foreground_occlusion, (0.0, 1.0)),
        ),
        (SnapshotMap::PrioritycutMask, to_map(maps.mask, (0.0, 1.0))),
        (SnapshotMap::CutmixMask, to_map(mask, (0.0, 1.0))),
    ]);
    if let Some(unet) = unet {
        let [real, fake, on_mix] = &t.discriminator.decoder;
        // Whatever the step did not compute comes from an inference copy (no power
        // iteration, no state change).
        let plain = unet.valid();
        let pixel = |given: &Option<Tensor<4>>, input: Tensor<4>| match given {
            Some(p) => first(p),
            None => plain.forward(input).pixel,
        };
        out_maps.push((
            SnapshotMap::DecoderReal,
            to_map(pixel(real, first(&t.driving)), (0.0, 1.0)),
        ));
        out_maps.push((
            SnapshotMap::DecoderFake,
            to_map(pixel(fake, first(&t.prediction)), (0.0, 1.0)),
        ));
        out_maps.push((SnapshotMap::DecoderMixed, to_map(pixel(on_mix, mixed), (0.0, 1.0))));
    }
    let points = |v: &Tensor<3>| -> Vec<[f32; 2]> {
        let data: Vec<f32> = v
            .clone()
            .narrow(0, 0, 1)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        data.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
    };
    Snapshot {
        step: 0,
        variant,
        images,
        maps: out_maps,
        keypoints: vec![
            (SnapshotImage::Source, points(&t.kp_source)),
            (SnapshotImage::Driving, points(&t.kp_driving)),
        ],
    }
}

/// Reads each loss to the CPU (the NaN guard needs them anyway).
pub fn scalars(losses: &[(&'static str, Tensor<1>)]) -> Vec<(&'static str, f64)> {
    losses
        .iter()
        .map(|(name, t)| (*name, f64::from(t.clone().into_scalar::<f32>())))
        .collect()
}

/// Channel 0 of batch element 0 as a display map.
fn to_map(t: Tensor<4>, range: (f32, f32)) -> Map {
    let [_, _, h, w] = t.dims();
    let values: Vec<f32> = t
        .narrow(0, 0, 1)
        .narrow(1, 0, 1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    Map {
        width: w,
        height: h,
        values,
        range,
    }
}
