//! `prioritycut`: the PriorityCut Studio command line (the desktop window comes with the GUI).

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
