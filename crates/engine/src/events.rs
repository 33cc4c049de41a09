//! Events as data: what one Stripe event means for the tables, and the version it writes with.
//!
//! Everything here is pure (no I/O) so the ordering rules can be tested exhaustively; the
//! [`crate::incremental`] module executes what these functions decide.
//!
//! Words used here:
//! - *version*: the ordering key of a row (see `cls_destination::Row::version`). A write only
//!   replaces a row holding a strictly smaller version.
//! - *event version*: `created * 1_000_000 + k`, where `k` is the event's rank among the events
//!   of the same second, oldest first, in the events feed. Stripe's `created` has one-second
//!   resolution and event ids carry no order, so the feed's order is the only tie-breaker there
//!   is. A million ranks per second, not a thousand: bursts of thousands of events in one second
//!   happen (Stripe's own billing runs; the emulator's `/_emulator/mutate` records every change
//!   of a call in the same second), and a saturated rank would make two events tie.
//! - *backfill version*: what a full sync's rows carry, see [`backfill_version`].
//!
//! ## Why these rules give "newest wins, whatever the order"
//! - Feed events get strictly increasing versions in feed order (the rank `k` is carried across
//!   runs in the cursor, see [`Sequencer`]), so applying the feed in any order ends at the
//!   newest event's snapshot of each object.
//! - A backfill's rows carry `S * 1_000_000 - 1`, where `S` is the `created` second of the newest
//!   event when the backfill started (the events cursor it stores). Every event the next
//!   incremental run replays is from second `S` or later, so it outranks the backfill — which
//!   is what is needed, since the backfill may have read an object before such an event changed
//!   it. Events from before second `S` lose to the backfill, which read the object later.
//!   Using Stripe's clock (the event's second) rather than the local clock also keeps the
//!   comparison right when the local clock and Stripe's disagree.
//! - Webhooks have no feed order: a delivered event gets `k = 0`, the lowest version of its
//!   second. Two events of the same object in the same second delivered out of order may leave
//!   the older one in place until the next incremental run, whose feed ranks (`k ≥ 1` for every
//!   event but the oldest of its second) put the newest one back on top: polling is the safety
//!   net, as Stripe recommends. Events of different seconds are always ordered right.
//! - The same event applied twice produces the same row at the same version, which the
//!   destination leaves alone (equal versions never overwrite).

use cls_catalog::DataType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Versions per second of `created`: an event's version is `created * RANKS_PER_SECOND + rank`.
pub const RANKS_PER_SECOND: i64 = 1_000_000;

/// Highest rank an event can have within one second; later events of the same second share it.
pub const MAX_RANK: u32 = (RANKS_PER_SECOND - 1) as u32;

/// Where events come from, which decides how ties within one second are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// The `/v1/events` feed, applied oldest first: ranks follow the feed order, continuing
    /// after the position of the cursor the events follow.
    Feed {
        /// Second and rank of the last event already applied (the cursor's).
        after: Sequencer,
    },
    /// Webhook deliveries: no order is known, every event gets rank 0 of its second.
    Webhook,
}

/// The version an event's snapshot is written with.
pub fn event_version(created: i64, rank: u32) -> i64 {
    created
        .saturating_mul(RANKS_PER_SECOND)
        .saturating_add(i64::from(rank.min(MAX_RANK)))
}

/// The version of rows read by a full sync whose events cursor sits at second
/// `cursor_created` (see the module docs). Without a cursor (the key cannot read events, so no
/// incremental run will ever follow, though webhooks may), the local fetch time is used, on
/// the same scale as event versions (`now_ms * 1000`, i.e. microseconds).
pub fn backfill_version(cursor_created: Option<i64>, now_ms: i64) -> i64 {
    match cursor_created {
        Some(s) => s.saturating_mul(RANKS_PER_SECOND).saturating_sub(1),
        None => now_ms.saturating_mul(RANKS_PER_SECOND / 1000),
    }
}

/// Hands out feed ranks: the rank of an event is how many events of the same second came
/// before it in the feed, counting from the position it was started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequencer {
    /// Second of the last event ranked.
    pub second: i64,
    /// Rank of the last event ranked.
    pub rank: u32,
}

impl Sequencer {
    /// A sequencer whose last ranked event was at `second` with `rank`.
    pub fn after(second: i64, rank: u32) -> Self {
        Sequencer { second, rank }
    }

    /// The rank of the next event of the feed (oldest first), created at `created`.
    pub fn next(&mut self, created: i64) -> u32 {
        if created == self.second {
            self.rank = self.rank.saturating_add(1).min(MAX_RANK);
        } else {
            // A feed that goes back in time (a clock step at Stripe) restarts the second's count:
            // it cannot be ranked against a second already passed.
            self.second = created;
            self.rank = 0;
        }
        self.rank
    }
}

