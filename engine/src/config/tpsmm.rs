//! TPSMM's YAML layout (`config/vox-256.yaml` of its repository) read into [`TpsmmConfig`]:
//! `dataset_params.frame_shape` and `model_params` (`common_params`, `generator_params`,
//! `dense_motion_params`, `avd_network_params`). Every key is optional (TPSMM's `vox-256.yaml`
//! where the file is silent); `train_params` is TPSMM's training, not read yet, and listed with
//! the other keys the engine leaves unread.

use std::path::Path;

use serde_yaml_ng::Value;

use super::DatasetParams;
use crate::model::tpsmm::TpsmmConfig;
use crate::{EngineError, Result};

/// A TPSMM config as read from its file, with the keys the engine left unread.
#[derive(Debug, Clone)]
pub struct TpsmmConfigFile {
    pub config: TpsmmConfig,
    /// `dataset_params` (FOMM's layout) other than the frame shape.
    pub dataset: DatasetParams,
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
    let (config, dataset, ignored_keys) = super::yaml::parse_tpsmm(text)?;
    config.validate()?;
    Ok(TpsmmConfigFile {
        config,
        dataset,
        ignored_keys,
    })
}

/// `config` as a TPSMM YAML file (the frame shape and every model key).
pub fn to_yaml(config: &TpsmmConfig) -> String {
    super::yaml::write_tpsmm(config)
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
    fn a_written_config_reads_back_the_same() {
        let mut config = TpsmmConfig::new().with_common();
        config.num_tps = 20;
        config.frame_shape = [384, 384, 3];
        config.resnet_width = 8;
        let config = config.with_common();
        let file = parse(&to_yaml(&config)).expect("reads back");
        assert_eq!(file.config.to_string(), config.to_string());
        assert!(file.ignored_keys.is_empty(), "{:?}", file.ignored_keys);
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
        let train = VOX.to_string() + "train_params:\n  num_epochs: 100\n";
        assert_eq!(
            parse(&train).expect("parses").ignored_keys,
            vec!["train_params".to_string()]
        );
        let wrong = VOX.replace("num_tps: 10", "num_tps: ten");
        assert!(parse(&wrong).expect_err("a word is not a count").contains("num_tps"));
        let odd = VOX.replace("num_down_blocks: 3", "num_down_blocks: 2");
        assert!(parse(&odd).expect_err("multi_mask needs 3").contains("num_down_blocks"));
    }
}
