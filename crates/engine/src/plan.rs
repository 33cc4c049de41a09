//! Planning a run: which lists to walk and what to keep from each.
//!
//! Children are read through their parent, so choosing `invoice_line_items` alone still walks
//! `/v1/invoices` — without storing the invoices. Planning is a pure function of the chosen data
//! types; it is tested without any I/O.

use cls_catalog::{DataType, CATALOG};
use cls_destination::Checkpoint;
use cls_source::Window;

/// One top-level list walked by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The top-level data type whose list is walked.
    pub walk: &'static DataType,
    /// Whether the walked objects themselves are stored (false when only their children were
    /// chosen).
    pub store: bool,
    /// Chosen child data types read from each walked object.
    pub children: Vec<&'static DataType>,
}

impl Stream {
    /// The data types this stream writes, parent first.
    pub fn stored_types(&self) -> Vec<&'static DataType> {
        let mut out = Vec::new();
        if self.store {
            out.push(self.walk);
        }
        out.extend(self.children.iter().copied());
        out
    }

    /// The data type that requests of the walk are counted under: the walked type when it is
    /// stored, else its first chosen child.
    pub fn accounting_type(&self) -> &'static DataType {
        if self.store {
            self.walk
        } else {
            self.children.first().copied().unwrap_or(self.walk)
        }
    }
}

