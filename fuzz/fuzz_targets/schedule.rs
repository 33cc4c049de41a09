//! Schedules: a cadence name or a cron expression, as typed into the dashboard or the API.
//! Parsing never panics; what parses prints back as it was written and parses again to the
//! same value; its slots obey the schedule rules (the latest slot is not after now, the next
//! one is after it, at most one run is due and it lies in (anchor, now]).
#![no_main]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cls_control::model::{Cadence, CronExpression, Every};
use cls_control::schedule::{check, latest_slot, next_slot};
use libfuzzer_sys::fuzz_target;

/// 2026-03-11T03:30:00Z; each input moves it by up to ±68 years.
const BASE: i64 = 1_773_199_800;

fn instant(offset: i32) -> DateTime<Utc> {
    Utc.timestamp_opt(BASE + i64::from(offset), 0)
        .single()
        .expect("in range")
}

fn obeys_the_rules(cadence: &Cadence, now: DateTime<Utc>, gap: u16) {
    let latest = latest_slot(cadence, now);
    if let Some(l) = latest {
        assert!(l <= now, "{cadence}: latest slot {l} is after {now}");
    }
    let next = next_slot(cadence, now);
    if let Some(n) = next {
        assert!(n > now, "{cadence}: next slot {n} is not after {now}");
    }
    let anchor = now - Duration::minutes(i64::from(gap));
    let due = check(cadence, anchor, now);
    if let Some(slot) = due.slot {
        assert!(
            slot > anchor && slot <= now,
            "{cadence}: slot {slot} outside ({anchor}, {now}]"
        );
        assert_eq!(check(cadence, slot, now).slot, None, "{cadence}: due twice");
    }
}

/// A deterministic spread of instants and gaps from the text itself, so that the whole input
/// is the text (and seeds are plain expressions).
fn spread(text: &str) -> (i32, u16) {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    ((h >> 16) as i32, h as u16)
}

fuzz_target!(|text: &str| {
    let (offset, gap) = spread(text);
    let now = instant(offset);

    if let Ok(every) = text.parse::<Every>() {
        assert_eq!(every.as_str(), text);
        obeys_the_rules(&Cadence::Every(every), now, gap);
    }

    match CronExpression::parse(text) {
        Ok(cron) => {
            assert_eq!(cron.as_str(), text.trim(), "kept as written");
            assert!(cron.schedule().is_some(), "what parses has a schedule");
            let again = CronExpression::parse(&cron.to_string()).expect("its text parses again");
            assert_eq!(again, cron);
            obeys_the_rules(&Cadence::Cron(cron), now, gap);
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.contains("five fields"), "{msg:?} says what to write");
        }
    }
});
