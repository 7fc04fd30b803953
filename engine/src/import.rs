//! Import of official FOMM checkpoints (`*.pth.tar`, as `Logger.save_cpk` writes them:
//! `kp_detector`, `generator`, `discriminator` state dicts, `epoch`, optimizer states).
//!
//! The engine's modules carry FOMM's parameter names, so tensors load by key; the few places
//! where Rust names differ are remapped here. Anything that does not fit the config is an
//! error that names the key: a missing tensor, an unexpected one, a wrong shape.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::Module;
use burn::store::{ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, PytorchStore, SafetensorsStore};
use burn::tensor::Device;
use pytorch_reader::PytorchReader;

use crate::faces::{FaceDetector, ONet, PNet, RNet};
use crate::model::tpsmm::TpsmmModels;
use crate::model::tpsmm::avd_network::Mlp;
use crate::model::vgg19::{FEATURE_INDICES, Vgg19};
use crate::model::{KpDetector, MultiScaleDiscriminator, OcclusionAwareGenerator};
use crate::{EngineError, Result};

/// Which parts an import found. The discriminator is optional: animation does not need it,
/// and some released files leave it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    pub discriminator: bool,
    /// `epoch` is not read; optimizer states are ignored on purpose.
    pub tensors: usize,
}

/// Loads an official checkpoint into existing networks (their shapes come from the config); the
/// discriminator only if the file has one.
pub fn load_fomm_checkpoint(
    path: &Path,
    kp_detector: &mut KpDetector,
    generator: &mut OcclusionAwareGenerator,
    discriminator: &mut MultiScaleDiscriminator,
) -> Result<ImportReport> {
    // One pass over the pickle to check the container and list what it holds.
    let keys = checkpoint_keys(path)?;
    require_parts(path, &keys, &["kp_detector", "generator"], "FOMM")?;
    let has_part = |part: &str| has_part(&keys, part);
    let mut tensors = 0;
    tensors += load_part(path, "kp_detector", kp_detector, KeyRemapper::new())?;
    let generator_keys = KeyRemapper::new()
        .add_pattern(r"^final\.", "final_conv.")
        .and_then(|r| r.add_pattern(r"^bottleneck\.r(\d+)\.", "bottleneck.$1."))
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    tensors += load_part(path, "generator", generator, generator_keys)?;
    let has_discriminator = has_part("discriminator");
    if has_discriminator {
        let remap =
            discriminator_remapper(&keys, discriminator).map_err(|message| EngineError::checkpoint(path, message))?;
        tensors += load_part(path, "discriminator", discriminator, remap)?;
    }
    Ok(ImportReport {
        discriminator: has_discriminator,
        tensors,
    })
}

/// Loads torchvision's VGG19 weights (`vgg19-dcbb9e9d.pth`, or the same state dict as
/// `.safetensors`) for the perceptual loss. Only `features.0` … `features.28` are used; the
/// classifier and the convolutions after conv5_1 are ignored.
pub fn load_vgg19(path: &Path, device: &Device) -> Result<Vgg19> {
    let metadata = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if !metadata.is_file() {
        return Err(EngineError::checkpoint(path, "is not a file"));
    }
    let mut remap = KeyRemapper::new();
    for (index, feature) in FEATURE_INDICES.iter().enumerate() {
        remap = remap
            .add_pattern(format!(r"^features\.{feature}\."), format!("convs.{index}."))
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
    }
    let mut vgg = Vgg19::new(device);
    let safetensors = path.extension().and_then(|e| e.to_str()) == Some("safetensors");
    let result = if safetensors {
        let mut store = SafetensorsStore::from_file(path)
            .remap(remap)
            .allow_partial(true)
            .validate(false);
        vgg.load_from(&mut store).map_err(|e| one_line(&e.to_string()))
    } else {
        let mut store = PytorchStore::from_file(path)
            .remap(remap)
            .allow_partial(true)
            .validate(false);
        vgg.load_from(&mut store).map_err(|e| one_line(&e.to_string()))
    }
    .map_err(|e| EngineError::checkpoint(path, format!("not readable VGG19 weights ({e})")))?;
    if let Some(error) = result.errors.first() {
        return Err(EngineError::checkpoint(
            path,
            match error {
                ApplyError::ShapeMismatch { path, expected, found } => format!(
                    "{} has shape {:?}, VGG19 needs {:?}; is this torchvision's vgg19?",
                    torchvision_name(path),
                    found.as_slice(),
                    expected.as_slice()
                ),
                other => one_line(&other.to_string()),
            },
        ));
    }
    if let Some((missing, _)) = result.missing.first() {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "{} is missing ({} of VGG19's 26 tensors missing); expected torchvision's vgg19 state dict",
                torchvision_name(missing),
                result.missing.len()
            ),
        ));
    }
    Ok(vgg.no_grad().frozen())
}

