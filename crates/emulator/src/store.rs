//! Where the account lives: every object held pre-serialized (the exact bytes the API serves),
//! with small index metadata so a page of 100 is a lookup and a string concatenation.
//!
//! Each object type has a [`Table`]: records by id, one index ordered by `(created, seq)` (`seq`
//! is a store-wide insertion counter, the stable tie-break between objects created in the same
//! second), and per-parent indexes for child lists (lines of an invoice, payment methods of a
//! customer). Deleted objects stay in the table as their deleted stubs: retrievable, exported,
//! never listed.

use crate::kinds::{self, Kind, Order};
use crate::shapes;
use crate::Mode;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// Index key: `(created, seq)`. Newest first is descending order of this key.
pub type Key = (i64, u64);

/// One stored object.
#[derive(Debug, Clone)]
pub struct Record {
    /// Stripe id.
    pub id: Arc<str>,
    /// `created` (for types without one, the parent's `created`).
    pub created: i64,
    /// Store-wide insertion number: tie-break for equal `created`.
    pub seq: u64,
    /// The JSON the API serves for it (the deleted stub once deleted).
    pub json: Bytes,
    /// Whether the object was deleted (then `json` is its stub and lists leave it out).
    pub deleted: bool,
    /// Parent id for child types (invoice of a line item, customer of a payment method).
    pub parent: Option<Arc<str>>,
    /// Values captured for list filters, by query parameter (see [`Kind::filters`]).
    pub fields: Box<[(&'static str, Box<str>)]>,
}

impl Record {
    /// The record's index key.
    pub fn key(&self) -> Key {
        (self.created, self.seq)
    }

    /// The captured value of a filter field, as text (`true`/`false` for booleans).
    pub fn field(&self, param: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(p, _)| *p == param)
            .map(|(_, v)| &**v)
    }
}

/// All objects of one type.
#[derive(Debug)]
pub struct Table {
    /// What the type is.
    pub kind: &'static Kind,
    records: HashMap<Arc<str>, Record>,
    order: BTreeMap<Key, Arc<str>>,
    by_parent: HashMap<Arc<str>, BTreeMap<Key, Arc<str>>>,
}

impl Table {
    fn new(kind: &'static Kind) -> Self {
        Table {
            kind,
            records: HashMap::new(),
            order: BTreeMap::new(),
            by_parent: HashMap::new(),
        }
    }

    /// A record by id.
    pub fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id)
    }

    /// Number of records (deleted included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, oldest first (deleted included): the order of the export.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Record> + '_ {
        self.order.values().filter_map(|id| self.records.get(id))
    }

    /// Every record in no particular order (deleted included): for scans that sort what they keep,
    /// much cheaper than walking the ordered index.
    pub fn unordered(&self) -> impl Iterator<Item = &Record> + '_ {
        self.records.values()
    }

    /// The index to list from: the whole type, or one parent's children.
    pub fn index(&self, parent: Option<&str>) -> Option<&BTreeMap<Key, Arc<str>>> {
        match parent {
            None => Some(&self.order),
            Some(p) => self.by_parent.get(p),
        }
    }

    /// Ids of one parent's children, in insertion order.
    pub fn children(&self, parent: &str) -> impl Iterator<Item = &Record> + '_ {
        self.by_parent
            .get(parent)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|id| self.records.get(id))
    }
}

/// Where a list starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// From the beginning.
    Start,
    /// After this key, in list order (`starting_after`).
    After(Key),
    /// Before this key, in list order (`ending_before`).
    Before(Key),
}

/// One page request against an index.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// 1..=100.
    pub limit: usize,
    /// Where to start.
    pub cursor: Cursor,
    /// Lower bound on `created`.
    pub created_lo: Bound<i64>,
    /// Upper bound on `created`.
    pub created_hi: Bound<i64>,
    /// List order.
    pub order: Order,
}

/// A page: the records in list order and whether more lie beyond them.
#[derive(Debug)]
pub struct Page<'a> {
    /// Records, in list order.
    pub records: Vec<&'a Record>,
    /// Whether more records match beyond the page (in the direction walked).
    pub has_more: bool,
}

fn key_lo(b: Bound<i64>) -> Bound<Key> {
    match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(t) => Bound::Included((t, 0)),
        Bound::Excluded(t) => Bound::Included((t.saturating_add(1), 0)),
    }
}

