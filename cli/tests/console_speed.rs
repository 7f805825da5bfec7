//! The suite's short run of the console's speed bench (`benches/console`):
//! 20,000 events instead of 100,000, in a debug build, the same goal for the
//! first page's median. The full run: `cargo bench -p terima --bench console`.

#[path = "../benches/console/speed.rs"]
mod speed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_page_is_quick_with_many_events_stored() {
    let timings = speed::run(20_000, 50).await;
    for timing in &timings {
        timing.print();
    }
    let first = timings.last().expect("the first page's timings");
    assert!(
        first.percentile(0.5) < speed::GOAL,
        "the first page's median is {:?}, over {:?}",
        first.percentile(0.5),
        speed::GOAL
    );
}
