//! The console's first page with many events stored:
//! `cargo bench -p terima --bench console`. Prints p50/p99/max per request
//! and for the first page (the HTML, then the first page of events, as a
//! browser asks for them); exits non-zero when the first page's p99 is over
//! the goal (100 ms).
//!
//! `TERIMA_CONSOLE_EVENTS` (default 100000) and `TERIMA_CONSOLE_REQUESTS`
//! (default 500) change the run.

mod speed;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let events = env_or("TERIMA_CONSOLE_EVENTS", 100_000);
    let requests = env_or("TERIMA_CONSOLE_REQUESTS", 500);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let timings = runtime.block_on(speed::run(events, requests));
    println!("{requests} sequential requests each, {events} events stored:");
    for timing in &timings {
        timing.print();
    }
    let first = timings.last().expect("the first page's timings");
    if first.percentile(0.99) > speed::GOAL {
        eprintln!("the first page's p99 is over the goal of {:?}", speed::GOAL);
        std::process::exit(1);
    }
}
