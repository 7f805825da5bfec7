//! The suite's short run of the cost model (`benches/cost`): 10 events per
//! column instead of 100, the same goals. The full run:
//! `cargo bench -p terima-aws --bench cost`.

mod common;
#[path = "../benches/cost/meter.rs"]
mod meter;
#[path = "../benches/cost/model.rs"]
mod model;

fn main() {
    if model::child() {
        return;
    }
    if let Some(code) = model::with_own_emulator() {
        assert_eq!(code, 0, "the cost model's short run failed");
        return;
    }
    let (fresh, duplicate) = model::run(10);
    assert!(
        fresh <= model::GOAL_FRESH,
        "${fresh:.2} per million fresh events, over the goal of ${:.2}",
        model::GOAL_FRESH
    );
    assert!(
        duplicate <= model::GOAL_DUPLICATE,
        "${duplicate:.2} per million duplicates, over the goal of ${:.2}",
        model::GOAL_DUPLICATE
    );
}