/// The fields of an event the engine needs, read at the boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent<'a> {
    /// `evt_…`.
    pub id: &'a str,
    /// `customer.updated`.
    pub event_type: &'a str,
    /// Unix seconds.
    pub created: i64,
    /// `data.object`: the snapshot.
    pub object: &'a Value,
    /// `data.object.object` (`customer`).
    pub object_type: &'a str,
    /// `data.object.id`.
    pub object_id: &'a str,
}

/// Why an event was not applied to any table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not an event, or without `id`, `type`, `created` or an object with `id` and `object`.
    Malformed,
    /// Its object type is not in the catalog (`discount`, `tax_id`, …).
    UnknownObject,
    /// Its object's data type (and every child of it) was not chosen.
    NotChosen,
}

impl SkipReason {
    /// A short name for summaries and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Malformed => "malformed",
            SkipReason::UnknownObject => "unknown object type",
            SkipReason::NotChosen => "data type not chosen",
        }
    }
}

/// Reads an event's envelope; `None` when it lacks what applying it needs.
pub fn parse_event(event: &Value) -> Option<ParsedEvent<'_>> {
    if event.get("object").and_then(Value::as_str) != Some("event") {
        return None;
    }
    let object = event.get("data")?.get("object")?;
    Some(ParsedEvent {
        id: event.get("id")?.as_str()?,
        event_type: event.get("type")?.as_str()?,
        created: event.get("created")?.as_i64()?,
        object,
        object_type: object.get("object")?.as_str()?,
        object_id: object.get("id")?.as_str()?,
    })
}

/// What one event does to the chosen tables.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEffect {
    /// The data type of the snapshot, when that type was chosen (else only its children, or
    /// only the `events` table, are touched).
    pub target: Option<&'static DataType>,
    /// Whether the snapshot says the object is gone (written with `deleted = true`).
    pub deleted: bool,
    /// Chosen child data types of the snapshot's type, which follow it.
    pub children: Vec<&'static DataType>,
}

