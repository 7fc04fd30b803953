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
        let columns: Vec<&str> = header.split(',').collect();
        let mut kept = vec![header.clone()];
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut lines = text.lines();
            // A file written with other loss columns (an older version) keeps its values, by name.
            let old: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
            let position: Vec<Option<usize>> = columns.iter().map(|c| old.iter().position(|o| o == c)).collect();
            kept.extend(
                lines
                    .map(|line| line.split(',').collect::<Vec<&str>>())
                    .filter(|values| values.len() == old.len())
                    .filter(|values| values[0].parse::<usize>().is_ok_and(|s| s <= step))
                    .map(|values| {
                        let cell = |p: &Option<usize>| p.map_or("", |p| values[p]);
                        position.iter().map(cell).collect::<Vec<&str>>().join(",")
                    }),
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

    /// A run written before a loss column existed keeps every value under its name on resume.
    #[test]
    fn rows_of_an_older_header_are_kept_by_name() {
        let root = temp_dir("losses-old");
        let run = RunDir::open(&root, true).expect("open");
        let old = "step,epoch,lr,seconds,mixed,skipped,perceptual,l1\n1,0,2e-4,0.1,0,0,3.5e0,5e-1\n2,0,2e-4,0.1,1,0,3e0,4e-1\n";
        std::fs::write(run.losses_path(), old).expect("write");
        drop(LossLog::open(&run, 2).expect("reopen"));
        let text = std::fs::read_to_string(run.losses_path()).expect("csv");
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        assert_eq!(header, loss_header().split(',').collect::<Vec<_>>());
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 2);
        let at = |name: &str| header.iter().position(|h| *h == name).expect("column");
        assert_eq!((rows[1][0], rows[1][4]), ("2", "1"));
        assert_eq!((rows[1][at("perceptual")], rows[1][at("l1")]), ("3e0", "4e-1"));
        assert_eq!(rows[0][at("warp_loss")], "");
    }
}
