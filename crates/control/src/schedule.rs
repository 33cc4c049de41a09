//! Schedule math: when a [`Cadence`] comes due, as pure functions of times (no clock, no
//! store), so every rule is unit- and property-tested.
//!
//! Words used here:
//! - a **slot** is an instant the cadence names: the top of every hour (hourly), 00:00 UTC
//!   (daily), Monday 00:00 UTC (weekly), the 1st at 00:00 UTC (monthly), or each instant a
//!   cron expression matches (read in UTC);
//! - the **anchor** is the last slot a run was queued for, or the schedule's creation time
//!   before its first run;
//! - a schedule is **due** when a slot lies after the anchor and at or before now. However
//!   many slots were missed (the server was down for five hours of an hourly schedule),
//!   [`check`] answers with one slot — the latest — so they produce one run, not one each.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

use crate::model::{Cadence, Every};

/// What [`check`] found for one schedule at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The slot to queue a run for now (the latest one missed), or `None` when nothing is
    /// due.
    pub slot: Option<DateTime<Utc>>,
    /// The first slot strictly after now: when to look again. `None` only for a cron
    /// expression that matches nothing more (a past year).
    pub next: Option<DateTime<Utc>>,
}

/// Whether a schedule with `cadence`, last due at `anchor` (or created then), is due at
/// `now`, and when it is next due. At most one slot is returned, whatever the gap.
pub fn check(cadence: &Cadence, anchor: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    let slot = latest_slot(cadence, now).filter(|s| *s > anchor);
    Due {
        slot,
        next: next_slot(cadence, now),
    }
}

/// When a schedule last due at `anchor` (or created then) is next due: the latest missed
/// slot when it is due now (at or before `now`: the run is late and starts at once), else
/// its first slot strictly after `now`.
pub fn next_due(
    cadence: &Cadence,
    anchor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let due = check(cadence, anchor, now);
    due.slot.or(due.next)
}

/// The first slot strictly after `after`.
pub fn next_slot(cadence: &Cadence, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match cadence {
        Cadence::Every(every) => Some(step_forward(*every, floor(*every, after))),
        Cadence::Cron(expr) => expr.schedule()?.after(&after).next(),
    }
}

/// The latest slot at or before `at`.
pub fn latest_slot(cadence: &Cadence, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match cadence {
        Cadence::Every(every) => Some(floor(*every, at)),
        Cadence::Cron(expr) => {
            // The cron iterator walks backwards from an instant, exclusive of it; start one
            // second later so a slot exactly at `at` counts (cron resolution is a second).
            let schedule = expr.schedule()?;
            let from = at.with_nanosecond(0).unwrap_or(at) + Duration::seconds(1);
            schedule.after(&from).next_back()
        }
    }
}

/// Midnight UTC at the start of `d`.
fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))
}

/// The slot of a fixed cadence at or before `t`.
fn floor(every: Every, t: DateTime<Utc>) -> DateTime<Utc> {
    let date = t.date_naive();
    match every {
        Every::Hour => midnight(date) + Duration::hours(i64::from(t.hour())),
        Every::Day => midnight(date),
        Every::Week => {
            midnight(date) - Duration::days(i64::from(date.weekday().num_days_from_monday()))
        }
        Every::Month => midnight(date.with_day(1).unwrap_or(date)),
    }
}

