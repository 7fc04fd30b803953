//! Checks the engine against golden outputs of the official FOMM implementation: a folder with
//! `config.yaml`, `checkpoint.pth.tar` and `.npy` tensors, as `make_fixture.py` writes it.
//!
//! Every forward pass of the fixture README is run on the folder's inputs, chained as the
//! official script chains them (our keypoints feed our generator), and each output is compared
//! with its reference by the maximum absolute difference.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use crate::animate::normalize_kp;
use crate::checkpoint::FommModels;
use crate::config::tpsmm::{TpsmmConfigFile, is_tpsmm_file};
use crate::config::{AnimateParams, FommConfig};
use crate::import::load_tpsmm_checkpoint;
use crate::model::InferenceForm;
use crate::model::Keypoints;
use crate::model::tpsmm::TpsmmModels;
use crate::npy::NpyArray;
use crate::{EngineError, Result};

/// Float32 agreement expected of a faithful port: the two differ only by summation order.
pub const DEFAULT_TOLERANCE: f32 = 1e-4;

/// One compared output.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub name: String,
    pub shape: Vec<usize>,
    pub max_abs_error: f32,
}

impl Comparison {
    /// Within `tolerance`; a NaN error never is.
    pub fn within(&self, tolerance: f32) -> bool {
        self.max_abs_error <= tolerance
    }
}

/// All comparisons of one fixture folder.
#[derive(Debug, Clone)]
pub struct ReferenceReport {
    pub dir: PathBuf,
    pub comparisons: Vec<Comparison>,
    pub tolerance: f32,
}

impl ReferenceReport {
    pub fn worst(&self) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .max_by(|a, b| a.max_abs_error.total_cmp(&b.max_abs_error))
    }

    /// Every output within tolerance (NaN never is).
    pub fn passed(&self) -> bool {
        self.comparisons.iter().all(|c| c.within(self.tolerance))
    }
}

/// The fixture's float arrays, read on demand.
struct Fixture<'a> {
    dir: &'a Path,
    device: &'a Device,
}

impl Fixture<'_> {
    fn array(&self, name: &str) -> Result<NpyArray> {
        NpyArray::read(&self.dir.join(format!("{name}.npy")))
    }

    fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        let array = self.array(name)?;
        if array.shape.len() != D {
            return Err(EngineError::Shape {
                what: format!("{name}.npy (rank {D} expected)"),
                expected: vec![],
                actual: array.shape,
            });
        }
        Ok(Tensor::from_data(TensorData::new(array.data, array.shape), self.device))
    }

    fn compare<const D: usize>(&self, name: &str, ours: Tensor<D>) -> Result<Comparison> {
        let expected = self.array(name)?;
        let shape = ours.dims().to_vec();
        if shape != expected.shape {
            return Err(EngineError::Shape {
                what: format!("{name} (ours vs {name}.npy)"),
                expected: expected.shape,
                actual: shape,
            });
        }
        let ours = ours
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| EngineError::Invalid(format!("{e:?}")))?;
        let max_abs_error = max_abs_error(&ours, &expected.data);
        Ok(Comparison {
            name: name.to_string(),
            shape,
            max_abs_error,
        })
    }
}

/// Runs every reference forward pass of the fixture in `dir` on `device`: a FOMM fixture or a
/// TPSMM one, told apart by its config.
pub fn verify_reference(dir: &Path, device: &Device) -> Result<ReferenceReport> {
    let config_path = dir.join("config.yaml");
    if is_tpsmm_file(&config_path)? {
        return verify_tpsmm_reference(dir, device);
    }
    let config = FommConfig::from_yaml_file(&config_path)?;
    let (models, _) = FommModels::import(&dir.join("checkpoint.pth.tar"), &config, device)?;
    // The form animation runs: on the CPU, the inference form with its fast convolutions.
    verify_with_models(dir, &models.with_inference_form(), &config, device)
}

