//! `losses.csv` of a run folder: one row per step, every loss, the learning rate and whether the
//! step mixed; rows after a resumed checkpoint are dropped so that a resumed run's file reads as
//! if it had never stopped.

use std::io::Write;
use std::path::PathBuf;

use super::events::{LOSS_NAMES, StepReport};
use crate::checkpoint::RunDir;
use crate::files::write_atomic;
use crate::{EngineError, Result};

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
    /// Opens `losses.csv` for appending; rows after `step` (written after the checkpoint being
    /// resumed, or half-written by a killed process) are dropped first.
    pub fn open(run: &RunDir, step: usize) -> Result<Self> {
        let path = run.losses_path();
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
        write_atomic(&path, (kept.join("\n") + "\n").as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        Ok(Self { file, path })
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_dir;

    #[test]
    fn losses_after_the_resumed_step_and_torn_rows_are_dropped() {
        let root = temp_dir("losses");
        let run = RunDir::open(&root, true).expect("open");
        let mut log = LossLog::open(&run, 0).expect("log");
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
        drop(LossLog::open(&run, 4).expect("reopen"));
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
