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