/// As [`verify_reference`], with models already loaded.
pub fn verify_with_models(
    dir: &Path,
    models: &FommModels,
    config: &FommConfig,
    device: &Device,
) -> Result<ReferenceReport> {
    let fixture = Fixture { dir, device };
    let source = fixture.tensor::<4>("source")?;
    let driving = fixture.tensor::<4>("driving")?;
    let driving_initial = fixture.tensor::<4>("driving_initial")?;
    let [_, c, h, w] = source.dims();
    let [fh, fw, fc] = config.frame_shape;
    if [c, h, w] != [fc, fh, fw] {
        return Err(EngineError::Shape {
            what: "source.npy vs config frame_shape".into(),
            expected: vec![fc, fh, fw],
            actual: vec![c, h, w],
        });
    }

    let mut comparisons = Vec::new();
    let keypoints = |name: &str, image: Tensor<4>, out: &mut Vec<Comparison>| -> Result<Keypoints> {
        let (kp, heatmap) = models.keypoints_with_heatmap(image);
        out.push(fixture.compare(&format!("{name}_value"), kp.value.clone())?);
        if let Some(jacobian) = &kp.jacobian {
            out.push(fixture.compare(&format!("{name}_jacobian"), jacobian.clone())?);
        }
        if name == "kp_source" {
            out.push(fixture.compare("kp_source_heatmap", heatmap)?);
        }
        Ok(kp)
    };
    let kp_source = keypoints("kp_source", source.clone(), &mut comparisons)?;
    let kp_driving = keypoints("kp_driving", driving.clone(), &mut comparisons)?;
    let kp_driving_initial = keypoints("kp_driving_initial", driving_initial, &mut comparisons)?;

    let out = models.generate(&models.encode_source(source.clone()), &kp_driving, &kp_source);
    let deformed = out.deformed(source.clone());
    comparisons.push(fixture.compare("mask", out.mask)?);
    comparisons.push(fixture.compare("sparse_deformed", out.sparse_deformed)?);
    comparisons.push(fixture.compare("deformation", out.deformation)?);
    if let Some(occlusion) = out.occlusion_map {
        comparisons.push(fixture.compare("occlusion_map", occlusion)?);
    }
    comparisons.push(fixture.compare("deformed", deformed)?);
    comparisons.push(fixture.compare("prediction", out.prediction)?);

    // The fixture runs the discriminator of scale 1 on the driving frames.
    if let Some(index) = models.discriminator.scales.iter().position(|&s| s == 1.0) {
        let disc = models.discriminator.discs[index].forward(driving, None);
        for (i, map) in disc.feature_maps.into_iter().enumerate() {
            comparisons.push(fixture.compare(&format!("disc_feature_map_{i}"), map)?);
        }
        comparisons.push(fixture.compare("disc_prediction_map", disc.prediction_map)?);
    }

    // normalize_kp and the animation use batch element 0, as the fixture script does.
    let params = AnimateParams::new()
        .with_adapt_movement_scale(true)
        .with_use_relative_movement(true)
        .with_use_relative_jacobian(true);
    let (s0, d0, i0) = (kp_source.select(0), kp_driving.select(0), kp_driving_initial.select(0));
    let kp_norm = normalize_kp(&s0, &d0, &i0, &params);
    comparisons.push(fixture.compare("kp_norm_value", kp_norm.value.clone())?);
    if let Some(jacobian) = &kp_norm.jacobian {
        comparisons.push(fixture.compare("kp_norm_jacobian", jacobian.clone())?);
    }
    let animated = models.generate(&models.encode_source(source.narrow(0, 0, 1)), &kp_norm, &s0);
    comparisons.push(fixture.compare("animate_prediction", animated.prediction)?);

    Ok(ReferenceReport {
        dir: dir.to_path_buf(),
        comparisons,
        tolerance: DEFAULT_TOLERANCE,
    })
}

