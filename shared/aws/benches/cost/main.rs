//! The cost per million webhooks on AWS, counted, not estimated:
//! `cargo bench -p terima-aws --bench cost` (starts its own emulator from
//! `.venv`). Prints the table for fresh events and for duplicates at 1 and
//! 1,000 events/s; its last line is
//! `cost per million fresh events: $X.XX`. Exits non-zero above the goals
//! ($5.00 per million fresh events, $3.00 per million duplicates).
//!
//! `TERIMA_COST_EVENTS` sets the events per column (default 100).

#[path = "../../tests/common/mod.rs"]
mod common;
mod meter;
mod model;

fn main() {
    if model::child() {
        return;
    }
    if let Some(code) = model::with_own_emulator() {
        std::process::exit(code);
    }
    let events = std::env::var("TERIMA_COST_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let (fresh, duplicate) = model::run(events);
    if fresh > model::GOAL_FRESH || duplicate > model::GOAL_DUPLICATE {
        eprintln!(
            "over the goals: ${fresh:.2} per million fresh events (goal ${:.2}), ${duplicate:.2} per million duplicates (goal ${:.2})",
            model::GOAL_FRESH,
            model::GOAL_DUPLICATE
        );
        std::process::exit(1);
    }
}
