//! CloudWatch metrics in embedded metric format: one JSON line on stdout per
//! data point, turned into metrics by CloudWatch Logs with no API call.

use std::io::Write;

use terima_core::{Clock, Provider, SystemClock};

pub const NAMESPACE: &str = "Terima";

/// Where metric points go. Lambda functions print EMF; the embedded default
/// and tests stay quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metrics {
    Emf,
    Silent,
}

impl Metrics {
    /// Counts one occurrence of `name`, with the provider and optional extra
    /// dimension (for example the rejection reason).
    pub fn count(self, provider: Provider, name: &str, dimension: Option<(&str, &str)>) {
        if self == Metrics::Silent {
            return;
        }
        let line = emf_line(SystemClock.now_millis(), provider, name, dimension);
        // A metric that cannot be written is not worth failing a request for.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

fn emf_line(
    timestamp: i64,
    provider: Provider,
    name: &str,
    dimension: Option<(&str, &str)>,
) -> String {
    let mut dims = vec!["provider"];
    let mut root = serde_json::Map::new();
    root.insert("provider".into(), provider.name().into());
    if let Some((key, value)) = dimension {
        dims.push(key);
        root.insert(key.into(), value.into());
    }
    root.insert(name.into(), 1.into());
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dims],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        }),
    );
    serde_json::Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_carry_the_metric_and_its_dimensions() {
        let line = emf_line(
            1_700_000_000_000,
            Provider::Oms,
            "rejected",
            Some(("reason", "no_secret_matched")),
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["rejected"], 1);
        assert_eq!(v["reason"], "no_secret_matched");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][1],
            "reason"
        );
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Terima");
    }
}