/// The slot after `slot` (itself a slot of `every`).
fn step_forward(every: Every, slot: DateTime<Utc>) -> DateTime<Utc> {
    match every {
        Every::Hour => slot + Duration::hours(1),
        Every::Day => slot + Duration::days(1),
        Every::Week => slot + Duration::weeks(1),
        Every::Month => {
            let d = slot.date_naive();
            let (y, m) = if d.month() == 12 {
                (d.year() + 1, 1)
            } else {
                (d.year(), d.month() + 1)
            };
            // Day 1 of any month exists; the fallback only satisfies the type.
            midnight(NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d + Duration::days(31)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CronExpression;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("bad test time {s}: {e}"),
        }
    }

    fn cron(text: &str) -> Cadence {
        match CronExpression::parse(text) {
            Ok(c) => Cadence::Cron(c),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn hourly_is_due_at_the_top_of_the_next_hour() {
        let c = Cadence::Every(Every::Hour);
        let created = at("2026-03-10T10:20:00Z");
        let early = check(&c, created, at("2026-03-10T10:59:59Z"));
        assert_eq!(early.slot, None);
        assert_eq!(early.next, Some(at("2026-03-10T11:00:00Z")));
        let on_time = check(&c, created, at("2026-03-10T11:00:00Z"));
        assert_eq!(on_time.slot, Some(at("2026-03-10T11:00:00Z")));
        assert_eq!(on_time.next, Some(at("2026-03-10T12:00:00Z")));
    }

    #[test]
    fn five_missed_hours_make_one_run_for_the_latest_slot() {
        let c = Cadence::Every(Every::Hour);
        let last = at("2026-03-10T11:00:00Z");
        let now = at("2026-03-10T16:30:00Z");
        let due = check(&c, last, now);
        assert_eq!(due.slot, Some(at("2026-03-10T16:00:00Z")));
        assert_eq!(due.next, Some(at("2026-03-10T17:00:00Z")));
        // Once that slot is recorded, nothing more is due until 17:00.
        assert_eq!(check(&c, at("2026-03-10T16:00:00Z"), now).slot, None);
    }

    #[test]
    fn daily_weekly_monthly_slots() {
        let now = at("2026-03-11T08:00:00Z"); // a Wednesday
        let day = Cadence::Every(Every::Day);
        assert_eq!(next_slot(&day, now), Some(at("2026-03-12T00:00:00Z")));
        assert_eq!(latest_slot(&day, now), Some(at("2026-03-11T00:00:00Z")));
        let week = Cadence::Every(Every::Week);
        assert_eq!(latest_slot(&week, now), Some(at("2026-03-09T00:00:00Z")));
        assert_eq!(next_slot(&week, now), Some(at("2026-03-16T00:00:00Z")));
        let month = Cadence::Every(Every::Month);
        assert_eq!(latest_slot(&month, now), Some(at("2026-03-01T00:00:00Z")));
        assert_eq!(next_slot(&month, now), Some(at("2026-04-01T00:00:00Z")));
        assert_eq!(
            next_slot(&month, at("2026-12-31T23:59:59Z")),
            Some(at("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn a_schedule_created_after_todays_slot_waits_for_tomorrow() {
        let day = Cadence::Every(Every::Day);
        let created = at("2026-03-11T09:00:00Z");
        assert_eq!(check(&day, created, at("2026-03-11T23:00:00Z")).slot, None);
        assert_eq!(
            next_due(&day, created, at("2026-03-11T23:00:00Z")),
            Some(at("2026-03-12T00:00:00Z"))
        );
        // Down for three days: one run, for the latest slot, due at once.
        assert_eq!(
            next_due(&day, created, at("2026-03-14T05:00:00Z")),
            Some(at("2026-03-14T00:00:00Z"))
        );
    }

    #[test]
    fn cron_slots_including_one_exactly_now() {
        let c = cron("30 3 * * *");
        let now = at("2026-03-11T03:30:00Z");
        assert_eq!(latest_slot(&c, now), Some(now));
        assert_eq!(next_slot(&c, now), Some(at("2026-03-12T03:30:00Z")));
        let due = check(&c, at("2026-03-08T03:30:00Z"), now);
        assert_eq!(due.slot, Some(now));
        assert_eq!(check(&c, now, now).slot, None);
    }

    fn cadences() -> impl Strategy<Value = Cadence> {
        prop_oneof![
            Just(Cadence::Every(Every::Hour)),
            Just(Cadence::Every(Every::Day)),
            Just(Cadence::Every(Every::Week)),
            Just(Cadence::Every(Every::Month)),
            Just(cron("*/15 * * * *")),
            Just(cron("0 3 * * 1-5")),
            Just(cron("0 0 1 */3 *")),
        ]
    }

    proptest! {
        /// Whatever the gap, one call yields at most one slot, inside (anchor, now], and it
        /// is the latest missed one; once it is recorded nothing more is due; the next slot
        /// is always after now.
        #[test]
        fn one_run_per_call_and_next_after_now(
            cadence in cadences(),
            anchor_s in 1_600_000_000i64..1_900_000_000,
            gap_s in 0i64..(400 * 24 * 3600),
        ) {
            let anchor = Utc.timestamp_opt(anchor_s, 0).single().unwrap_or_default();
            let now = anchor + Duration::seconds(gap_s);
            let due = check(&cadence, anchor, now);
            if let Some(slot) = due.slot {
                prop_assert!(slot > anchor && slot <= now);
                prop_assert!(next_slot(&cadence, slot).is_some_and(|n| n > now));
                prop_assert_eq!(check(&cadence, slot, now).slot, None);
            }
            prop_assert!(due.next.is_some_and(|n| n > now));
        }
    }
}
