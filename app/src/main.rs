//! `prioritycut`: PriorityCut Studio. Without a subcommand it opens the desktop window.

use std::process::ExitCode;

/// See the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before handing it back to the OS, in ms (its default:
/// 1 s). A training step frees and reallocates gigabytes of activations over several seconds;
/// handed back after 1 s, they come back as fresh pages the kernel must zero (16% of a vox-256
/// step in `perf`, and 12.1 → 8.8 s per step with a minute). Idle memory still goes back after
/// a minute.
const ALLOCATOR_PURGE_DELAY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "60000");

/// mimalloc reads its options from the environment once, before `main`: so the process starts
/// itself again with the option set (same arguments, same PID) unless the user set it. Where
/// that cannot be done, it carries on with the default.
#[cfg(unix)]
fn with_allocator_options() {
    use std::os::unix::process::CommandExt;
    let (name, value) = ALLOCATOR_PURGE_DELAY;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` returns only if it failed.
    let _ = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env(name, value)
        .exec();
}

#[cfg(not(unix))]
fn with_allocator_options() {}

fn main() -> ExitCode {
    with_allocator_options();
    match prioritycut::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(error) => {
            // The chain of causes, each said once: the engine's messages already end with
            // their cause ("cannot read X: No such file").
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
