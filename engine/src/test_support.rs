//! Helpers for the engine's unit tests.

use std::path::PathBuf;

/// A fresh, empty folder under the system temp dir, unique to this test process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prioritycut-engine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub use prioritycut_kernels::test_support::assert_close;
