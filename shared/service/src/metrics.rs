//! CloudWatch metrics in embedded metric format (EMF): one JSON line on
//! stdout per report, turned into metrics by CloudWatch Logs with no API
//! call. Every metric Terima emits is a [`Metric`]: the template's alarms and
//! dashboard are checked against [`Metric::ALL`], so a name cannot drift.
//!
//! Each metric is published under the dimension set `{provider}` and, when it
//! has a detail (the rejection reason, the failed backend, ...), also under
//! `{provider, <detail>}`: an alarm on all rejections of a provider and a
//! graph split by reason both find their series.

use std::io::Write;

use serde_json::{Map, Value, json};
use terima_core::{Clock, Provider, SystemClock};

pub const NAMESPACE: &str = "Terima";

/// Every metric, with its unit and the name of its detail dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Ack path: a fresh delivery, held for the processor.
    Accepted,
    /// Ack path: a delivery whose event was already processed.
    Duplicate,
    /// Ack path: a delivery whose key was processed with a different body.
    Conflict,
    /// Ack path: Biteship's installation probe.
    Ignored,
    /// Ack path: a verified body that cannot be read, stored raw (`reason`).
    Quarantined,
    /// Ack path: refused with 401, 413 or 400 (`reason`).
    Rejected,
    /// A backend call failed (`backend`); the answer may still be 2xx.
    BackendError,
    /// Ack path: the queue send failed and the event went to the outbox.
    HeldInOutbox,
    /// Ack path: answered 503 because nothing durable holds the event.
    Unavailable,
    /// Ack path: a configured secret other than the first verified the
    /// delivery (`secret_index`), for rotations.
    SecretMatched,
    /// Ack path: which scheme verified the delivery (`scheme`), for a
    /// provider configured with more than one.
    Verified,
    /// Ack path: time from the request to the answer.
    AckMillis,
    /// Processor: the event's work ran and completed.
    Processed,
    /// Processor: a message for work already done; nothing ran.
    DuplicateDelivery,
    /// Processor: took over a lease whose holder died.
    LeaseTakeover,
    /// Processor: a later attempt of an event's work.
    Retried,
    /// Processor: an attempt failed (`reason`); the queue retries it.
    Failed,
    /// Processor: an event that did not move its resource's state.
    StaleUpdateIgnored,
    /// Sweeper: an outbox message sent to the queue.
    OutboxResent,
}

impl Metric {
    pub const ALL: [Metric; 19] = [
        Metric::Accepted,
        Metric::Duplicate,
        Metric::Conflict,
        Metric::Ignored,
        Metric::Quarantined,
        Metric::Rejected,
        Metric::BackendError,
        Metric::HeldInOutbox,
        Metric::Unavailable,
        Metric::SecretMatched,
        Metric::Verified,
        Metric::AckMillis,
        Metric::Processed,
        Metric::DuplicateDelivery,
        Metric::LeaseTakeover,
        Metric::Retried,
        Metric::Failed,
        Metric::StaleUpdateIgnored,
        Metric::OutboxResent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
            Self::Ignored => "ignored",
            Self::Quarantined => "quarantined",
            Self::Rejected => "rejected",
            Self::BackendError => "backend_error",
            Self::HeldInOutbox => "held_in_outbox",
            Self::Unavailable => "unavailable",
            Self::SecretMatched => "secret_matched",
            Self::Verified => "verified",
            Self::AckMillis => "ack_ms",
            Self::Processed => "processed",
            Self::DuplicateDelivery => "duplicate_delivery",
            Self::LeaseTakeover => "lease_takeover",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::StaleUpdateIgnored => "stale_update_ignored",
            Self::OutboxResent => "outbox_resent",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::AckMillis => "Milliseconds",
            _ => "Count",
        }
    }

    /// The dimension that splits this metric further, if any.
    pub fn detail(self) -> Option<&'static str> {
        match self {
            Self::Quarantined | Self::Rejected | Self::Failed => Some("reason"),
            Self::BackendError => Some("backend"),
            Self::SecretMatched => Some("secret_index"),
            Self::Verified => Some("scheme"),
            _ => None,
        }
    }

    /// The dimension sets this metric is published under.
    pub fn dimension_sets(self) -> Vec<Vec<&'static str>> {
        let mut sets = vec![vec!["provider"]];
        if let Some(detail) = self.detail() {
            sets.push(vec!["provider", detail]);
        }
        sets
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One data point: a metric, its value, and its detail dimension's value
/// when the metric has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Point<'a> {
    pub metric: Metric,
    pub value: f64,
    pub detail: Option<&'a str>,
}

impl<'a> Point<'a> {
    pub fn count(metric: Metric) -> Self {
        Self {
            metric,
            value: 1.0,
            detail: None,
        }
    }

    pub fn with_detail(metric: Metric, detail: &'a str) -> Self {
        Self {
            metric,
            value: 1.0,
            detail: Some(detail),
        }
    }

    pub fn value(metric: Metric, value: f64) -> Self {
        Self {
            metric,
            value,
            detail: None,
        }
    }
}

/// Where metric points go. Lambda functions print EMF; the embedded default
/// and tests stay quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metrics {
    Emf,
    Silent,
}

impl Metrics {
    /// Counts one occurrence of `metric`, with its detail if it has one.
    pub fn count(self, provider: Provider, metric: Metric, detail: Option<&str>) {
        self.emit(
            provider,
            &[Point {
                metric,
                value: 1.0,
                detail,
            }],
        );
    }

