//! A run folder and its checkpoints.
//!
//! ```text
//! RUN/config.yaml                      the config the run trains with (variant included)
//! RUN/losses.csv                       one row per step
//! RUN/snapshots/step-00000100.png      the batch, its maps and keypoints, every few seconds
//! RUN/checkpoints/step-00000100/       one complete checkpoint:
//!     model.bpk                          networks (burnpack; `prioritycut animate` loads it)
//!     adam-*.safetensors                 optimizer states
//!     state.json                         step, seed, variant, perceptual loss, backend
//! ```
//!
//! A checkpoint is written into a hidden temporary folder, every file synced, then renamed into
//! place: a crash leaves either the previous checkpoints or the new one, never half of one.
//!
//! The folder's layout lives here, below training, so that opening a model for animation
//! ([`crate::family::LoadedModel::open`]) can read a run without knowing how it was trained.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Variant;
use crate::files::{TEMPORARY_PREFIX, sync_dir, sync_file, write_atomic, write_png};
use crate::render::Snapshot;
use crate::render::sheet::snapshot_sheet;
use crate::{EngineError, Result};

pub const MODEL_FILE: &str = "model.bpk";
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.yaml";
pub const LOSSES_FILE: &str = "losses.csv";
const CHECKPOINTS: &str = "checkpoints";
const SNAPSHOTS: &str = "snapshots";
const PREFIX: &str = "step-";

/// `state.json`: what a checkpoint needs besides tensors to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// Steps completed.
    pub step: usize,
    pub epoch: usize,
    /// The run's seed: with `step` and `generation` it fixes every later random draw.
    pub seed: u64,
    pub generation: u64,
    pub variant: Variant,
    /// The perceptual loss in use (VGG19 or the pixel fallback), as described to the user.
    pub perceptual: String,
    pub backend: String,
    pub frame_shape: [usize; 3],
    pub rollbacks: usize,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// A run folder; created if missing. `fresh` refuses a folder that already holds a run, so
    /// that starting a new run never overwrites one.
    pub fn open(root: &Path, fresh: bool) -> Result<Self> {
        std::fs::create_dir_all(root.join(CHECKPOINTS)).map_err(|e| EngineError::io(root, e))?;
        let run = Self {
            root: root.to_path_buf(),
        };
        if fresh && (run.latest().is_some() || run.root.join(LOSSES_FILE).exists()) {
            return Err(EngineError::Invalid(format!(
                "{} already holds a training run: pass --resume to continue it, or choose another folder",
                root.display()
            )));
        }
        run.remove_partial();
        Ok(run)
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS)
    }

    /// Leftovers of checkpoints whose writing was interrupted.
    fn remove_partial(&self) {
        if let Ok(entries) = std::fs::read_dir(self.checkpoints_dir()) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(TEMPORARY_PREFIX) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Complete checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<(usize, PathBuf)> {
        let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(self.checkpoints_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix(PREFIX)?.parse().ok()?;
                let path = entry.path();
                (path.join(STATE_FILE).is_file() && path.join(MODEL_FILE).is_file()).then_some((step, path))
            })
            .collect();
        found.sort();
        found
    }

    pub fn latest(&self) -> Option<(usize, PathBuf)> {
        self.checkpoints().pop()
    }

    /// Writes a checkpoint for `step`: `fill(dir)` writes the files into a temporary folder,
    /// which is synced and renamed to `checkpoints/step-NNNNNNNN`. Keeps the newest `keep`.
    pub fn write_checkpoint(
        &self,
        state: &CheckpointState,
        keep: usize,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let dir = self.checkpoints_dir();
        let final_path = dir.join(format!("{PREFIX}{:08}", state.step));
        let temp = crate::files::temporary_sibling(&final_path);
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).map_err(|e| EngineError::io(&temp, e))?;
        fill(&temp)?;
        let json = serde_json::to_string_pretty(state).map_err(|e| EngineError::Invalid(e.to_string()))?;
        std::fs::write(temp.join(STATE_FILE), json.as_bytes()).map_err(|e| EngineError::io(&temp, e))?;
        for entry in std::fs::read_dir(&temp)
            .map_err(|e| EngineError::io(&temp, e))?
            .flatten()
        {
            sync_file(&entry.path())?;
        }
        if final_path.exists() {
            // The same step again (a rollback replay): the new one replaces it.
            std::fs::remove_dir_all(&final_path).map_err(|e| EngineError::io(&final_path, e))?;
        }
        std::fs::rename(&temp, &final_path).map_err(|e| EngineError::io(&final_path, e))?;
        sync_dir(&dir);
        let all = self.checkpoints();
        for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(final_path)
    }

    pub fn read_state(checkpoint: &Path) -> Result<CheckpointState> {
        let path = checkpoint.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| EngineError::checkpoint(&path, format!("unreadable state ({e})")))
    }

    /// Writes the run's config, atomically.
    pub fn write_config(&self, yaml: &str) -> Result<()> {
        write_atomic(&self.config_path(), yaml.as_bytes())
    }

    /// The config a training run in `root` trains with: resuming, the run's own (a run never
    /// changes its config midway), else `given`. The flag says that the run's own replaced a
    /// `given` one, for a note to the user.
    pub fn config_to_train_with(root: &Path, resume: bool, given: Option<&Path>) -> Result<(PathBuf, bool)> {
        let own = root.join(CONFIG_FILE);
        if resume && own.is_file() {
            return Ok((own, given.is_some_and(|g| g != root.join(CONFIG_FILE))));
        }
        match given {
            Some(path) => Ok((path.to_path_buf(), false)),
            None => Err(EngineError::Invalid(
                "a config is needed to start a run (--config, or resume a run that has one)".into(),
            )),
        }
    }

    /// Writes `snapshots/step-NNNNNNNN.png`, the snapshot's labelled sheet, atomically.
    pub fn write_snapshot(&self, snapshot: &Snapshot) -> Result<PathBuf> {
        let dir = self.root.join(SNAPSHOTS);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let path = dir.join(format!("{PREFIX}{:08}.png", snapshot.step));
        write_png(&path, &snapshot_sheet(snapshot))?;
        Ok(path)
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn losses_path(&self) -> PathBuf {
        self.root.join(LOSSES_FILE)
    }
}