/// facenet-pytorch's MTCNN weights (`pnet.pt`, `rnet.pt`, `onet.pt` in `dir`, the state dicts
/// its wheel ships) as a face detector. Its PReLU slopes are `weight`; burn's are `alpha`.
pub fn load_face_detector(dir: &Path, device: &Device) -> Result<FaceDetector> {
    let mut pnet = PNet::new(device);
    let mut rnet = RNet::new(device);
    let mut onet = ONet::new(device);
    load_state_dict(&dir.join("pnet.pt"), "pnet", &mut pnet)?;
    load_state_dict(&dir.join("rnet.pt"), "rnet", &mut rnet)?;
    load_state_dict(&dir.join("onet.pt"), "onet", &mut onet)?;
    Ok(FaceDetector::new(
        pnet.no_grad(),
        rnet.no_grad(),
        onet.no_grad(),
        device,
    ))
}

/// Which parts a TPSMM import found beside the three the demo loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TpsmmImportReport {
    /// `bg_predictor`: training saves it from `bg_start` on.
    pub bg_predictor: bool,
    /// `avd_network`: present after TPSMM's separate AVD training.
    pub avd_network: bool,
    /// `epoch` is not read; optimizer states are ignored on purpose.
    pub tensors: usize,
}

/// Loads an official TPSMM checkpoint (`inpainting_network`, `dense_motion_network`,
/// `kp_detector`, and `bg_predictor`, `avd_network` where present, as TPSMM's `Logger.save_cpk`
/// writes them) into networks built from the config. A network the file lacks is dropped from
/// `models` (the report says which), so nothing runs with weights it did not load.
pub fn load_tpsmm_checkpoint(path: &Path, models: &mut TpsmmModels) -> Result<TpsmmImportReport> {
    let keys = checkpoint_keys(path)?;
    require_parts(
        path,
        &keys,
        &["kp_detector", "dense_motion_network", "inpainting_network"],
        "TPSMM",
    )?;
    let has_part = |part: &str| has_part(&keys, part);
    let invalid = |e: String| EngineError::Invalid(e);
    let resnet = || {
        KeyRemapper::new()
            .add_pattern(r"\.downsample\.0\.", ".downsample.conv.")
            .and_then(|r| r.add_pattern(r"\.downsample\.1\.", ".downsample.norm."))
            .map_err(|e| e.to_string())
    };
    let mut tensors = 0;
    tensors += load_part(path, "kp_detector", &mut models.kp_detector, resnet().map_err(invalid)?)?;
    tensors += load_part(
        path,
        "dense_motion_network",
        &mut models.dense_motion_network,
        KeyRemapper::new(),
    )?;
    let inpainting = KeyRemapper::new()
        .add_pattern(r"^final\.", "final_conv.")
        .map_err(|e| invalid(e.to_string()))?;
    tensors += load_part(path, "inpainting_network", &mut models.inpainting_network, inpainting)?;
    let bg_predictor = has_part("bg_predictor") && models.bg_predictor.is_some();
    match models.bg_predictor.as_mut() {
        Some(bg) if bg_predictor => tensors += load_part(path, "bg_predictor", bg, resnet().map_err(invalid)?)?,
        _ => models.bg_predictor = None,
    }
    let avd_network = has_part("avd_network") && models.avd_network.is_some();
    match models.avd_network.as_mut() {
        Some(avd) if avd_network => {
            let mut remap = KeyRemapper::new();
            for (index, list, k) in Mlp::sequential_indices(avd.id_encoder.norms.len()) {
                remap = remap
                    .add_pattern(
                        format!(r"^(id_encoder|pose_encoder|decoder)\.{index}\."),
                        format!("$1.{list}.{k}."),
                    )
                    .map_err(|e| invalid(e.to_string()))?;
            }
            tensors += load_part(path, "avd_network", avd, remap)?;
        }
        _ => models.avd_network = None,
    }
    Ok(TpsmmImportReport {
        bg_predictor,
        avd_network,
        tensors,
    })
}

/// Whether the checkpoint holds a state dict named `part`.
fn has_part(keys: &BTreeSet<String>, part: &str) -> bool {
    keys.iter().any(|k| k.starts_with(&format!("{part}.")))
}

/// An error naming the first of `parts` the checkpoint lacks, and what it holds instead.
fn require_parts(path: &Path, keys: &BTreeSet<String>, parts: &[&str], family: &str) -> Result<()> {
    let Some(part) = parts.iter().find(|part| !has_part(keys, part)) else {
        return Ok(());
    };
    let found: BTreeSet<&str> = keys.iter().filter_map(|k| k.split('.').next()).collect();
    Err(EngineError::checkpoint(
        path,
        format!("no '{part}' state dict (top-level entries with tensors: {found:?}); is this a {family} checkpoint?"),
    ))
}

/// The keys of a checkpoint's tensors, after checking that it is a readable PyTorch file.
fn checkpoint_keys(path: &Path) -> Result<BTreeSet<String>> {
    let metadata = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if !metadata.is_file() {
        return Err(EngineError::checkpoint(path, "is not a file"));
    }
    let reader = PytorchReader::new(path).map_err(|e| {
        EngineError::checkpoint(
            path,
            format!("not a readable PyTorch checkpoint ({})", one_line(&e.to_string())),
        )
    })?;
    Ok(reader.keys().into_iter().collect())
}

