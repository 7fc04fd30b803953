//! A run folder and its checkpoints.
//!
//! ```text
//! RUN/config.yaml                      the config the run trains with (variant included)
//! RUN/losses.csv                       one row per step
//! RUN/checkpoints/step-00000100/       one complete checkpoint:
//!     model.bpk                          networks (burnpack; `prioritycut animate` loads it)
//!     adam-*.safetensors                 optimizer states
//!     state.json                         step, seed, variant, perceptual loss, backend
//! ```
//!
//! A checkpoint is written into a hidden temporary folder, every file synced, then renamed into
//! place: a crash leaves either the previous checkpoints or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::Variant;
use super::events::{LOSS_NAMES, StepReport};
use crate::{EngineError, Result};

pub const MODEL_FILE: &str = "model.bpk";
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.yaml";
pub const LOSSES_FILE: &str = "losses.csv";
const CHECKPOINTS: &str = "checkpoints";
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
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
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
        let temp = dir.join(format!(".tmp-{PREFIX}{:08}-{}", state.step, std::process::id()));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).map_err(|e| EngineError::io(&temp, e))?;
        fill(&temp)?;
        let json = serde_json::to_string_pretty(state).map_err(|e| EngineError::Invalid(e.to_string()))?;
        write_synced(&temp.join(STATE_FILE), json.as_bytes())?;
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
        let path = self.root.join(CONFIG_FILE);
        let temp = self.root.join(format!(".{CONFIG_FILE}.tmp-{}", std::process::id()));
        write_synced(&temp, yaml.as_bytes())?;
        std::fs::rename(&temp, &path).map_err(|e| EngineError::io(&path, e))
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn losses_path(&self) -> PathBuf {
        self.root.join(LOSSES_FILE)
    }

    /// Opens `losses.csv` for appending; rows after `step` (written after the checkpoint being
    /// resumed, or half-written by a killed process) are dropped first.
    pub fn open_losses(&self, step: usize) -> Result<LossLog> {
        let path = self.losses_path();
        let header = loss_header();
        let mut kept = vec![header.clone()];
        if let Ok(text) = std::fs::read_to_string(&path) {
            kept.extend(
                text.lines()
                    .skip(1)
                    .filter(|line| line.split(',').count() == header.split(',').count())
                    .filter(|line| {
                        line.split(',')
                            .next()
                            .and_then(|s| s.parse::<usize>().ok())
                            .is_some_and(|s| s <= step)
                    })
                    .map(str::to_string),
            );
        }
        let temp = self.root.join(format!(".{LOSSES_FILE}.tmp-{}", std::process::id()));
        write_synced(&temp, (kept.join("\n") + "\n").as_bytes())?;
        std::fs::rename(&temp, &path).map_err(|e| EngineError::io(&path, e))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        Ok(LossLog { file, path })
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

/// [`resolve_checkpoint`] with its config read: `config` when given, else the run's own (an
/// official checkpoint outside a run needs one).
pub fn resolve_checkpoint_and_config(
    path: &Path,
    config: Option<&Path>,
) -> Result<(PathBuf, crate::config::FommConfig)> {
    let (weights, run_config) = resolve_checkpoint(path)?;
    let config_path = config.map(Path::to_path_buf).or(run_config).ok_or_else(|| {
        EngineError::Invalid(format!(
            "{} needs its YAML config (--config): it is not inside a training run",
            path.display()
        ))
    })?;
    Ok((weights, crate::config::FommConfig::from_yaml_file(&config_path)?))
}

fn loss_header() -> String {
    let mut header = String::from("step,epoch,lr,seconds,mixed,skipped");
    for name in LOSS_NAMES {
        header.push(',');
        header.push_str(name);
    }
    header
}

/// `losses.csv`, one row per step.
#[derive(Debug)]
pub struct LossLog {
    file: std::fs::File,
    path: PathBuf,
}

impl LossLog {
    pub fn append(&mut self, report: &StepReport) -> Result<()> {
        let mut row = format!(
            "{},{},{:e},{:.4},{},{}",
            report.step,
            report.epoch,
            report.lr,
            report.seconds,
            u8::from(report.mixed),
            u8::from(report.skipped)
        );
        for name in LOSS_NAMES {
            row.push(',');
            if let Some(value) = report.loss(name) {
                row.push_str(&format!("{value:.6e}"));
            }
        }
        row.push('\n');
        self.file
            .write_all(row.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| EngineError::io(&self.path, e))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| EngineError::io(path, e))
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| EngineError::io(path, e))
}

/// Makes a rename durable; not every platform can open a directory, so failures are ignored.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
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
    fn losses_after_the_resumed_step_and_torn_rows_are_dropped() {
        let root = temp_dir("losses");
        let run = RunDir::open(&root, true).expect("open");
        let mut log = run.open_losses(0).expect("log");
        for step in 1..=6 {
            log.append(&StepReport {
                step,
                epoch: 0,
                lr: 2e-4,
                losses: vec![("perceptual", 1.0 / step as f64), ("l1", 0.5)],
                mixed: false,
                skipped: false,
                seconds: 0.1,
            })
            .expect("append");
        }
        drop(log);
        let mut text = std::fs::read_to_string(run.losses_path()).expect("csv");
        text.push_str("7,0,2e-4"); // a row cut short by kill -9
        std::fs::write(run.losses_path(), text).expect("write");
        drop(run.open_losses(4).expect("reopen"));
        let text = std::fs::read_to_string(run.losses_path()).expect("csv");
        let steps: Vec<&str> = text.lines().skip(1).filter_map(|l| l.split(',').next()).collect();
        assert_eq!(steps, vec!["1", "2", "3", "4"]);
        assert!(
            text.lines()
                .next()
                .is_some_and(|h| h.contains("perceptual") && h.contains("consistency"))
        );
    }
}
