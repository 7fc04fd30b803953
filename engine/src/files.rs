//! Writing files so that a crash or a kill never leaves half of one: every file the engine writes
//! goes through [`write_atomic_with`] (or [`write_atomic`] for bytes). The content is written to
//! a hidden sibling, synced, then renamed over the target, so readers see the old file or the
//! new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{EngineError, Result};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |temp| {
        let mut file = std::fs::File::create(temp).map_err(|e| EngineError::io(temp, e))?;
        file.write_all(bytes).map_err(|e| EngineError::io(temp, e))
    })
}

/// Lets `write` fill a temporary sibling of `path` (same folder, same extension, so encoders that
/// go by the name still work), syncs it and renames it to `path`. On failure the temporary file is
/// removed, `path` is untouched, and the error names `path` (an I/O error on the temporary file
/// says "cannot write").
pub fn write_atomic_with<T>(path: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let temp = temporary_sibling(path);
    let written = write(&temp).and_then(|value| sync_file(&temp).map(|()| value));
    match written {
        Ok(value) => {
            std::fs::rename(&temp, path).map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                EngineError::Write {
                    path: path.to_path_buf(),
                    source: e,
                }
            })?;
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            Ok(value)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&temp);
            Err(error.about_target(&temp, path))
        }
    }
}

/// Writes `image` (RGB, grey, ...) as a PNG, atomically.
pub fn write_png<P>(path: &Path, image: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    write_atomic_with(path, |temp| {
        image
            .save_with_format(temp, image::ImageFormat::Png)
            .map_err(|e| EngineError::media(path, format!("cannot write ({e})")))
    })
}

/// `dir/.tmp-PID-name`: hidden, unique to this process, and ending as `name` does.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{TEMPORARY_PREFIX}{}-{name}", std::process::id()))
}

/// What [`temporary_sibling`] names start with, for cleaning up after a crash.
pub const TEMPORARY_PREFIX: &str = ".tmp-";

/// Flushes a file's content to disk.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| EngineError::io(path, e))
}

/// Makes a rename durable; not every platform can open a directory, so failures are ignored.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_dir;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_leftover() {
        let dir = temp_dir("atomic");
        let path = dir.join("table.csv");
        write_atomic(&path, b"old").expect("first write");
        let failed = write_atomic_with(&path, |temp| {
            std::fs::write(temp, b"half").map_err(|e| EngineError::io(temp, e))?;
            Err::<(), _>(EngineError::Invalid("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["table.csv"]);
        write_atomic(&path, b"new").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        assert!(temporary_sibling(&path).to_string_lossy().ends_with("table.csv"));
    }

    #[test]
    fn a_failed_write_names_the_file_asked_for_not_the_temporary_one() {
        let dir = temp_dir("atomic-error");
        // A folder that does not exist: creating the temporary file fails.
        let path = dir.join("missing").join("out.mp4");
        let message = write_atomic(&path, b"x").expect_err("no folder").to_string();
        assert!(message.starts_with("cannot write "), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(!message.contains(TEMPORARY_PREFIX), "{message}");

        // An encoder's own message about the temporary file is rewritten too.
        let path = dir.join("clip.gif");
        let message = write_atomic_with(&path, |temp| {
            Err::<(), _>(EngineError::media(
                temp,
                format!("encoder failed on {}", temp.display()),
            ))
        })
        .expect_err("fails")
        .to_string();
        assert_eq!(message, format!("{0}: encoder failed on {0}", path.display()));
    }
}
