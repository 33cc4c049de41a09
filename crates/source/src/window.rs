//! Windows of `created`: the unit a backfill walks and checkpoints.
//!
//! A window is the half-open range `[start, end)` of unix seconds, sent to Stripe as
//! `created[gte]=start&created[lt]=end`. Half-open bounds make adjacent windows disjoint even
//! when many objects share one second at the edge: an object created at second `t` belongs to
//! exactly the window whose range holds `t`.

use std::fmt;
use std::str::FromStr;

/// A half-open range of `created` seconds, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First second included.
    pub start: i64,
    /// First second excluded.
    pub end: i64,
}

impl Window {
    /// A window `[start, end)`; `None` when it would be empty.
    pub fn new(start: i64, end: i64) -> Option<Window> {
        (start < end).then_some(Window { start, end })
    }

    /// Every object Stripe can hold that was created before `end`: from the unix epoch on.
    pub fn everything_before(end: i64) -> Window {
        Window {
            start: 0,
            end: end.max(1),
        }
    }

    /// Number of seconds covered.
    pub fn len(&self) -> i64 {
        self.end - self.start
    }

    /// A window always holds at least one second.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `created` falls in the window.
    pub fn contains(&self, created: i64) -> bool {
        self.start <= created && created < self.end
    }

    /// Splits the window into two halves, or `None` when it is a single second (objects created
    /// in the same second cannot be separated by `created` and must be walked with a cursor).
    pub fn split(&self) -> Option<(Window, Window)> {
        if self.len() < 2 {
            return None;
        }
        let mid = self.start + self.len() / 2;
        Some((
            Window {
                start: self.start,
                end: mid,
            },
            Window {
                start: mid,
                end: self.end,
            },
        ))
    }

    /// Splits off the untouched older part of a window that a newest-first walk is in.
    ///
    /// The walk has seen every object newer than `last_created` and some created exactly at
    /// `last_created`. What is left is `[start, last_created]`; it is cut at a second `mid` in
    /// `(start, last_created]`, so the walk keeps `[mid, end)` — which still holds
    /// `last_created`, whose remaining ties only its cursor can reach — and `[start, mid)` is
    /// handed to a new walk. `hint`, when inside the left part, is where the cut goes instead
    /// (the account's creation time: one cut separates the empty years before it, where
    /// halving would probe them one empty page at a time). Otherwise the left part is halved.
    /// `None` when the left part is a single second (or `last_created` is outside the window).
    pub fn split_remaining(
        &self,
        last_created: i64,
        hint: Option<i64>,
    ) -> Option<(Window, Window)> {
        if !self.contains(last_created) || last_created - self.start < 1 {
            return None;
        }
        let half = self.start + (last_created - self.start + 1) / 2;
        let mid = match hint {
            Some(h) if self.start < h && h <= last_created => h,
            _ => half,
        };
        Some((
            Window {
                start: mid,
                end: self.end,
            },
            Window {
                start: self.start,
                end: mid,
            },
        ))
    }

    /// About how many objects remain for a newest-first walk that just read a page of
    /// `page_len` objects created from `last_created` up to `first_created`: the page's density
    /// times the seconds left, which start at `floor` when that is inside the window (nothing
    /// is expected before the account existed). Stripe accounts grow over time, so older
    /// seconds tend to be sparser and this errs high.
    pub fn estimated_remaining(
        &self,
        page_len: usize,
        first_created: i64,
        last_created: i64,
        floor: Option<i64>,
    ) -> f64 {
        let from = floor.map_or(self.start, |f| f.clamp(self.start, self.end));
        let left = (last_created - from + 1).max(0) as f64;
        let spread = (first_created - last_created + 1).max(1) as f64;
        page_len as f64 * left / spread
    }