fn key_hi(b: Bound<i64>) -> Bound<Key> {
    // seq starts at 1, so `(t, 0)` is never a key and Excluded((t, 0)) means "created < t".
    match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(t) => Bound::Excluded((t.saturating_add(1), 0)),
        Bound::Excluded(t) => Bound::Excluded((t, 0)),
    }
}

fn tighter_lo(a: Bound<Key>, b: Bound<Key>) -> Bound<Key> {
    use Bound::*;
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if y >= x {
                Excluded(y)
            } else {
                Included(x)
            }
        }
    }
}

fn tighter_hi(a: Bound<Key>, b: Bound<Key>) -> Bound<Key> {
    use Bound::*;
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.min(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if y <= x {
                Excluded(y)
            } else {
                Included(x)
            }
        }
    }
}

/// Whether `range(lo, hi)` is non-empty and would not panic (BTreeMap::range panics on an
/// inverted range).
fn range_ok(lo: Bound<Key>, hi: Bound<Key>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Unbounded, _) | (_, Unbounded) => true,
        (Included(a), Included(b)) => a <= b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) => a < b,
        (Excluded(a), Excluded(b)) => a < b,
    }
}

/// Walks `index` for one page, skipping deleted records and those `keep` rejects.
pub fn page<'a>(
    table: &'a Table,
    index: &'a BTreeMap<Key, Arc<str>>,
    req: &PageRequest,
    keep: impl Fn(&Record) -> bool,
) -> Page<'a> {
    let mut lo = key_lo(req.created_lo);
    let mut hi = key_hi(req.created_hi);
    // `forward` = walking ascending keys; `flip` = the walk runs against list order and the page
    // is reversed at the end (ending_before).
    let newest_first = req.order == Order::NewestFirst;
    let (forward, flip) = match req.cursor {
        Cursor::Start => (!newest_first, false),
        Cursor::After(k) => {
            if newest_first {
                hi = tighter_hi(hi, Bound::Excluded(k));
            } else {
                lo = tighter_lo(lo, Bound::Excluded(k));
            }
            (!newest_first, false)
        }
        Cursor::Before(k) => {
            if newest_first {
                lo = tighter_lo(lo, Bound::Excluded(k));
            } else {
                hi = tighter_hi(hi, Bound::Excluded(k));
            }
            (newest_first, true)
        }
    };
    let mut records = Vec::with_capacity(req.limit);
    let mut has_more = false;
    if range_ok(lo, hi) {
        let range = index.range((lo, hi));
        let iter: Box<dyn Iterator<Item = (&Key, &Arc<str>)>> = if forward {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        for (_, id) in iter {
            let Some(rec) = table.records.get(id) else {
                continue;
            };
            if rec.deleted || !keep(rec) {
                continue;
            }
            if records.len() == req.limit {
                has_more = true;
                break;
            }
            records.push(rec);
        }
    }
    if flip {
        records.reverse();
    }
    Page { records, has_more }
}

/// The whole account.
#[derive(Debug)]
pub struct Store {
    /// Test or live: the `livemode` of every object.
    pub mode: Mode,
    /// End of the generated history; the emulator's clock starts here.
    pub anchor: i64,
    /// The account's id (`acct_…`).
    pub account_id: String,
    /// `GET /v1/account` body.
    pub account: Bytes,
    /// `GET /v1/balance` body.
    pub balance: Bytes,
    tables: HashMap<&'static str, Table>,
    next_seq: u64,
}

impl Store {
    /// An empty store with one table per known kind.
    pub fn new(mode: Mode, anchor: i64, account_id: String) -> Self {
        let tables = kinds::KINDS
            .iter()
            .map(|k| (k.object, Table::new(k)))
            .collect();
        Store {
            mode,
            anchor,
            account_id,
            account: Bytes::from_static(b"{}"),
            balance: Bytes::from_static(b"{}"),
            tables,
            next_seq: 1,
        }
    }

    /// The table of an object type.
    pub fn table(&self, object: &str) -> Option<&Table> {
        self.tables.get(object)
    }

    /// A record by object type and id.
    pub fn get(&self, object: &str, id: &str) -> Option<&Record> {
        self.tables.get(object).and_then(|t| t.get(id))
    }

