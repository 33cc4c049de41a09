//! The events cursor: where in Stripe's events feed a destination's data is current to.
//!
//! A full sync reads the newest event *before* it starts walking lists and stores it as the
//! cursor when every chosen data type was copied. Changes made while the backfill runs are then
//! both (maybe) in the copied objects and in the events after the cursor; applying those events
//! is harmless because rows never go back to an older version.
//!
//! The cursor is kept per (Stripe account, destination) in the destination's `_cls_state`
//! table, under [`EVENTS_CURSOR_KEY`], as JSON.

use cls_destination::{Destination, DestinationError};
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// State key of the events cursor.
pub const EVENTS_CURSOR_KEY: &str = "events_cursor";

/// A position in the events feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsCursor {
    /// Id of the newest event already reflected in the data (`None`: the account had no event
    /// yet when the cursor was taken).
    pub event_id: Option<String>,
    /// `created` of that event, or the time the cursor was taken when there was none (unix
    /// seconds).
    pub created: i64,
    /// The data types the data is current for.
    pub types: Vec<String>,
    /// Rank of that event among the events of its second, in feed order (see
    /// [`crate::events::Sequencer`]); 0 when a full sync took the cursor, which does not know it.
    /// Cursors stored before this field existed read as 0.
    #[serde(default)]
    pub rank: u32,
}

/// Reads the newest event of the account (one request). `now` is used as the position when the
/// account has no events.
pub async fn latest_events_cursor(
    client: &StripeClient,
    counters: &RequestCounters,
    now: i64,
    types: Vec<String>,
) -> Result<EventsCursor, StripeError> {
    let query = vec![("limit".to_string(), "1".to_string())];
    let page = client.list("/v1/events", &query, counters).await?;
    let newest = page.data.first();
    Ok(EventsCursor {
        event_id: newest
            .and_then(|e| e.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string),
        created: newest
            .and_then(|e| e.get("created"))
            .and_then(Value::as_i64)
            .unwrap_or(now),
        types,
        rank: 0,
    })
}

/// Loads the stored cursor of an account, if any. A cursor that cannot be read (written by a
/// future version, or damaged) counts as missing, which makes the next run a full one.
pub async fn load_cursor(
    dest: &dyn Destination,
    account_id: &str,
) -> Result<Option<EventsCursor>, DestinationError> {
    Ok(dest
        .get_state(account_id, EVENTS_CURSOR_KEY)
        .await?
        .and_then(|raw| serde_json::from_str(&raw).ok()))
}

/// Stores the cursor of an account.
pub async fn store_cursor(
    dest: &dyn Destination,
    account_id: &str,
    cursor: &EventsCursor,
) -> Result<(), DestinationError> {
    let raw = serde_json::to_string(cursor).unwrap_or_default();
    dest.set_state(account_id, EVENTS_CURSOR_KEY, &raw).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_through_json() {
        let c = EventsCursor {
            event_id: Some("evt_1".into()),
            created: 1_700_000_000,
            types: vec!["customers".into()],
            rank: 3,
        };
        let raw = serde_json::to_string(&c).expect("serializes");
        assert_eq!(serde_json::from_str::<EventsCursor>(&raw).ok(), Some(c));
    }
}
