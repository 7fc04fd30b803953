//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prioritycut_engine::backend::{self, BackendChoice};
use prioritycut_engine::burn::tensor::Device;
pub use prioritycut_engine::kernels::test_support::TempDir;

/// `tests/fixtures/NAME`: golden outputs of the official FOMM code (see tests/fixtures/README.md).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The three reference folders: 64×64/10 keypoints, 96×96/5, 128×128/15, of different widths.
pub const REFERENCE_DIRS: [&str; 3] = ["fomm-small", "fomm-96-kp5", "fomm-128-kp15"];

pub fn cpu() -> Device {
    Device::flex()
}

/// A fresh, empty folder under the system temp dir, removed when dropped.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new("prioritycut-test", name)
}

/// A dataset of synthetic figures at 64×64 in `dir/figures` (FOMM's layout: train/ and test/,
/// one folder of PNG frames per video), made from `seed`; returns its folder.
pub fn figures(dir: &Path, train_videos: usize, test_videos: usize, frames: usize, seed: u64) -> PathBuf {
    use prioritycut_engine::data::synthetic::{SyntheticConfig, generate};
    let data = dir.join("figures");
    let config = SyntheticConfig {
        size: 64,
        train_videos,
        test_videos,
        frames,
        seed,
    };
    generate(&data, &config, |_, _| {}).expect("synthetic dataset");
    data
}

/// wgpu when an adapter exists. With `PRIORITYCUT_REQUIRE_WGPU=1` (CI, which installs Mesa's
/// software Vulkan driver) a missing adapter fails the test instead of skipping it.
pub fn wgpu_device() -> Option<Device> {
    match backend::select(BackendChoice::Wgpu) {
        Ok(selected) => {
            eprintln!("wgpu test device: {}", selected.description);
            // Read off CubeCL's runtime name: a burn upgrade that renames it must not go unseen.
            assert!(
                selected.description.contains(" kernels)"),
                "the description names the kernels' language: {}",
                selected.description
            );
            Some(selected.device)
        }
        Err(error) => {
            assert!(
                std::env::var("PRIORITYCUT_REQUIRE_WGPU").as_deref() != Ok("1"),
                "PRIORITYCUT_REQUIRE_WGPU=1 but wgpu is unavailable: {error}"
            );
            eprintln!("skipping the wgpu run: {error}");
            None
        }
    }
}

/// Copies a torch zip checkpoint entry by entry, letting `edit(name, bytes)` change entries.
pub fn rewrite_torch_zip(from: &Path, to: &Path, mut edit: impl FnMut(&str, &mut Vec<u8>)) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).expect("open")).expect("zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(to).expect("create"));
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("entry");
        let name = entry.name().expect("utf-8 entry name").to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        edit(&name, &mut data);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        writer.start_file(name, options).expect("start");
        writer.write_all(&data).expect("write");
    }
    writer.finish().expect("finish");
}

/// Runs the `prioritycut` binary to completion.
pub fn prioritycut(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prioritycut"))
        .args(args)
        .output()
        .expect("run prioritycut")
}

/// For a test that needs an environment variable a test cannot set in its own process (no
/// unsafe code): where `variable` is unset, runs the test `name` again, alone, in a child process
/// that has it set to `value`, asserts that it passed there and returns `false` (the caller
/// returns); in that child, returns `true` (the caller goes on with the test).
pub fn in_child_with_env(name: &str, variable: &str, value: &str) -> bool {
    if std::env::var_os(variable).is_some() {
        return true;
    }
    let child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(variable, value)
        .output()
        .expect("the test in a child process");
    let all = text(&child);
    assert!(child.status.success() && all.contains("1 passed"), "{all}");
    false
}

/// stdout and stderr together.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
