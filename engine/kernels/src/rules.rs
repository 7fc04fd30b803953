//! The crate's rule for `unsafe` (lib.rs, "Unsafe code"), checked over its sources: the lints
//! stop `unsafe` without an `allow`, and this stops an `allow` outside its home.

use std::path::{Path, PathBuf};

/// Where `#[allow(unsafe_code)]` may stand.
const UNSAFE_HOME: &str = "src/cpu/unsafe_simd/";

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Whether a line is an attribute that lets `unsafe` through (`allow` or `expect`, inner or
/// outer); comments and strings that name one are not.
fn lifts_the_denial(line: &str) -> bool {
    let line = line.trim_start();
    (line.starts_with("#[") || line.starts_with("#![")) && line.contains("unsafe_code") && !line.contains("deny")
}

#[test]
fn the_rule_sees_attributes_not_words() {
    assert!(lifts_the_denial("#![allow(unsafe_code)]"));
    assert!(lifts_the_denial("    #[expect(unsafe_code, reason = \"AVX512-BF16\")]"));
    assert!(!lifts_the_denial(
        "//! each allowed by `#[allow(unsafe_code)]` on the module"
    ));
    assert!(!lifts_the_denial("#[deny(unsafe_code)]"));
}

#[test]
fn unsafe_code_stays_in_its_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() > 10, "the crate's sources were found");
    let outside: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(root).ok()?.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(path).ok()?;
            (text.lines().any(lifts_the_denial) && !relative.starts_with(UNSAFE_HOME)).then_some(relative)
        })
        .collect();
    assert!(
        outside.is_empty(),
        "unsafe code allowed outside {UNSAFE_HOME}: {outside:?}"
    );
}
