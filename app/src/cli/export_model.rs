//! `prioritycut export-model --checkpoint C --out DIR`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use prioritycut_engine::burn::tensor::Device;

use super::ModelArgs;

#[derive(Debug, Args)]
pub struct ExportModelArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder to write model.bpk and config.yaml into.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ExportModelArgs) -> anyhow::Result<ExitCode> {
    let model = args.model.open(&Device::flex())?;
    super::report_ignored_keys(&model.ignored_config_keys);
    let bytes = model.export_for_animation(&args.out)?;
    println!(
        "wrote {} ({:.1} MB: what animation needs) and config.yaml",
        args.out.join("model.bpk").display(),
        bytes as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
