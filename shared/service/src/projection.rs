//! The built-in work: from one event, the changes to the state of the
//! resources it concerns, and the rule that keeps that state from moving
//! backwards.
//!
//! Order of states: the provider's own time decides (`updated_at`,
//! `modified_date`, `updatedAt`, Bebas Kirim's envelope `timestamp`). When
//! two states carry the same time, or one carries none, the documented order
//! of statuses decides ([`terima_core::status_rank`]). A state that neither
//! can place after the current one is ignored (and counted as stale); its
//! event stays in the event log.
//!
//! Only an event that carries a status moves the status clock; an event
//! without one changes attributes, each ordered by its own time, so a late
//! status is still placed against the last status, not against the last
//! waybill. A status that comes back later (on hold, then dropping off again)
//! wins by its newer time. Which event moves what is each provider's rule
//! (`ProviderSpec::updates`), tabled in `docs/providers.md`.

use serde_json::Value;
use terima_core::{Provider, Timestamp, Update, status_rank};

use crate::store::ResourceState;

/// Is a state at `(at, rank)` later than the current one?
pub fn is_newer(
    at: Option<Timestamp>,
    rank: Option<u32>,
    current_at: Option<Timestamp>,
    current_rank: Option<u32>,
) -> bool {
    match (at, current_at) {
        (Some(a), Some(b)) if a != b => a > b,
        _ => match (rank, current_rank) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

/// Applies `update` to `current`. Returns the new state, or `None` when it
/// changes nothing (a stale or repeated state).
pub fn merge(
    provider: Provider,
    current: Option<&ResourceState>,
    update: &Update,
    event_id: &str,
) -> Option<ResourceState> {
    let rank = update
        .status
        .as_deref()
        .and_then(|s| status_rank(provider, &update.kind, s));
    let Some(current) = current else {
        let mut fields = update.fields.clone();
        if let Some((key, value)) = &update.append {
            fields.insert(key.clone(), Value::Array(vec![value.clone()]));
        }
        return Some(ResourceState {
            provider,
            kind: update.kind.clone(),
            id: update.id.clone(),
            status: update.status.clone(),
            updated_at: update.at,
            rank,
            deleted: update.deleted,
            field_times: update
                .at
                .map(|at| fields.keys().map(|k| (k.clone(), at)).collect())
                .unwrap_or_default(),
            fields,
            last_event: event_id.to_owned(),
            version: 1,
        });
    };
    if update.create_only {
        return None;
    }
    // Only an event that carries a status moves the status clock; an event
    // without one (a waybill, a customer edit) changes attributes only, each
    // ordered by its own time.
    let newer =
        update.status.is_some() && is_newer(update.at, rank, current.updated_at, current.rank);
    let mut next = current.clone();
    if newer {
        next.status = update.status.clone();
        next.rank = rank;
        if update.at.is_some() {
            next.updated_at = update.at;
        }
    }
    // An attribute is taken when the state lacks it (a waybill that arrives
    // after the status), or from an event newer than the one that set it:
    // by their own times when both have one, else as the status goes.
    for (key, value) in &update.fields {
        let take = match (update.at, current.field_times.get(key)) {
            _ if !current.fields.contains_key(key) => true,
            (Some(at), Some(set_at)) => at > *set_at,
            (Some(_), None) => update.status.is_none() || newer,
            (None, _) => newer,
        };
        if take {
            next.fields.insert(key.clone(), value.clone());
            if let Some(at) = update.at {
                next.field_times.insert(key.clone(), at);
            }
        }
    }
    if let Some((key, value)) = &update.append {
        let list = next
            .fields
            .entry(key.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        match list {
            Value::Array(items) if !items.contains(value) => items.push(value.clone()),
            Value::Array(_) => {}
            other => *other = Value::Array(vec![value.clone()]),
        }
    }
    // Deletion is final: a late update does not bring a resource back.
    next.deleted |= update.deleted;
    if next == *current {
        return None;
    }
    next.last_event = event_id.to_owned();
    next.version = current.version + 1;
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn ts(text: &str) -> Option<Timestamp> {
        Timestamp::parse(text).ok()
    }

    #[test]
    fn time_decides_then_rank() {
        let early = ts("2024-01-20T15:00:00Z");
        let late = ts("2024-01-20T16:00:00Z");
        assert!(is_newer(late, Some(1), early, Some(9)), "time beats rank");
        assert!(
            !is_newer(early, Some(9), late, Some(1)),
            "an older time loses"
        );
        assert!(is_newer(late, Some(5), late, Some(4)), "rank breaks a tie");
        assert!(
            !is_newer(late, Some(4), late, Some(4)),
            "a repeat is not newer"
        );
        assert!(
            is_newer(None, Some(9), late, Some(5)),
            "no time: rank decides"
        );
        assert!(
            !is_newer(None, None, None, Some(1)),
            "an unknown status cannot be placed"
        );
    }

    fn biteship_state(status: &str, rank: u32) -> ResourceState {
        ResourceState {
            provider: Provider::Biteship,
            kind: "order".into(),
            id: "o1".into(),
            status: Some(status.into()),
            updated_at: None,
            rank: Some(rank),
            deleted: false,
            fields: Map::new(),
            field_times: Default::default(),
            last_event: "e0".into(),
            version: 3,
        }
    }

    #[test]
    fn a_late_waybill_fills_in_without_moving_the_status_back() {
        let current = biteship_state("delivered", 9);
        let update = Update::new("order", "o1", Some("allocated".into()), None)
            .field("courier_waybill_id", "WB1");
        let next = merge(Provider::Biteship, Some(&current), &update, "e1").expect("waybill added");
        assert_eq!(next.status.as_deref(), Some("delivered"));
        assert_eq!(next.fields["courier_waybill_id"], "WB1");
        assert_eq!(next.version, 4);
        assert_eq!(
            merge(Provider::Biteship, Some(&next), &update, "e1"),
            None,
            "a repeat changes nothing"
        );
    }

    #[test]
    fn deletion_sticks() {
        let mut current = biteship_state("picked", 5);
        current.deleted = true;
        let update = Update::new("order", "o1", Some("delivered".into()), None);
        let next = merge(Provider::Biteship, Some(&current), &update, "e2").expect("status moves");
        assert!(next.deleted);
    }
}