/// A whole file that is one network's state dict.
fn load_state_dict<M: ModuleSnapshot>(path: &Path, name: &str, module: &mut M) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    if !metadata.is_file() {
        return Err(EngineError::checkpoint(path, "is not a file"));
    }
    let remap = KeyRemapper::new()
        .add_pattern(r"^(prelu\d+)\.weight$", "$1.alpha")
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    let mut store = PytorchStore::from_file(path)
        .remap(remap)
        .allow_partial(true)
        .validate(false);
    let result = module.load_from(&mut store).map_err(|e| {
        EngineError::checkpoint(
            path,
            format!("not readable {name} weights ({})", one_line(&e.to_string())),
        )
    })?;
    check_result(&result, name).map_err(|message| EngineError::checkpoint(path, message))
}

/// `convs.3.weight` → `features.7.weight`, for messages.
fn torchvision_name(path: &str) -> String {
    let mut parts = path.splitn(3, '.');
    match (
        parts.next(),
        parts.next().and_then(|i| i.parse::<usize>().ok()),
        parts.next(),
    ) {
        (Some("convs"), Some(index), Some(rest)) if index < FEATURE_INDICES.len() => {
            format!("features.{}.{rest}", FEATURE_INDICES[index])
        }
        _ => path.to_string(),
    }
}

/// FOMM keys discriminators by scale (`discs.1`, `discs.0-5`); ours are in `scales` order.
/// Spectral norm's `weight_orig` is our `weight`.
fn discriminator_remapper(keys: &BTreeSet<String>, disc: &MultiScaleDiscriminator) -> Result<KeyRemapper, String> {
    let in_file: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("discriminator.discs."))
        .filter_map(|k| k.split('.').next())
        .collect();
    let mut remap = KeyRemapper::new();
    for (index, scale) in disc.scales.iter().enumerate() {
        let key = in_file
            .iter()
            .find(|k| k.replace('-', ".").parse::<f64>().ok() == Some(*scale))
            .ok_or_else(|| format!("no discriminator for scale {scale} (the checkpoint has scales {in_file:?})"))?;
        remap = remap
            .add_pattern(format!(r"^discs\.{}\.", regex_escape(key)), format!("discs.{index}."))
            .map_err(|e| e.to_string())?;
    }
    if in_file.len() != disc.scales.len() {
        return Err(format!(
            "the checkpoint has discriminators for scales {in_file:?}, the config for {:?}",
            disc.scales
        ));
    }
    remap
        .add_pattern(r"\.weight_orig$", ".weight")
        .map_err(|e| e.to_string())
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// Loads one state dict; returns how many tensors were applied.
fn load_part<M: ModuleSnapshot>(path: &Path, part: &str, module: &mut M, remap: KeyRemapper) -> Result<usize> {
    let mut store = PytorchStore::from_file(path)
        .with_top_level_key(part)
        .remap(remap)
        .allow_partial(true)
        .validate(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| EngineError::checkpoint(path, format!("{part}: {}", one_line(&e.to_string()))))?;
    check_result(&result, part).map_err(|message| EngineError::checkpoint(path, message))?;
    Ok(result.applied.len())
}

/// Every parameter of the module must come from the file, and every tensor of the file must
/// have a place, except FOMM's bookkeeping buffers.
fn check_result(result: &ApplyResult, part: &str) -> std::result::Result<(), String> {
    if let Some(error) = result.errors.first() {
        return Err(match error {
            ApplyError::ShapeMismatch { path, expected, found } => format!(
                "{part}.{} has shape {:?} in the checkpoint but the config builds {:?}",
                torch_name(path),
                found.as_slice(),
                expected.as_slice()
            ),
            other => format!("{part}: {}", one_line(&other.to_string())),
        });
    }
    // The anti-aliasing kernel is derived from the config; older files may not store it.
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(path, _)| path.as_str())
        .filter(|path| !path.ends_with("down.weight"))
        .collect();
    if let Some(first) = missing.first() {
        return Err(format!(
            "{part}.{} is missing from the checkpoint ({} missing in all; does the config match the checkpoint?)",
            torch_name(first),
            missing.len()
        ));
    }
    let unused: Vec<&String> = result
        .unused
        .iter()
        .filter(|key| !key.ends_with("num_batches_tracked"))
        .collect();
    if let Some(first) = unused.first() {
        return Err(format!(
            "{part}.{} in the checkpoint has no place in the model ({} such keys; does the config match the checkpoint?)",
            torch_name(first),
            unused.len()
        ));
    }
    Ok(())
}

/// Our parameter path written as FOMM names it, for messages (the generator's bottleneck is
/// `r0, r1, ...` and its last conv `final`).
fn torch_name(path: &str) -> String {
    let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
    for i in 1..parts.len() {
        if parts[i - 1] == "bottleneck" && parts[i].chars().all(|c| c.is_ascii_digit()) {
            parts[i] = format!("r{}", parts[i]);
        }
    }
    parts
        .iter()
        .map(|p| if p == "final_conv" { "final" } else { p.as_str() })
        .collect::<Vec<_>>()
        .join(".")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
