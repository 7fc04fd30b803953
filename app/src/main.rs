//! `prioritycut`: PriorityCut Studio. Without a subcommand it opens the desktop window.

use std::process::ExitCode;

/// See the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