impl Stream {
    /// The key a stream's checkpoints are saved under: the data types it stores, so a run that
    /// chooses differently (the parent alone, then parent and children) never resumes windows
    /// walked for another selection.
    pub fn checkpoint_key(&self) -> String {
        self.stored_types()
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// Where a stream's backfill begins when an interrupted run is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillStart {
    /// Nothing usable saved: walk the whole range from the newest object.
    Fresh,
    /// The interrupted run finished this stream already.
    Done,
    /// The interrupted run left these windows unfinished, each with the cursor of its last
    /// written page.
    Resume(Vec<(Window, Option<String>)>),
}

/// Decides from a stream's saved checkpoints how an interrupted run over `[0, end)` continues
/// it. Checkpoints that are unreadable or do not tile the range exactly (written by another run)
/// mean a fresh start: resuming from them could skip objects.
pub fn backfill_start(checkpoints: &[Checkpoint], end: i64) -> BackfillStart {
    let mut windows = Vec::with_capacity(checkpoints.len());
    for cp in checkpoints {
        match cp.window.parse::<Window>() {
            Ok(w) => windows.push((w, cp)),
            Err(_) => return BackfillStart::Fresh,
        }
    }
    windows.sort_by_key(|(w, _)| w.start);
    // A run's windows tile its whole range `[0, end)`: anything else (gaps, overlaps, another
    // end) was written by some other run, and resuming from it could skip objects.
    let tiled = windows.first().is_some_and(|(w, _)| w.start == 0)
        && windows.last().is_some_and(|(w, _)| w.end == end)
        && windows
            .windows(2)
            .all(|pair| pair[0].0.end == pair[1].0.start);
    if !tiled {
        return BackfillStart::Fresh;
    }
    let open: Vec<(Window, Option<String>)> = windows
        .into_iter()
        .filter(|(_, cp)| !cp.done)
        .map(|(w, cp)| (w, cp.cursor.clone()))
        .collect();
    if open.is_empty() {
        BackfillStart::Done
    } else {
        BackfillStart::Resume(open)
    }
}

/// The streams for a set of chosen data types, in catalog order.
pub fn plan_streams(chosen: &[&'static DataType]) -> Vec<Stream> {
    let is_chosen = |t: &DataType| chosen.iter().any(|c| c.name == t.name);
    let mut streams = Vec::new();
    for t in CATALOG.iter().filter(|t| t.parent.is_none()) {
        let children: Vec<&'static DataType> = CATALOG
            .iter()
            .filter(|c| c.parent.is_some_and(|p| p.data_type == t.name) && is_chosen(c))
            .collect();
        let store = is_chosen(t);
        if store || !children.is_empty() {
            streams.push(Stream {
                walk: t,
                store,
                children,
            });
        }
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(types: &[&DataType]) -> Vec<&'static str> {
        types.iter().map(|t| t.name).collect()
    }

    fn chosen(list: &str) -> Vec<&'static DataType> {
        cls_catalog::parse_list(list).expect("valid list")
    }

    #[test]
    fn a_parent_and_its_child_share_one_walk() {
        let s = plan_streams(&chosen("invoices,invoice_line_items"));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].walk.name, "invoices");
        assert!(s[0].store);
        assert_eq!(names(&s[0].children), vec!["invoice_line_items"]);
    }

    #[test]
    fn a_child_alone_walks_its_parent_without_storing_it() {
        let s = plan_streams(&chosen("subscription_items"));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].walk.name, "subscriptions");
        assert!(!s[0].store);
        assert_eq!(names(&s[0].stored_types()), vec!["subscription_items"]);
        assert_eq!(s[0].accounting_type().name, "subscription_items");
    }

    #[test]
    fn everything_plans_every_top_level_list_once() {
        let all: Vec<&'static DataType> = CATALOG.iter().collect();
        let s = plan_streams(&all);
        let top = CATALOG.iter().filter(|t| t.parent.is_none()).count();
        assert_eq!(s.len(), top);
        let stored: usize = s.iter().map(|x| x.stored_types().len()).sum();
        assert_eq!(
            stored,
            CATALOG.len(),
            "every chosen type is stored exactly once"
        );
    }

    fn cp(window: &str, cursor: Option<&str>, done: bool) -> Checkpoint {
        Checkpoint {
            data_type: "customers".into(),
            window: window.into(),
            cursor: cursor.map(str::to_string),
            done,
        }
    }

    #[test]
    fn no_checkpoints_start_fresh_and_finished_ones_are_done() {
        assert_eq!(backfill_start(&[], 20), BackfillStart::Fresh);
        assert_eq!(
            backfill_start(
                &[cp("0..10", None, true), cp("10..20", Some("c"), true)],
                20
            ),
            BackfillStart::Done
        );
    }

    #[test]
    fn unfinished_windows_resume_at_their_cursor() {
        let got = backfill_start(
            &[
                cp("10..20", Some("cus_b"), false),
                cp("0..10", None, false),
                cp("20..30", Some("cus_z"), true),
            ],
            30,
        );
        let w = |a, b| Window::new(a, b).expect("window");
        assert_eq!(
            got,
            BackfillStart::Resume(vec![(w(0, 10), None), (w(10, 20), Some("cus_b".into()))])
        );
    }

    #[test]
    fn damaged_or_overlapping_checkpoints_start_fresh() {
        assert_eq!(
            backfill_start(&[cp("x..9", None, false)], 9),
            BackfillStart::Fresh
        );
        assert_eq!(
            backfill_start(&[cp("0..10", None, false), cp("5..20", None, false)], 20),
            BackfillStart::Fresh
        );
        // A gap, or another run's end, is not this run's to resume.
        assert_eq!(
            backfill_start(&[cp("0..10", None, false), cp("12..20", None, false)], 20),
            BackfillStart::Fresh
        );
        assert_eq!(
            backfill_start(&[cp("0..10", None, true), cp("10..20", None, true)], 25),
            BackfillStart::Fresh
        );
    }

    #[test]
    fn checkpoint_keys_follow_what_is_stored() {
        let both = plan_streams(&chosen("subscriptions,subscription_items"));
        let items = plan_streams(&chosen("subscription_items"));
        assert_eq!(both[0].checkpoint_key(), "subscriptions+subscription_items");
        assert_eq!(items[0].checkpoint_key(), "subscription_items");
    }

    proptest::proptest! {
        /// Whatever sequence of splits a run made, its checkpoints partition the original range:
        /// resuming them walks every second exactly once.
        #[test]
        fn windows_from_any_splits_partition_the_range(
            cuts in proptest::collection::vec((0usize..64, 0i64..1_000_000), 0..40),
            finished in proptest::collection::vec(proptest::bool::ANY, 64),
        ) {
            let whole = Window::new(0, 1_000_000).expect("window");
            let mut windows = vec![whole];
            for (pick, at) in cuts {
                let i = pick % windows.len();
                let w = windows[i];
                let last = w.start + at % w.len();
                if let Some((keep, new)) = w.split_remaining(last, None) {
                    windows[i] = keep;
                    windows.push(new);
                }
            }
            let cps: Vec<Checkpoint> = windows
                .iter()
                .enumerate()
                .map(|(i, w)| cp(&w.to_string(), None, finished[i % finished.len()]))
                .collect();
            let mut sorted = windows.clone();
            sorted.sort();
            proptest::prop_assert_eq!(sorted.first().map(|w| w.start), Some(0));
            proptest::prop_assert_eq!(sorted.last().map(|w| w.end), Some(1_000_000));
            for pair in sorted.windows(2) {
                proptest::prop_assert_eq!(pair[0].end, pair[1].start);
            }
            match backfill_start(&cps, 1_000_000) {
                BackfillStart::Fresh => proptest::prop_assert!(false, "valid checkpoints"),
                BackfillStart::Done => proptest::prop_assert!(cps.iter().all(|c| c.done)),
                BackfillStart::Resume(open) => {
                    let expected = cps.iter().filter(|c| !c.done).count();
                    proptest::prop_assert_eq!(open.len(), expected);
                }
            }
        }
    }

    #[test]
    fn unrelated_types_are_not_walked() {
        let s = plan_streams(&chosen("customers"));
        assert_eq!(s.len(), 1);
        assert!(s[0].children.is_empty());
    }
}