    /// The insertion counter the next stored object gets (part of the store's state: writes seed
    /// their ids with it).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Total number of records, deleted stubs included.
    pub fn len(&self) -> usize {
        self.tables.values().map(Table::len).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a new object (its `object` and `id` fields say what it is). `created` comes from the
    /// object, or `created_hint` for types without one (line items). `parent` files it under a
    /// parent for child lists. Returns its id, or `None` for an object of unknown type or
    /// without an id (a generator bug; nothing is stored).
    pub fn insert(
        &mut self,
        value: &Value,
        parent: Option<&str>,
        created_hint: i64,
    ) -> Option<Arc<str>> {
        let object = value.get("object")?.as_str()?;
        let table = self.tables.get_mut(object)?;
        let id: Arc<str> = Arc::from(value.get("id")?.as_str()?);
        let created = value
            .get("created")
            .and_then(Value::as_i64)
            .unwrap_or(created_hint);
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut buf = Vec::with_capacity(2048);
        serde_json::to_writer(&mut buf, value).ok()?;
        // Boxed slice: exact size. Bytes::from(Vec) would keep the Vec's spare capacity, which
        // cost ~15% more memory across a large account.
        let json = Bytes::from(buf.into_boxed_slice());
        let fields = capture_fields(table.kind, value);
        let parent: Option<Arc<str>> = parent.map(Arc::from);
        let key = (created, seq);
        if let Some(p) = &parent {
            table
                .by_parent
                .entry(p.clone())
                .or_default()
                .insert(key, id.clone());
        }
        table.order.insert(key, id.clone());
        table.records.insert(
            id.clone(),
            Record {
                id: id.clone(),
                created,
                seq,
                json,
                deleted: false,
                parent,
                fields,
            },
        );
        Some(id)
    }

    /// Stores pre-serialized JSON (events are assembled as text around an object's bytes).
    pub fn insert_bytes(
        &mut self,
        object: &str,
        id: &str,
        created: i64,
        json: Bytes,
        fields: Vec<(&'static str, Box<str>)>,
    ) -> Option<Arc<str>> {
        let table = self.tables.get_mut(object)?;
        let id: Arc<str> = Arc::from(id);
        let seq = self.next_seq;
        self.next_seq += 1;
        table.order.insert((created, seq), id.clone());
        table.records.insert(
            id.clone(),
            Record {
                id: id.clone(),
                created,
                seq,
                json,
                deleted: false,
                parent: None,
                fields: fields.into_boxed_slice(),
            },
        );
        Some(id)
    }

    /// Replaces a stored object's JSON (same type and id), keeping its place in every index.
    /// Returns false when no such object is stored.
    pub fn replace(&mut self, value: &Value) -> bool {
        let (Some(object), Some(id)) = (
            value.get("object").and_then(Value::as_str),
            value.get("id").and_then(Value::as_str),
        ) else {
            return false;
        };
        let Some(table) = self.tables.get_mut(object) else {
            return false;
        };
        let fields = capture_fields(table.kind, value);
        let Some(rec) = table.records.get_mut(id) else {
            return false;
        };
        let Ok(json) = serde_json::to_vec(value) else {
            return false;
        };
        rec.json = Bytes::from(json.into_boxed_slice());
        rec.fields = fields;
        true
    }

    /// Marks an object deleted: from now on it is served as its deleted stub and never listed.
    /// Returns false when the type has no deleted stub or no such object is stored.
    pub fn delete(&mut self, object: &str, id: &str) -> bool {
        let Some(table) = self.tables.get_mut(object) else {
            return false;
        };
        let Some(stub_key) = table.kind.deleted_digest else {
            return false;
        };
        let Some(rec) = table.records.get_mut(id) else {
            return false;
        };
        rec.json = deleted_stub(stub_key, object, id);
        rec.deleted = true;
        true
    }

    /// The export: object type → every object exactly as served (deleted ones as stubs), oldest
    /// first, plus the account and the balance. Built by concatenation, so it stays fast.
    pub fn export_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(b"{\"account\":[");
        out.extend_from_slice(&self.account);
        out.extend_from_slice(b"],\"balance\":[");
        out.extend_from_slice(&self.balance);
        out.push(b']');
        for kind in kinds::KINDS {
            let Some(table) = self.tables.get(kind.object) else {
                continue;
            };
            out.extend_from_slice(b",\"");
            out.extend_from_slice(kind.object.as_bytes());
            out.extend_from_slice(b"\":[");
            for (i, rec) in table.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&rec.json);
            }
            out.push(b']');
        }
        out.push(b'}');
        out
    }
}