/// Decides what an event does, given the chosen data types. `Err` says why it does nothing
/// (besides being stored in the `events` table when that is chosen).
///
/// An object is deleted when the event is `<object>.deleted` for a type Stripe deletes for good
/// (`customer.deleted`, `invoice.deleted`, …), when the snapshot says `"deleted": true`, or
/// when a child object left its parent (a payment method detached from its customer has
/// `customer: null`, and a full sync — which lists it through the customer — would not see it
/// either). `customer.subscription.deleted` is none of these: the subscription is canceled,
/// and its snapshot (status `canceled`) is upserted like any other.
pub fn effect_of(
    event: &ParsedEvent<'_>,
    chosen: &[&'static DataType],
) -> Result<EventEffect, SkipReason> {
    let Some(data_type) = cls_catalog::by_object(event.object_type) else {
        return Err(SkipReason::UnknownObject);
    };
    let is_chosen = |t: &DataType| chosen.iter().any(|c| c.name == t.name);
    let children: Vec<&'static DataType> = chosen
        .iter()
        .copied()
        .filter(|c| c.parent.is_some_and(|p| p.data_type == data_type.name))
        .collect();
    let target = is_chosen(data_type).then_some(data_type);
    if target.is_none() && children.is_empty() {
        return Err(SkipReason::NotChosen);
    }
    let deleted_event =
        data_type.deletable && event.event_type == format!("{}.deleted", event.object_type);
    let flagged = event.object.get("deleted").and_then(Value::as_bool) == Some(true);
    let left_parent = data_type.parent.is_some_and(|p| {
        event
            .object
            .get(p.parent_column)
            .is_some_and(Value::is_null)
    });
    Ok(EventEffect {
        target,
        deleted: deleted_event || flagged || left_parent,
        children,
    })
}

/// The value of a child's parent column, as a string id (expanded parents give their `id`).
pub fn parent_id_of<'a>(child: &DataType, object: &'a Value) -> Option<&'a str> {
    let column = child.parent?.parent_column;
    match object.get(column)? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("id").and_then(Value::as_str),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn t(name: &str) -> &'static DataType {
        cls_catalog::find(name).expect("in catalog")
    }

    fn event(ty: &str, object: Value) -> Value {
        json!({"id": "evt_1", "object": "event", "type": ty, "created": 100, "data": {"object": object}})
    }

    fn effect(ty: &str, object: Value, chosen: &[&str]) -> Result<EventEffect, SkipReason> {
        let chosen: Vec<_> = chosen.iter().map(|n| t(n)).collect();
        let e = event(ty, object);
        let p = parse_event(&e).ok_or(SkipReason::Malformed)?;
        effect_of(&p, &chosen)
    }

    #[test]
    fn versions_order_seconds_first_then_feed_rank() {
        assert!(event_version(10, 999) < event_version(11, 0));
        assert!(event_version(10, 1) > event_version(10, 0));
        assert_eq!(event_version(10, u32::MAX), event_version(10, MAX_RANK));
        assert!(event_version(10, 5000) < event_version(10, 5001));
    }

    #[test]
    fn a_backfill_ranks_below_every_event_of_its_cursor_second() {
        let v = backfill_version(Some(1_000), 5);
        assert!(v < event_version(1_000, 0));
        assert!(v > event_version(999, MAX_RANK - 1));
        // Only a second with a million events (saturated rank) ties with a backfill.
        assert_eq!(v, event_version(999, MAX_RANK));
        assert_eq!(backfill_version(None, 1_234_567), 1_234_567_000);
        assert!(backfill_version(None, 1_001_000) > event_version(1_000, MAX_RANK));
    }

    #[test]
    fn the_sequencer_ranks_events_within_a_second_and_carries_over() {
        let mut s = Sequencer::after(100, 0);
        assert_eq!(s.next(100), 1, "continues after the cursor's own rank");
        assert_eq!(s.next(100), 2);
        assert_eq!(s.next(101), 0);
        assert_eq!(s.next(101), 1);
        assert_eq!(s.next(105), 0);
        assert_eq!(s, Sequencer::after(105, 0));
    }

    #[test]
    fn deletion_events_soft_delete_but_a_canceled_subscription_is_upserted() {
        let e = effect(
            "customer.deleted",
            json!({"id": "cus_1", "object": "customer"}),
            &["customers"],
        )
        .expect("applies");
        assert!(e.deleted);
        assert_eq!(e.target.map(|t| t.name), Some("customers"));

        let e = effect(
            "customer.subscription.deleted",
            json!({"id": "sub_1", "object": "subscription", "status": "canceled"}),
            &["subscriptions"],
        )
        .expect("applies");
        assert!(!e.deleted, "a canceled subscription still exists");

        let e = effect(
            "invoice.deleted",
            json!({"id": "in_1", "object": "invoice"}),
            &["invoices", "invoice_line_items"],
        )
        .expect("applies");
        assert!(e.deleted);
        assert_eq!(e.children.len(), 1);
    }

    #[test]
    fn a_detached_payment_method_leaves_its_customer() {
        let e = effect(
            "payment_method.detached",
            json!({"id": "pm_1", "object": "payment_method", "customer": null}),
            &["payment_methods"],
        )
        .expect("applies");
        assert!(e.deleted);
        let e = effect(
            "payment_method.attached",
            json!({"id": "pm_1", "object": "payment_method", "customer": "cus_1"}),
            &["payment_methods"],
        )
        .expect("applies");
        assert!(!e.deleted);
    }

    #[test]
    fn unknown_and_unchosen_objects_are_skipped_with_a_reason() {
        assert_eq!(
            effect(
                "customer.discount.created",
                json!({"id": "di_1", "object": "discount"}),
                &["customers"]
            ),
            Err(SkipReason::UnknownObject)
        );
        assert_eq!(
            effect(
                "charge.succeeded",
                json!({"id": "ch_1", "object": "charge"}),
                &["customers"]
            ),
            Err(SkipReason::NotChosen)
        );
        assert!(parse_event(&json!({"object": "event", "id": "evt_1"})).is_none());
        assert!(parse_event(&json!([1, 2])).is_none());
    }

    #[test]
    fn a_parent_event_reaches_a_chosen_child_even_when_the_parent_is_not_chosen() {
        let e = effect(
            "customer.subscription.updated",
            json!({"id": "sub_1", "object": "subscription"}),
            &["subscription_items"],
        )
        .expect("applies");
        assert_eq!(e.target, None);
        assert_eq!(e.children.len(), 1);
    }

    #[test]
    fn parent_ids_are_read_from_strings_or_expanded_objects() {
        let lines = t("invoice_line_items");
        assert_eq!(
            parent_id_of(lines, &json!({"invoice": "in_1"})),
            Some("in_1")
        );
        assert_eq!(
            parent_id_of(lines, &json!({"invoice": {"id": "in_2"}})),
            Some("in_2")
        );
        assert_eq!(parent_id_of(lines, &json!({})), None);
        assert_eq!(parent_id_of(t("customers"), &json!({"invoice": "x"})), None);
    }

    // ------------------------------------------------------------ ordering properties

    /// A model of one destination row: the version guard of `Destination::write`.
    #[derive(Debug, Clone, Default)]
    struct Table(HashMap<u8, (i64, u32)>);

    impl Table {
        /// Writes `state` of `object` at `version` unless an equal or newer one is stored.
        fn write(&mut self, object: u8, version: i64, state: u32) {
            match self.0.get(&object) {
                Some((v, _)) if *v >= version => {}
                _ => {
                    self.0.insert(object, (version, state));
                }
            }
        }
    }

    /// One change in Stripe: object `object` got state `state` at second `created`.
    #[derive(Debug, Clone)]
    struct Change {
        object: u8,
        created: i64,
        state: u32,
    }

    /// A history: changes in the order Stripe made them (seconds never go back), each with a
    /// unique state number so "the newest state" is unambiguous.
    fn history() -> impl Strategy<Value = Vec<Change>> {
        prop::collection::vec((0u8..4, 0i64..3), 1..40).prop_map(|steps| {
            let mut second = 1_000;
            steps
                .into_iter()
                .enumerate()
                .map(|(i, (object, advance))| {
                    second += advance;
                    Change {
                        object,
                        created: second,
                        state: i as u32 + 1,
                    }
                })
                .collect()
        })
    }

    /// The feed versions of a history, ranked as an incremental run does (starting after a
    /// cursor at `start`).
    fn feed_versions(changes: &[Change], start: Sequencer) -> Vec<i64> {
        let mut seq = start;
        changes
            .iter()
            .map(|c| event_version(c.created, seq.next(c.created)))
            .collect()
    }

    fn newest(changes: &[Change]) -> HashMap<u8, u32> {
        let mut out = HashMap::new();
        for c in changes {
            out.insert(c.object, c.state);
        }
        out
    }

    fn states(t: &Table) -> HashMap<u8, u32> {
        t.0.iter().map(|(k, (_, s))| (*k, *s)).collect()
    }

    proptest! {
        /// Feed events applied in any order, with duplicates, end at the newest state.
        #[test]
        fn any_order_of_feed_events_with_duplicates_ends_at_the_newest_state(
            changes in history(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..80),
        ) {
            let versions = feed_versions(&changes, Sequencer::after(0, 0));
            let mut table = Table::default();
            // Some random deliveries (duplicates included) first, then every event once in a
            // random rotation: every event arrives at least once.
            for idx in &order {
                let i = idx.index(changes.len());
                table.write(changes[i].object, versions[i], changes[i].state);
            }
            let shift = order.first().map_or(0, |i| i.index(changes.len()));
            for j in 0..changes.len() {
                let i = (j + shift) % changes.len();
                table.write(changes[i].object, versions[i], changes[i].state);
            }
            prop_assert_eq!(states(&table), newest(&changes));
        }

        /// A backfill taken at any point of the history, whose cursor is the newest event at
        /// its start, combined in any order with every event after the cursor, ends at the
        /// newest state — even when the backfill read an object after some of those events.
        #[test]
        fn a_backfill_and_the_events_after_its_cursor_end_at_the_newest_state(
            changes in history(),
            cut in any::<prop::sample::Index>(),
            read_lag in any::<prop::sample::Index>(),
            backfill_first in any::<bool>(),
            order in any::<prop::sample::Index>(),
        ) {
            // The cursor is the last change before `cut`; the backfill reads each object at
            // some point at or after the cut (as a walk does), seeing every change before it.
            let cut = cut.index(changes.len() + 1);
            let lag = cut + read_lag.index(changes.len() - cut + 1);
            let cursor = cut.checked_sub(1).map(|i| &changes[i]);
            let cursor_second = cursor.map_or(900, |c| c.created);
            let bv = backfill_version(Some(cursor_second), i64::MAX);
            let seen = newest(&changes[..lag]);

            let after = &changes[cut..];
            // The cursor of a full sync does not know its own rank: it is stored as rank 0.
            let versions = feed_versions(after, Sequencer::after(cursor_second, 0));
            let mut table = Table::default();
            let backfill = |table: &mut Table| {
                for (object, state) in &seen {
                    table.write(*object, bv, *state);
                }
            };
            if backfill_first {
                backfill(&mut table);
            }
            let shift = order.index(after.len().max(1));
            for j in 0..after.len() {
                let i = (j + shift) % after.len();
                table.write(after[i].object, versions[i], after[i].state);
            }
            if !backfill_first {
                backfill(&mut table);
            }
            prop_assert_eq!(states(&table), newest(&changes));
        }

        /// Webhooks of different seconds are ordered right whatever the delivery order, and a
        /// later incremental run over the same events fixes what same-second ties left.
        #[test]
        fn webhooks_then_the_feed_end_at_the_newest_state(
            changes in history(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
        ) {
            let mut table = Table::default();
            for idx in &order {
                let c = &changes[idx.index(changes.len())];
                table.write(c.object, event_version(c.created, 0), c.state);
            }
            let versions = feed_versions(&changes, Sequencer::after(0, 0));
            for (c, v) in changes.iter().zip(&versions) {
                table.write(c.object, *v, c.state);
            }
            prop_assert_eq!(states(&table), newest(&changes));
        }
    }
}
