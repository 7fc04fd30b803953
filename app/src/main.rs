//! `prioritycut`: PriorityCut Studio. Without a subcommand it opens the desktop window.

use std::process::ExitCode;

fn main() -> ExitCode {
    match prioritycut::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
