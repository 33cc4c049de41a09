//! Planning a run: which lists to walk and what to keep from each.
//!
//! Children are read through their parent, so choosing `invoice_line_items` alone still walks
//! `/v1/invoices` — without storing the invoices. Planning is a pure function of the chosen data
//! types; it is tested without any I/O.

use cls_catalog::{DataType, CATALOG};

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

    #[test]
    fn unrelated_types_are_not_walked() {
        let s = plan_streams(&chosen("customers"));
        assert_eq!(s.len(), 1);
        assert!(s[0].children.is_empty());
    }
}
