//! Prints every metric the code emits, as JSON: its name, unit and the
//! dimension sets it is published under, straight from [`Metric::ALL`], and
//! the values of the `provider` dimension. scripts/check_metrics.py compares
//! the alarms and the dashboard in template.yaml against this output, so the
//! catalogue comes from the code itself, not from reading its source.
//!
//!     cargo run -q -p terima-service --example metric_catalogue

use serde_json::json;
use terima_core::Provider;
use terima_service::metrics::{Metric, NAMESPACE};

fn main() {
    let metrics: Vec<_> = Metric::ALL
        .iter()
        .map(|m| json!({"name": m.name(), "unit": m.unit(), "dimension_sets": m.dimension_sets()}))
        .collect();
    let providers: Vec<_> = Provider::ALL.iter().map(|p| p.name()).collect();
    println!(
        "{}",
        json!({"namespace": NAMESPACE, "metrics": metrics, "providers": providers})
    );
}