/// Runs every forward pass of a TPSMM fixture (`tests/fixtures/tpsmm-small/make_fixture.py`).
pub fn verify_tpsmm_reference(dir: &Path, device: &Device) -> Result<ReferenceReport> {
    let config = TpsmmConfigFile::read(&dir.join("config.yaml"))?.config;
    let mut models = TpsmmModels::new(&config, device);
    load_tpsmm_checkpoint(&dir.join("checkpoint.pth.tar"), &mut models)?;
    let models = models.into_inference_form();
    let fixture = Fixture { dir, device };
    let source = fixture.tensor::<4>("source")?;
    let driving = fixture.tensor::<4>("driving")?;
    let driving_initial = fixture.tensor::<4>("driving_initial")?;
    let mut comparisons = Vec::new();

    let kp_source = models.kp_detector.forward(source.clone());
    let kp_driving = models.kp_detector.forward(driving.clone());
    let kp_driving_initial = models.kp_detector.forward(driving_initial);
    comparisons.push(fixture.compare("kp_source", kp_source.value.clone())?);
    comparisons.push(fixture.compare("kp_driving", kp_driving.value.clone())?);
    comparisons.push(fixture.compare("kp_driving_initial", kp_driving_initial.value.clone())?);
    let bg_param = match &models.bg_predictor {
        Some(bg) => {
            let bg_param = bg.forward(source.clone(), driving.clone());
            comparisons.push(fixture.compare("bg_param", bg_param.clone())?);
            Some(bg_param)
        }
        None => None,
    };

    let dense = &models.dense_motion_network;
    let small = dense.downsample(source.clone());
    let [_, _, h, w] = small.dims();
    comparisons.push(fixture.compare(
        "heatmap_representation",
        dense.heatmap_representations(h, w, &kp_driving, &kp_source),
    )?);
    comparisons.push(fixture.compare(
        "transformations",
        dense.transformations(h, w, &kp_driving, &kp_source, None),
    )?);
    let motion = dense.forward_downsampled(small.clone(), &kp_driving, &kp_source, None, None);
    comparisons.push(fixture.compare("deformed_source", motion.deformed_source.clone())?);
    comparisons.push(fixture.compare("contribution_maps", motion.contribution_maps.clone())?);
    comparisons.push(fixture.compare("deformation", motion.deformation.clone())?);
    for (i, mask) in motion.occlusion_map.iter().enumerate() {
        comparisons.push(fixture.compare(&format!("occlusion_map_{i}"), mask.clone())?);
    }
    let generated = models.inpainting_network.forward(source.clone(), &motion);
    comparisons.push(fixture.compare("deformed", generated.deformed)?);
    comparisons.push(fixture.compare("prediction", generated.prediction)?);
    for (i, map) in generated.warped_encoder_maps.into_iter().enumerate() {
        comparisons.push(fixture.compare(&format!("warped_encoder_map_{i}"), map)?);
    }

    if let Some(bg_param) = &bg_param {
        let transformations = dense.transformations(h, w, &kp_driving, &kp_source, Some(bg_param));
        comparisons.push(fixture.compare("transformations_bg", transformations)?);
        let motion = dense.forward_downsampled(small, &kp_driving, &kp_source, Some(bg_param), None);
        comparisons.push(fixture.compare("deformation_bg", motion.deformation.clone())?);
        comparisons.push(fixture.compare(
            "prediction_bg",
            models.inpainting_network.forward(source.clone(), &motion).prediction,
        )?);
    }

    // demo.py's three modes on batch element 0.
    let (s0, d0, i0) = (kp_source.select(0), kp_driving.select(0), kp_driving_initial.select(0));
    let source0 = source.narrow(0, 0, 1);
    let relative = AnimateParams::new()
        .with_adapt_movement_scale(true)
        .with_use_relative_movement(true)
        .with_use_relative_jacobian(false);
    let kp_relative = normalize_kp(&s0, &d0, &i0, &relative);
    comparisons.push(fixture.compare("kp_norm_relative", kp_relative.value.clone())?);
    comparisons.push(fixture.compare("animate_standard", models.animate(source0.clone(), &s0, &d0).prediction)?);
    comparisons.push(fixture.compare(
        "animate_relative",
        models.animate(source0.clone(), &s0, &kp_relative).prediction,
    )?);
    if let Some(avd) = &models.avd_network {
        let kp_avd = avd.forward(&s0, &d0);
        comparisons.push(fixture.compare("kp_norm_avd", kp_avd.value.clone())?);
        comparisons.push(fixture.compare("animate_avd", models.animate(source0, &s0, &kp_avd).prediction)?);
    }
    Ok(ReferenceReport {
        dir: dir.to_path_buf(),
        comparisons,
        tolerance: DEFAULT_TOLERANCE,
    })
}

/// The largest |ours - expected| over paired values; NaN if any of ours is not finite or any
/// difference is NaN (`f32::max` would drop a NaN and call garbage a match).
pub fn max_abs_error(ours: &[f32], expected: &[f32]) -> f32 {
    ours.iter()
        .zip(expected)
        .map(|(a, b)| if a.is_finite() { (a - b).abs() } else { f32::NAN })
        .fold(0.0f32, worse)
}

/// The worse of two errors, NaN winning.
pub fn worse(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}
