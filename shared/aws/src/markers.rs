//! Work records kept inside the resource's state item.
//!
//! Most events change exactly their own resource. Their work record then
//! rides in the same write as the new state, as one entry of the state
//! item's `wm` map (meaning digest → what the record needs), instead of an
//! item of its own: a write unit less per event. The map only takes what
//! keeps the state item within one write unit (1,024 bytes, at most eight
//! works); past that, and for a state too large to leave room, each work
//! gets an ordinary work item (`W#…`) as before. The readers merge both.
//!
//! An entry: `<received ms>|<processed ms>|<flags>|<event type>|<carried
//! status>|<work key>`. The work key comes last and is escaped (`KeyBuilder`
//! escapes `|`), so it may hold anything.

use aws_sdk_dynamodb::types::AttributeValue;
use terima_core::{Provider, Resource, Timestamp};
use terima_service::store::{Effect, WorkKey, WorkRecord, WorkStatus, event_id};

use crate::dynamo::Item;

/// The state item's map of recorded works.
pub(crate) const ATTRIBUTE: &str = "wm";

/// The map entry of a processed work record.
pub(crate) fn entry(record: &WorkRecord) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        record.received_at.unix_millis(),
        record.processed_at.map_or(0, Timestamp::unix_millis),
        if record.replay { "r" } else { "" },
        record.event_type,
        record.carried_status.as_deref().unwrap_or(""),
        record.key.work_key,
    )
}

/// The work record an entry stands for.
pub(crate) fn record(
    provider: Provider,
    resource: &Resource,
    digest: &str,
    entry: &str,
) -> Option<WorkRecord> {
    let mut parts = entry.splitn(6, '|');
    let received_at = Timestamp::from_unix_millis(parts.next()?.parse().ok()?);
    let processed = parts.next()?.parse::<i64>().ok()?;
    let replay = parts.next()? == "r";
    let event_type = parts.next()?.to_owned();
    let carried_status = Some(parts.next()?)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let work_key = parts.next()?.to_owned();
    let key = WorkKey {
        provider,
        resource: resource.clone(),
        work_key: work_key.clone(),
        digest: digest.to_owned(),
    };
    Some(WorkRecord {
        event_id: event_id(received_at, &key),
        key,
        event_type,
        dedup_key: work_key,
        status: WorkStatus::Processed,
        attempts: 1,
        lease_owner: None,
        lease_until: None,
        error: None,
        received_at,
        occurred_at: None,
        processed_at: (processed > 0).then(|| Timestamp::from_unix_millis(processed)),
        carried_status,
        effect: Some(Effect::Applied),
        replay,
    })
}

/// Every work record a state item holds.
pub(crate) fn records(provider: Provider, resource: &Resource, item: &Item) -> Vec<WorkRecord> {
    let Some(Ok(map)) = item.get(ATTRIBUTE).map(AttributeValue::as_m) else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(digest, value)| record(provider, resource, digest, value.as_s().ok()?))
        .collect()
}

/// Adds the records of `extra` to `works`, a processed record winning over
/// another of the same meaning (a failure recorded before the retry that
/// succeeded).
pub(crate) fn merge(works: &mut Vec<WorkRecord>, extra: Vec<WorkRecord>) {
    for record in extra {
        match works.iter_mut().find(|w| w.key == record.key) {
            Some(existing) if existing.status != WorkStatus::Processed => *existing = record,
            Some(_) => {}
            None => works.push(record),
        }
    }
}

/// How many works a state item may hold with this one added and still be
/// written with one write unit (1,024 bytes), given its key and its
/// deflated state; `None` when not even this one fits.
pub(crate) fn room(pk_bytes: usize, state_bytes: usize, entry_bytes: usize) -> Option<usize> {
    // pk, sk "S", v, rz, the map's own overhead, and a margin for the
    // number's and the attribute names' bytes.
    let base = (2 + pk_bytes) + (2 + 1) + (1 + 12) + (2 + state_bytes) + (2 + 3) + 24;
    // An entry: its digest, its text, and a byte of map overhead; the ones
    // already there may be as long as this one, or a little longer.
    let per_entry = entry_bytes + 1 + 16;
    let room = 1_024_usize.checked_sub(base)? / per_entry;
    (room >= 1).then_some(room.min(MAX_ENTRIES))
}

/// The most works a state item holds, however small.
const MAX_ENTRIES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn work(digest: &str, received: i64) -> WorkRecord {
        WorkRecord {
            key: WorkKey {
                provider: Provider::BebasKirim,
                resource: Resource::new("order", "ORD-1"),
                work_key: "order.packed|a%7Cb".to_owned(),
                digest: digest.to_owned(),
            },
            event_id: String::new(),
            event_type: "order.packed".to_owned(),
            dedup_key: "order.packed|a%7Cb".to_owned(),
            status: WorkStatus::Processed,
            attempts: 1,
            lease_owner: None,
            lease_until: None,
            error: None,
            received_at: Timestamp::from_unix_millis(received),
            occurred_at: None,
            processed_at: Some(Timestamp::from_unix_millis(received + 5)),
            carried_status: Some("packed".to_owned()),
            effect: Some(Effect::Applied),
            replay: true,
        }
    }

    #[test]
    fn an_entry_reads_back_as_its_record() {
        let original = work("d1", 1_705_764_600_000);
        let back = record(
            Provider::BebasKirim,
            &original.key.resource,
            "d1",
            &entry(&original),
        )
        .expect("an entry");
        assert_eq!(back.key, original.key);
        assert_eq!(back.event_id, event_id(original.received_at, &original.key));
        assert_eq!(
            (
                back.event_type.as_str(),
                back.carried_status.as_deref(),
                back.replay
            ),
            ("order.packed", Some("packed"), true)
        );
        assert_eq!(back.processed_at, original.processed_at);
        assert_eq!(
            record(Provider::BebasKirim, &original.key.resource, "d1", "x|y"),
            None
        );
    }

    #[test]
    fn the_map_takes_only_what_keeps_the_item_in_one_write_unit() {
        let entry = entry(&work("0123456789abcdef", 1_705_764_600_000)).len() + 16;
        assert_eq!(room(40, 300, entry), Some(6));
        assert_eq!(room(40, 50, entry), Some(MAX_ENTRIES));
        assert_eq!(room(40, 900, entry), None);
        let fits = room(40, 300, entry).expect("room");
        let item_bytes = 40 + 300 + 64 + fits * (entry + 17);
        assert!(item_bytes <= 1_024, "{item_bytes}");
    }

    #[test]
    fn a_processed_record_wins_over_a_failed_one_of_the_same_meaning() {
        let mut failed = work("d1", 1);
        failed.status = WorkStatus::Failed;
        let mut works = vec![failed, work("d2", 2)];
        merge(&mut works, vec![work("d1", 1), work("d3", 3)]);
        let statuses: Vec<(&str, WorkStatus)> = works
            .iter()
            .map(|w| (w.key.digest.as_str(), w.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("d1", WorkStatus::Processed),
                ("d2", WorkStatus::Processed),
                ("d3", WorkStatus::Processed)
            ]
        );
    }
}
