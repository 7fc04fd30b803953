//! TPSMM's YAML layout (`config/vox-256.yaml` of its repository) read into [`TpsmmConfig`]:
//! `dataset_params.frame_shape` and `model_params` (`common_params`, `generator_params`,
//! `dense_motion_params`, `avd_network_params`). Every key is optional (TPSMM's `vox-256.yaml`
//! where the file is silent); `train_params` is TPSMM's training, not read yet, and listed with
//! the other keys the engine leaves unread.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::model::tpsmm::TpsmmConfig;
use crate::{EngineError, Result};

/// A TPSMM config as read from its file, with the keys the engine left unread.
#[derive(Debug, Clone)]
pub struct TpsmmConfigFile {
    pub config: TpsmmConfig,
    pub ignored_keys: Vec<String>,
}

impl TpsmmConfigFile {
    /// Reads a TPSMM YAML config file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        parse(&text).map_err(|message| EngineError::Config {
            path: path.to_path_buf(),
            message,
        })
    }
}

/// Whether the YAML config file at `path` is TPSMM's ([`is_tpsmm`]).
pub fn is_tpsmm_file(path: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let root: Value = serde_yaml_ng::from_str(&text).map_err(|e| EngineError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(is_tpsmm(&root))
}

/// Keys only TPSMM's own scripts read.
const SCRIPT_SECTIONS: [&str; 4] = [
    "dataset_params",
    "train_avd_params",
    "visualizer_params",
    "reconstruction_params",
];

/// The keys of a section this reader takes, as (key, setter).
type Setter = fn(&mut TpsmmConfig, &Value) -> Option<()>;

fn usize_of(value: &Value) -> Option<usize> {
    value.as_u64().and_then(|v| usize::try_from(v).ok())
}

const COMMON: &[(&str, Setter)] = &[
    ("num_tps", |c, v| Some(c.num_tps = usize_of(v)?)),
    ("num_channels", |c, v| Some(c.num_channels = usize_of(v)?)),
    ("bg", |c, v| Some(c.bg = v.as_bool()?)),
    ("multi_mask", |c, v| Some(c.multi_mask = v.as_bool()?)),
];

const GENERATOR: &[(&str, Setter)] = &[
    ("block_expansion", |c, v| {
        Some(c.inpainting.block_expansion = usize_of(v)?)
    }),
    ("max_features", |c, v| Some(c.inpainting.max_features = usize_of(v)?)),
    ("num_down_blocks", |c, v| {
        Some(c.inpainting.num_down_blocks = usize_of(v)?)
    }),
];

const DENSE_MOTION: &[(&str, Setter)] = &[
    ("block_expansion", |c, v| {
        Some(c.dense_motion.block_expansion = usize_of(v)?)
    }),
    ("max_features", |c, v| Some(c.dense_motion.max_features = usize_of(v)?)),
    ("num_blocks", |c, v| Some(c.dense_motion.num_blocks = usize_of(v)?)),
    ("scale_factor", |c, v| Some(c.dense_motion.scale_factor = v.as_f64()?)),
    ("kp_variance", |c, v| Some(c.dense_motion.kp_variance = v.as_f64()?)),
];

const AVD: &[(&str, Setter)] = &[
    ("id_bottle_size", |c, v| Some(c.id_bottle_size = usize_of(v)?)),
    ("pose_bottle_size", |c, v| Some(c.pose_bottle_size = usize_of(v)?)),
];

const MODEL_OWN: &[(&str, Setter)] = &[
    ("resnet_width", |c, v| Some(c.resnet_width = usize_of(v)?)),
    ("avd_hidden", |c, v| {
        c.avd_hidden = v.as_sequence()?.iter().map(usize_of).collect::<Option<Vec<_>>>()?;
        Some(())
    }),
];

/// Whether a parsed YAML file is TPSMM's (its `common_params` name `num_tps`) rather than
/// FOMM's (`num_kp`).
pub fn is_tpsmm(root: &Value) -> bool {
    root.get("model_params")
        .and_then(|m| m.get("common_params"))
        .and_then(|c| c.get("num_tps"))
        .is_some()
}

/// Reads TPSMM's YAML text: its `vox-256.yaml` where the file is silent, then validated.
pub fn parse(text: &str) -> std::result::Result<TpsmmConfigFile, String> {
    let root: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let empty = Mapping::new();
    let root_map = root.as_mapping().unwrap_or(&empty);
    let mut config = TpsmmConfig::new();
    let mut ignored = Vec::new();
    let section = |value: Option<&Value>| value.and_then(Value::as_mapping).cloned().unwrap_or_default();

    if let Some(shape) = root.get("dataset_params").and_then(|d| d.get("frame_shape"))
        && !shape.is_null()
    {
        let dims: Option<Vec<usize>> = shape.as_sequence().map(|s| s.iter().filter_map(usize_of).collect());
        config.frame_shape = match dims.as_deref() {
            Some([h, w]) => [*h, *w, 3],
            Some([h, w, c]) => [*h, *w, *c],
            _ => return Err(format!("dataset_params.frame_shape must be [h, w, c], got {shape:?}")),
        };
    }
    for key in root_map.keys().filter_map(Value::as_str) {
        if key == "train_params" || (key != "model_params" && !SCRIPT_SECTIONS.contains(&key)) {
            ignored.push(key.to_string());
        }
    }
    let model = section(root.get("model_params"));
    for (key, value) in &model {
        let key = key.as_str().unwrap_or_default();
        let (setters, prefix): (&[(&str, Setter)], _) = match key {
            "common_params" => (COMMON, "model_params.common_params"),
            "generator_params" => (GENERATOR, "model_params.generator_params"),
            "dense_motion_params" => (DENSE_MOTION, "model_params.dense_motion_params"),
            "avd_network_params" => (AVD, "model_params.avd_network_params"),
            _ => {
                let known = MODEL_OWN.iter().find(|(name, _)| *name == key);
                match known {
                    Some((_, set)) => set(&mut config, value)
                        .ok_or_else(|| format!("model_params.{key} has the wrong type: {value:?}"))?,
                    None => ignored.push(format!("model_params.{key}")),
                }
                continue;
            }
        };
        for (name, value) in section(Some(value)) {
            let name = name.as_str().unwrap_or_default();
            match setters.iter().find(|(known, _)| *known == name) {
                Some((_, set)) => {
                    set(&mut config, &value).ok_or_else(|| format!("{prefix}.{name} has the wrong type: {value:?}"))?
                }
                None => ignored.push(format!("{prefix}.{name}")),
            }
        }
    }
    let config = config.with_common();
    config.validate()?;
    Ok(TpsmmConfigFile {
        config,
        ignored_keys: ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPSMM's own `config/vox-256.yaml`, its model part.
    const VOX: &str = "
dataset_params:
  root_dir: ../vox
  frame_shape: null
model_params:
  common_params:
    num_tps: 10
    num_channels: 3
    bg: True
    multi_mask: True
  generator_params:
    block_expansion: 64
    max_features: 512
    num_down_blocks: 3
  dense_motion_params:
    block_expansion: 64
    max_features: 1024
    num_blocks: 5
    scale_factor: 0.25
  avd_network_params:
    id_bottle_size: 128
    pose_bottle_size: 128
";

    #[test]
    fn vox_256_is_the_default() {
        let file = parse(VOX).expect("vox-256 parses");
        let default = TpsmmConfig::new().with_common();
        assert_eq!(file.config.to_string(), default.to_string());
        assert!(file.ignored_keys.is_empty(), "{:?}", file.ignored_keys);
        assert!(is_tpsmm(&serde_yaml_ng::from_str(VOX).expect("yaml")));
    }

    #[test]
    fn other_datasets_and_unknown_keys() {
        // ted-384: 384² frames, 20 transformations, scale 0.25 as ever.
        let ted = VOX
            .replace("num_tps: 10", "num_tps: 20")
            .replace("frame_shape: null", "frame_shape: [384, 384, 3]")
            + "  kp_detector_params:\n    typo: 1\n";
        let file = parse(&ted).expect("ted parses");
        assert_eq!(file.config.frame_shape, [384, 384, 3]);
        assert_eq!(file.config.dense_motion.num_tps, 20);
        assert_eq!(file.ignored_keys, vec!["model_params.kp_detector_params".to_string()]);
        let wrong = VOX.replace("num_tps: 10", "num_tps: ten");
        assert!(parse(&wrong).expect_err("a word is not a count").contains("num_tps"));
        let odd = VOX.replace("num_down_blocks: 3", "num_down_blocks: 2");
        assert!(parse(&odd).expect_err("multi_mask needs 3").contains("num_down_blocks"));
    }
}
