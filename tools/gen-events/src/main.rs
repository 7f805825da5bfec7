//! `cargo run -p gen-events` rewrites `events/` from the fixtures and the
//! test-only secrets; `cargo run -p gen-events -- --check` only reports files
//! that differ, are missing or are extra, and exits non-zero if any.

use std::process::ExitCode;

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("gen-events: unknown argument {other:?}\nusage: gen-events [--check]");
            return ExitCode::from(2);
        }
    };
    let root = gen_events::workspace_root();
    let generated = match gen_events::generate(&root) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("gen-events: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check {
        match gen_events::drift(&root, &generated) {
            Ok(drift) if drift.is_empty() => {
                println!("events/ is up to date ({} files)", generated.len());
                ExitCode::SUCCESS
            }
            Ok(drift) => {
                for d in &drift {
                    println!("{d}");
                }
                println!(
                    "{} file(s) out of date: run `cargo run -p gen-events`",
                    drift.len()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("gen-events: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        match gen_events::write(&root, &generated) {
            Ok(changed) => {
                println!("events/: {} files, {changed} changed", generated.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gen-events: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