/// What a `--checkpoint` path names: a weights file, a checkpoint folder of a run, a run folder
/// (its latest checkpoint), or a folder written by `export-model`. Returns the weights file and, inside a run, the run's config.
pub fn resolve_checkpoint(path: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let metadata = std::fs::metadata(path).map_err(|e| EngineError::io(path, e))?;
    // A run's checkpoint folder has the config two levels up; an exported model (`export-model`)
    // keeps it beside the weights.
    let run_config = |checkpoint_dir: &Path| {
        let beside = checkpoint_dir.join(CONFIG_FILE);
        if beside.is_file() {
            return Some(beside);
        }
        checkpoint_dir
            .parent()
            .and_then(Path::parent)
            .map(|run| run.join(CONFIG_FILE))
            .filter(|c| c.is_file())
    };
    if metadata.is_file() {
        let config = path.parent().and_then(run_config);
        return Ok((path.to_path_buf(), config));
    }
    if path.join(MODEL_FILE).is_file() {
        return Ok((path.join(MODEL_FILE), run_config(path)));
    }
    let run = RunDir {
        root: path.to_path_buf(),
    };
    match run.latest() {
        Some((_, dir)) => Ok((dir.join(MODEL_FILE), Some(run.config_path()).filter(|c| c.is_file()))),
        None => Err(EngineError::checkpoint(
            path,
            "holds no checkpoint (expected a .pth.tar/.bpk file, a run folder or one of its checkpoints)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_dir;

    fn state(step: usize) -> CheckpointState {
        CheckpointState {
            format: 1,
            step,
            epoch: 0,
            seed: 1,
            generation: 0,
            variant: Variant::Unet,
            perceptual: "pixels".into(),
            backend: "flex".into(),
            frame_shape: [64, 64, 3],
            rollbacks: 0,
        }
    }

    #[test]
    fn checkpoints_are_complete_or_absent_and_pruned() {
        let root = temp_dir("ckpt");
        let run = RunDir::open(&root, true).expect("open");
        for step in [0, 5, 10, 15] {
            run.write_checkpoint(&state(step), 2, |dir| {
                std::fs::write(dir.join(MODEL_FILE), b"model").map_err(|e| EngineError::io(dir, e))
            })
            .expect("write");
        }
        let steps: Vec<usize> = run.checkpoints().iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, vec![10, 15]);
        assert_eq!(
            RunDir::read_state(&run.latest().expect("latest").1).expect("state"),
            state(15)
        );
        // A write that fails halfway leaves no checkpoint behind.
        let failed = run.write_checkpoint(&state(20), 2, |_| Err(EngineError::Invalid("disk full".into())));
        assert!(failed.is_err());
        assert_eq!(run.latest().map(|(s, _)| s), Some(15));
        // Reopened (as after a crash), the leftover is cleaned and the run is refused as fresh.
        assert!(RunDir::open(&root, true).is_err());
        let again = RunDir::open(&root, false).expect("resume");
        let leftovers = std::fs::read_dir(again.checkpoints_dir())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn resuming_trains_with_the_runs_own_config() {
        let root = temp_dir("run-config");
        let given = root.join("other.yaml");
        let run = RunDir::open(&root.join("run"), true).expect("open");
        // Nothing to resume yet: the given config, and without one a clear error.
        let (path, replaced) = RunDir::config_to_train_with(&run.root, true, Some(&given)).expect("given");
        assert_eq!((path, replaced), (given.clone(), false));
        let error = RunDir::config_to_train_with(&run.root, false, None).expect_err("no config");
        assert!(error.to_string().contains("config is needed"), "{error}");
        run.write_config("model_params: {}\n").expect("config");
        let (path, replaced) = RunDir::config_to_train_with(&run.root, true, Some(&given)).expect("own");
        assert_eq!((path, replaced), (run.config_path(), true));
        let (path, replaced) = RunDir::config_to_train_with(&run.root, true, None).expect("own");
        assert_eq!((path, replaced), (run.config_path(), false));
        // A fresh start takes the config it is given.
        let (path, _) = RunDir::config_to_train_with(&run.root, false, Some(&given)).expect("fresh");
        assert_eq!(path, given);
    }
}