    /// Reports several points in one line: a request's whole report costs
    /// one log line (CloudWatch Logs bills by the byte).
    pub fn emit(self, provider: Provider, points: &[Point<'_>]) {
        if self == Metrics::Silent || points.is_empty() {
            return;
        }
        let line = emf_line(SystemClock.now_millis(), provider, points);
        // A metric that cannot be written is not worth failing a request for.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// One reported line of gathered counts: each metric with its detail.
type Line = Vec<(Metric, Option<String>)>;

/// Counts gathered over a batch and reported together, one line per
/// provider (or a few, when two details of one dimension differ): a batch of
/// ten records costs one log line, not ten.
#[derive(Debug, Default)]
pub struct Gathered(std::sync::Mutex<Vec<(Provider, Metric, Option<String>)>>);

impl Gathered {
    pub fn count(&self, provider: Provider, metric: Metric, detail: Option<&str>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((
            provider,
            metric,
            detail.map(str::to_owned),
        ));
    }

    /// Reports and forgets what was gathered.
    pub fn flush(&self, metrics: Metrics) {
        if metrics == Metrics::Silent {
            self.take();
            return;
        }
        for (provider, line) in self.take() {
            let points: Vec<Point<'_>> = line
                .iter()
                .map(|(metric, detail)| Point {
                    metric: *metric,
                    value: 1.0,
                    detail: detail.as_deref(),
                })
                .collect();
            metrics.emit(provider, &points);
        }
    }

    /// The lines to report: per provider, each holding at most one value per
    /// detail dimension.
    fn take(&self) -> Vec<(Provider, Line)> {
        let gathered = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        let mut lines: Vec<(Provider, Line)> = Vec::new();
        for (provider, metric, detail) in gathered {
            let fits = |line: &Line| {
                line.iter().all(|(other, other_detail)| {
                    other.detail().is_none()
                        || other.detail() != metric.detail()
                        || *other_detail == detail
                })
            };
            match lines
                .iter_mut()
                .find(|(p, line)| *p == provider && fits(line))
            {
                Some((_, line)) => line.push((metric, detail)),
                None => lines.push((provider, vec![(metric, detail)])),
            }
        }
        lines
    }
}

/// One EMF line. Points of the same metric in one line are summed; a detail
/// dimension appears once per line, so two points whose details differ go in
/// two lines (`emit` callers never do that). Metrics under the same
/// dimension sets share one directive: the line is what CloudWatch Logs
/// bills.
pub fn emf_line(timestamp: i64, provider: Provider, points: &[Point<'_>]) -> String {
    let mut root = Map::new();
    root.insert("provider".into(), provider.name().into());
    let mut directives: Vec<(Vec<Vec<&str>>, Vec<Value>)> = Vec::new();
    for point in points {
        let name = point.metric.name();
        let seen = root.contains_key(name);
        let total = root.get(name).and_then(Value::as_f64).unwrap_or(0.0) + point.value;
        root.insert(name.into(), json_number(total));
        if let (Some(key), Some(value)) = (point.metric.detail(), point.detail) {
            root.insert(key.into(), value.into());
        }
        if seen {
            continue;
        }
        let sets = match point.detail {
            Some(_) => point.metric.dimension_sets(),
            None => vec![vec!["provider"]],
        };
        let metric = json!({"Name": name, "Unit": point.metric.unit()});
        match directives.iter_mut().find(|(s, _)| *s == sets) {
            Some((_, metrics)) => metrics.push(metric),
            None => directives.push((sets, vec![metric])),
        }
    }
    let directives: Vec<Value> = directives
        .into_iter()
        .map(|(sets, metrics)| {
            json!({
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": metrics,
            })
        })
        .collect();
    root.insert(
        "_aws".into(),
        json!({ "Timestamp": timestamp, "CloudWatchMetrics": directives }),
    );
    Value::Object(root).to_string()
}

fn json_number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::from(value as i64)
    } else {
        Value::from(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_carry_the_metric_under_both_dimension_sets() {
        let line = emf_line(
            1_700_000_000_000,
            Provider::Oms,
            &[Point::with_detail(Metric::Rejected, "no_secret_matched")],
        );
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["rejected"], 1);
        assert_eq!(v["reason"], "no_secret_matched");
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Terima");
        assert_eq!(
            directive["Dimensions"],
            json!([["provider"], ["provider", "reason"]])
        );
    }

    #[test]
    fn one_line_carries_a_whole_report() {
        let line = emf_line(
            0,
            Provider::Biteship,
            &[
                Point::count(Metric::Accepted),
                Point::value(Metric::AckMillis, 12.5),
            ],
        );
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["accepted"], 1);
        assert_eq!(v["ack_ms"], 12.5);
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().expect("array");
        assert_eq!(directives.len(), 1, "both share the provider dimension");
        assert_eq!(directives[0]["Metrics"][1]["Unit"], "Milliseconds");
    }

    #[test]
    fn gathered_counts_share_a_line_per_provider_unless_details_differ() {
        let gathered = Gathered::default();
        gathered.count(Provider::Oms, Metric::Processed, None);
        gathered.count(Provider::Biteship, Metric::Processed, None);
        gathered.count(Provider::Oms, Metric::Processed, None);
        gathered.count(Provider::Oms, Metric::Failed, Some("backend"));
        gathered.count(Provider::Oms, Metric::Failed, Some("deadline"));
        let lines = gathered.take();
        let summary: Vec<(Provider, usize)> = lines.iter().map(|(p, l)| (*p, l.len())).collect();
        assert_eq!(
            summary,
            [
                (Provider::Oms, 3),
                (Provider::Biteship, 1),
                (Provider::Oms, 1)
            ]
        );
        assert!(gathered.take().is_empty(), "taking forgets");
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_name(metric.name()), Some(metric));
        }
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
    }
}
