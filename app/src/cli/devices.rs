//! `prioritycut devices`: the GPU adapters wgpu finds on this machine, and the device
//! `--backend auto` chooses.

use std::process::ExitCode;

use clap::Args;
use prioritycut_engine::backend::{self, BackendChoice};

#[derive(Debug, Args)]
pub struct DevicesArgs {}

pub fn run(_: DevicesArgs) -> anyhow::Result<ExitCode> {
    let adapters = backend::list_adapters();
    if adapters.is_empty() {
        println!("no wgpu adapter: no GPU, no Vulkan loader (libvulkan.so.1), or no Vulkan driver (ICD) for the GPU");
    }
    for (index, adapter) in adapters.iter().enumerate() {
        println!("adapter {index}: {} (--backend wgpu:{index})", adapter.describe());
    }
    println!("--backend auto: {}", backend::select(BackendChoice::Auto)?);
    Ok(ExitCode::SUCCESS)
}
