//! Prints what the code emits and reads, as JSON, for the template checks:
//! every metric (name, unit, the dimension sets it is published under,
//! straight from [`Metric::ALL`]) and every provider (its name, its
//! configuration infix, and the variables its schemes read, with the
//! `..._ID` variant of each secrets variable that a deployment sets to a
//! Secrets Manager secret). scripts/check_metrics.py and
//! scripts/check_template.py compare template.yaml against this output, so
//! the catalogue comes from the code itself, not from reading its source.
//!
//!     cargo run -q -p terima-service --example catalogue

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::json;
use terima_core::Provider;
use terima_service::metrics::{Metric, NAMESPACE};

fn main() {
    let metrics: Vec<_> = Metric::ALL
        .iter()
        .map(|m| json!({"name": m.name(), "unit": m.unit(), "dimension_sets": m.dimension_sets()}))
        .collect();
    let providers: Vec<_> = Provider::ALL
        .iter()
        .map(|p| {
            // Every variable the schemes ask for, with every optional one
            // answered so that every branch is taken.
            let asked = RefCell::new(BTreeSet::new());
            let record = |name: &str| {
                asked.borrow_mut().insert(name.to_owned());
                // A value every variable takes: a number of seconds, or a
                // header name.
                Some(
                    if name.ends_with("_SECS") {
                        "1"
                    } else {
                        "x-set"
                    }
                    .to_owned(),
                )
            };
            let schemes = p.spec().schemes(&record).unwrap_or_default();
            let mut variables = asked.into_inner();
            variables.insert(format!("TERIMA_{}_VERIFY", p.env_infix()));
            for scheme in schemes {
                variables.insert(format!("{}_ID", scheme.secrets_var));
                variables.insert(scheme.secrets_var);
            }
            json!({
                "name": p.name(),
                "title": p.spec().title(),
                "env_infix": p.env_infix(),
                "variables": variables,
            })
        })
        .collect();
    println!(
        "{}",
        json!({"namespace": NAMESPACE, "metrics": metrics, "providers": providers})
    );
}