    /// How far a newest-first walk has come when the last object seen was created at `created`:
    /// 0.0 at the start of the walk (newest end), 1.0 at the oldest end.
    pub fn walked_fraction(&self, created: i64) -> f64 {
        let done = (self.end - created.clamp(self.start, self.end)) as f64;
        (done / self.len() as f64).clamp(0.0, 1.0)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// Error for a window written wrongly in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a window: expected `<start>..<end>` with start < end (unix seconds)")]
pub struct BadWindow(pub String);

impl FromStr for Window {
    type Err = BadWindow;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadWindow(s.to_string());
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let start = a.parse().map_err(|_| bad())?;
        let end = b.parse().map_err(|_| bad())?;
        Window::new(start, end).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_halves_are_disjoint_and_cover() {
        let w = Window::new(10, 21).expect("non-empty");
        let (a, b) = w.split().expect("splittable");
        assert_eq!((a.start, a.end, b.start, b.end), (10, 15, 15, 21));
        for t in 5..25 {
            let hits = [a, b].iter().filter(|x| x.contains(t)).count();
            assert_eq!(hits, usize::from(w.contains(t)), "second {t}");
        }
    }

    #[test]
    fn a_single_second_cannot_split() {
        assert_eq!(Window::new(7, 8).expect("one second").split(), None);
        assert_eq!(Window::new(8, 8), None);
    }

    #[test]
    fn split_remaining_keeps_the_cursor_second_and_hands_off_older_seconds() {
        let w = Window::new(0, 100).expect("non-empty");
        let (keep, new) = w.split_remaining(40, None).expect("splittable");
        assert_eq!((keep.start, keep.end, new.start, new.end), (20, 100, 0, 20));
        assert!(
            keep.contains(40),
            "ties at the cursor's second stay with the cursor"
        );
        // A hint inside the older part moves the cut there.
        let (keep, new) = w.split_remaining(40, Some(5)).expect("splittable");
        assert_eq!((keep.start, new.end), (5, 5));
        // Also when it is in the newer half: all before it is expected empty.
        let (keep, new) = w.split_remaining(40, Some(30)).expect("splittable");
        assert_eq!((keep.start, new.end), (30, 30));
        // A hint outside is ignored.
        let (keep, _) = w.split_remaining(40, Some(90)).expect("splittable");
        assert_eq!(keep.start, 20);
        let (keep, _) = w.split_remaining(40, Some(0)).expect("splittable");
        assert_eq!(keep.start, 20);
    }

    #[test]
    fn nothing_to_split_when_the_rest_is_one_second_or_outside() {
        let w = Window::new(10, 20).expect("non-empty");
        assert_eq!(w.split_remaining(10, None), None, "only second 10 is left");
        assert_eq!(w.split_remaining(25, None), None, "outside the window");
        assert!(w.split_remaining(11, None).is_some());
    }

    #[test]
    fn remaining_objects_follow_the_page_density() {
        let w = Window::new(0, 1000).expect("non-empty");
        // 100 objects over 10 seconds, 500 seconds left: about 5,000 objects.
        assert_eq!(w.estimated_remaining(100, 509, 500, None), 5010.0);
        // Nothing is expected before the account existed.
        assert_eq!(w.estimated_remaining(100, 509, 500, Some(450)), 510.0);
        // All in one second: the spread counts as one second.
        assert_eq!(w.estimated_remaining(100, 500, 500, Some(500)), 100.0);
    }

    proptest::proptest! {
        /// Splits never lose or duplicate a second: the kept and handed-off windows are
        /// disjoint and cover the original, and the cursor's second stays with the cursor.
        #[test]
        fn splits_are_disjoint_covering_and_keep_the_cursor(
            start in -1000i64..1000,
            len in 1i64..5000,
            at in 0i64..5000,
            hint in proptest::option::of(-2000i64..7000),
        ) {
            let w = Window::new(start, start + len).expect("non-empty");
            let last = start + at % len;
            if let Some((keep, new)) = w.split_remaining(last, hint) {
                proptest::prop_assert_eq!(new.start, w.start);
                proptest::prop_assert_eq!(new.end, keep.start);
                proptest::prop_assert_eq!(keep.end, w.end);
                proptest::prop_assert!(new.start < new.end && keep.start < keep.end);
                proptest::prop_assert!(keep.contains(last));
            } else {
                proptest::prop_assert!(last == w.start);
            }
        }
    }

    #[test]
    fn display_and_parse_round_trip() {
        let w = Window::new(1_600_000_000, 1_700_000_000).expect("non-empty");
        assert_eq!(w.to_string().parse::<Window>(), Ok(w));
        assert!("5..5".parse::<Window>().is_err());
        assert!("x..5".parse::<Window>().is_err());
        assert!("17".parse::<Window>().is_err());
    }

    #[test]
    fn walked_fraction_runs_from_newest_to_oldest() {
        let w = Window::new(0, 100).expect("non-empty");
        assert_eq!(w.walked_fraction(100), 0.0);
        assert_eq!(w.walked_fraction(75), 0.25);
        assert_eq!(w.walked_fraction(-3), 1.0);
    }
}