/// The deleted stub of an object: `{"deleted":true,"id":…,"object":…}` in the digest's order.
pub fn deleted_stub(stub_key: &str, object: &str, id: &str) -> Bytes {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id.to_string()));
    m.insert("object".into(), Value::String(object.to_string()));
    m.insert("deleted".into(), Value::Bool(true));
    let v = shapes::finish(stub_key, m);
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn capture_fields(kind: &Kind, value: &Value) -> Box<[(&'static str, Box<str>)]> {
    let mut out = Vec::new();
    for f in kind.filters {
        let mut v = value;
        let mut found = true;
        for k in f.path {
            match v.get(k) {
                Some(next) => v = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let text: Option<Box<str>> = match v {
            Value::String(s) => Some(s.as_str().into()),
            Value::Bool(b) => Some(if *b { "true".into() } else { "false".into() }),
            Value::Number(n) => Some(n.to_string().into()),
            Value::Object(o) => o.get("id").and_then(Value::as_str).map(Into::into),
            _ => None,
        };
        if let Some(t) = text {
            out.push((f.param, t));
        }
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store_with(n: i64) -> Store {
        let mut s = Store::new(Mode::Test, 1_000, "acct_x".into());
        for i in 0..n {
            // Pairs of objects share a second, to exercise the tie-break.
            let v = json!({"id": format!("cus_{i}"), "object": "customer", "created": 100 + i / 2});
            s.insert(&v, None, 0);
        }
        s
    }

    fn ids(p: &Page<'_>) -> Vec<String> {
        p.records.iter().map(|r| r.id.to_string()).collect()
    }

    fn req(limit: usize, cursor: Cursor) -> PageRequest {
        PageRequest {
            limit,
            cursor,
            created_lo: Bound::Unbounded,
            created_hi: Bound::Unbounded,
            order: Order::NewestFirst,
        }
    }

    #[test]
    fn pages_walk_newest_first_with_the_insertion_tie_break() {
        let s = store_with(5);
        let t = s.table("customer").expect("table");
        let idx = t.index(None).expect("index");
        let p = page(t, idx, &req(2, Cursor::Start), |_| true);
        assert_eq!(ids(&p), ["cus_4", "cus_3"]);
        assert!(p.has_more);
        let k = t.get("cus_3").expect("rec").key();
        let p = page(t, idx, &req(10, Cursor::After(k)), |_| true);
        assert_eq!(ids(&p), ["cus_2", "cus_1", "cus_0"]);
        assert!(!p.has_more);
        let k = t.get("cus_1").expect("rec").key();
        let p = page(t, idx, &req(2, Cursor::Before(k)), |_| true);
        assert_eq!(ids(&p), ["cus_3", "cus_2"]);
        assert!(p.has_more);
    }

    #[test]
    fn created_bounds_and_inverted_ranges() {
        let s = store_with(6);
        let t = s.table("customer").expect("table");
        let idx = t.index(None).expect("index");
        let mut r = req(100, Cursor::Start);
        r.created_lo = Bound::Included(101);
        r.created_hi = Bound::Excluded(102);
        assert_eq!(ids(&page(t, idx, &r, |_| true)), ["cus_3", "cus_2"]);
        r.created_lo = Bound::Excluded(102);
        r.created_hi = Bound::Included(101);
        assert!(page(t, idx, &r, |_| true).records.is_empty());
    }

    #[test]
    fn deleted_objects_become_stubs_and_leave_lists() {
        let mut s = store_with(3);
        assert!(s.delete("customer", "cus_1"));
        let t = s.table("customer").expect("table");
        let rec = t.get("cus_1").expect("still stored");
        assert_eq!(
            &rec.json[..],
            br#"{"deleted":true,"id":"cus_1","object":"customer"}"#
        );
        let idx = t.index(None).expect("index");
        assert_eq!(
            ids(&page(t, idx, &req(10, Cursor::Start), |_| true)),
            ["cus_2", "cus_0"]
        );
    }
}
