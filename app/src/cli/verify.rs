//! `prioritycut verify-reference DIR`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use prioritycut_engine::reference::verify_reference;

use super::DeviceArgs;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Folder with config.yaml, checkpoint.pth.tar and the reference .npy tensors.
    pub dir: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let selected = args.device.open()?;
    let report = verify_reference(&args.dir, &selected.device)?;
    println!("reference: {}", report.dir.display());
    for c in &report.comparisons {
        let verdict = if c.max_abs_error <= report.tolerance {
            "ok"
        } else {
            "FAIL"
        };
        println!(
            "  {:<28} {:<18} max |ours - reference| = {:.3e}  {verdict}",
            c.name,
            format!("{:?}", c.shape),
            c.max_abs_error
        );
    }
    let worst = report
        .worst()
        .map(|c| format!("{} ({:.3e})", c.name, c.max_abs_error))
        .unwrap_or_default();
    if report.passed() {
        println!(
            "PASS: {} outputs within {:.0e}; worst {worst}",
            report.comparisons.len(),
            report.tolerance
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let failed = report
            .comparisons
            .iter()
            .filter(|c| !c.within(report.tolerance))
            .count();
        println!(
            "FAIL: {failed} of {} outputs exceed {:.0e}; worst {worst}",
            report.comparisons.len(),
            report.tolerance
        );
        Ok(ExitCode::FAILURE)
    }
}
