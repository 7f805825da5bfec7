//! The event log's time index spreads a day over `TIME_SHARDS` partitions
//! (see `docs/scale.md`): over a day's worth of generated keys no partition
//! takes more than its share, and in the busiest second of a flash sale no
//! partition comes near DynamoDB's 1,000 write units a second.

use terima_core::{Provider, Resource, Timestamp};
use terima_service::store::{TIME_SHARDS, WorkKey, event_id, event_id_parts};

/// 2026-12-12 00:00:00 UTC, a flash-sale day.
const DAY_START_MILLIS: i64 = 1_797_033_600_000;
const DAY_MILLIS: i64 = 86_400_000;

/// The keys of the `n`-th event of a day, shaped like the providers' own:
/// sequential order numbers, a few event types per order, hex ids.
fn key(n: u64) -> WorkKey {
    let (provider, kind, id, work) = match n % 4 {
        0 => (
            Provider::BebasKirim,
            "order",
            format!("ORD-2026-{:06}", n / 12),
            format!(
                "order.status|{}",
                ["packed", "shipped", "delivered"][(n / 4 % 3) as usize]
            ),
        ),
        1 => (
            Provider::BitByBit,
            "customer",
            format!("cust_{:08}", n / 2),
            format!("customer.updated|2026-12-12T{:02}:00:00Z", n % 24),
        ),
        2 => (
            Provider::Oms,
            "package",
            format!("{}", 4_000_000 + n / 3),
            format!("package.status|{}", n % 7),
        ),
        _ => (
            Provider::Biteship,
            "order",
            format!("{:024x}", 0x65bb_1f2e_9a4c_3d00_u64 + n / 5),
            format!(
                "order.status|{}",
                ["picked", "dropping_off", "delivered"][(n % 3) as usize]
            ),
        ),
    };
    WorkKey {
        provider,
        resource: Resource {
            kind: kind.to_owned(),
            id,
        },
        work_key: work,
        digest: format!("{n:016x}"),
    }
}

fn shard_counts(ids: impl Iterator<Item = String>) -> Vec<u64> {
    let mut counts = vec![0_u64; TIME_SHARDS as usize];
    for id in ids {
        let (_, shard) = event_id_parts(&id).expect("an event id");
        counts[shard as usize] += 1;
    }
    counts
}

#[test]
fn a_days_events_spread_evenly_over_the_shards() {
    // Three events a second all day: 259,200 events.
    let events: u64 = 259_200;
    let step = DAY_MILLIS / i64::try_from(events).expect("fits");
    let counts = shard_counts((0..events).map(|n| {
        let at = DAY_START_MILLIS + i64::try_from(n).expect("fits") * step;
        event_id(Timestamp::from_unix_millis(at), &key(n))
    }));
    let fair = events / u64::from(TIME_SHARDS);
    let busiest = *counts.iter().max().expect("shards");
    let quietest = *counts.iter().min().expect("shards");
    println!(
        "{events} events over {TIME_SHARDS} shards: fair {fair}, busiest {busiest}, quietest {quietest}"
    );
    assert!(
        busiest * 100 <= fair * 103,
        "the busiest shard takes more than 3% over its share: {counts:?}"
    );
    let first = event_id(Timestamp::from_unix_millis(DAY_START_MILLIS), &key(0));
    let last = event_id(
        Timestamp::from_unix_millis(DAY_START_MILLIS + DAY_MILLIS - 1),
        &key(events - 1),
    );
    for id in [first, last] {
        assert_eq!(
            event_id_parts(&id).map(|(day, _)| day).as_deref(),
            Some("2026-12-12"),
            "{id}"
        );
    }
}

#[test]
fn the_busiest_second_of_a_flash_sale_stays_under_a_partitions_limit() {
    // A minute at 3,000 events a second.
    let per_second: u64 = 3_000;
    let mut worst = 0;
    for second in 0..60_u64 {
        let at = DAY_START_MILLIS + 20 * 3_600_000 + i64::try_from(second * 1_000).expect("fits");
        let counts = shard_counts((0..per_second).map(|i| {
            let n = second * per_second + i;
            event_id(
                Timestamp::from_unix_millis(at + i64::try_from(i % 1_000).expect("fits")),
                &key(n),
            )
        }));
        worst = worst.max(*counts.iter().max().expect("shards"));
    }
    // The log entry of a body up to about 4 KB (deflated under 2 KB) is at
    // most 2 write units (docs/scale.md): 2 * worst must stay under 1,000.
    println!(
        "3000 events/s for 60 s: busiest shard-second {worst} entries, {} WCU",
        worst * 2
    );
    assert!(
        worst * 2 < 1_000,
        "a shard takes {worst} entries in one second"
    );
    assert!(worst >= u64::from(3_000 / TIME_SHARDS), "the count is real");
}
