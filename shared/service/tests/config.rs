//! Processor settings that would silently defeat its guarantees are refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use terima_core::verify::FixedClock;
use terima_service::memory::MemoryStore;
use terima_service::{ConfigError, Metrics, Processor, ProcessorConfig, Record};

fn load(pairs: &[(&str, &str)]) -> Result<ProcessorConfig, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    ProcessorConfig::load(&move |name: &str| map.get(name).cloned())
}

#[test]
fn a_lease_that_lapses_at_once_is_refused() {
    for bad in ["0", "-30"] {
        let err = load(&[("TERIMA_LEASE_SECS", bad)]).expect_err(bad);
        assert!(
            matches!(err, ConfigError::Invalid { ref var, .. } if var == "TERIMA_LEASE_SECS"),
            "{err}"
        );
    }
    let ok = load(&[("TERIMA_LEASE_SECS", "120")]).expect("a positive lease");
    assert_eq!(ok.lease_millis, 120_000);
}

#[test]
fn no_concurrency_is_refused() {
    let err = load(&[("TERIMA_CONCURRENCY", "0")]).expect_err("zero");
    assert!(
        matches!(err, ConfigError::Invalid { ref var, .. } if var == "TERIMA_CONCURRENCY"),
        "{err}"
    );
}

#[tokio::test]
async fn a_batch_built_with_zero_concurrency_still_runs() {
    let processor = Processor::new(
        ProcessorConfig {
            lease_millis: 90_000,
            concurrency: 0,
        },
        MemoryStore::new(),
        MemoryStore::new(),
        (),
        Arc::new(FixedClock(1_706_000_000)),
        Metrics::Silent,
    );
    let records = vec![Record {
        message_id: "m-1".to_owned(),
        body: "not a message".to_owned(),
    }];
    let failed = tokio::time::timeout(Duration::from_secs(5), processor.process_batch(records))
        .await
        .expect("the batch does not hang");
    assert_eq!(failed, vec!["m-1".to_owned()]);
}
