//! Child lists: objects that belong to a parent (an invoice's lines, a subscription's items, a
//! customer's payment methods).
//!
//! Stripe embeds the first page of some child lists in the parent (`invoice.lines`,
//! `subscription.items`) with its own `has_more`. Reading that page costs nothing; the child
//! list is fetched only when it says `has_more`, continuing after its last item. Children that
//! are not embedded (a customer's payment methods) always cost one walk per parent.

use cls_catalog::DataType;
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use serde_json::Value;

use crate::list::PAGE_SIZE;

/// What a parent object says about one of its child lists.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedChildren {
    /// Children embedded in the parent (its first page), in Stripe's order.
    pub items: Vec<Value>,
    /// Whether the rest must be fetched from the child list.
    pub fetch_more: bool,
    /// Id of the last embedded child, to continue after (`None`: start from the beginning).
    pub after: Option<String>,
}

/// Reads the children embedded in `parent` for the child data type `child`.
///
/// A child type without an embedded field always needs fetching; an embedded list that is
/// missing or malformed is treated the same way, so a surprise in the parent's shape costs a
/// request rather than losing children.
pub fn embedded_children(child: &DataType, parent: &Value) -> EmbeddedChildren {
    let fetch_all = EmbeddedChildren {
        items: Vec::new(),
        fetch_more: true,
        after: None,
    };
    let Some(field) = child.parent.and_then(|p| p.embedded_field) else {
        return fetch_all;
    };
    let Some(list) = parent.get(field) else {
        return fetch_all;
    };
    let (Some(Value::Array(items)), Some(has_more)) = (
        list.get("data"),
        list.get("has_more").and_then(Value::as_bool),
    ) else {
        return fetch_all;
    };
    let after = items
        .last()
        .and_then(|i| i.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    EmbeddedChildren {
        items: items.clone(),
        // An empty embedded page that claims more cannot give a cursor: fetch from the start.
        fetch_more: has_more,
        after,
    }
}

/// Where the children of `parent_id` are listed: the path, and the query parameter naming the
/// parent when the list is not nested under the parent's path (`subscription=sub_…`). `None`
/// for a data type that is not a child.
pub fn child_list(child: &DataType, parent_id: &str) -> Option<(String, Vec<(String, String)>)> {
    let parent = child.parent?;
    Some(match parent.parent_param {
        Some(param) => (
            parent.list_path.to_string(),
            vec![(param.to_string(), parent_id.to_string())],
        ),
        None => (parent.list_path.replace("{id}", parent_id), Vec::new()),
    })
}

/// The path and query of a child list page for `parent_id`.
fn child_request(
    child: &DataType,
    parent_id: &str,
    after: Option<&str>,
) -> Option<(String, Vec<(String, String)>)> {
    let (path, mut query) = child_list(child, parent_id)?;
    query.insert(0, ("limit".to_string(), PAGE_SIZE.to_string()));
    if let Some(id) = after {
        query.push(("starting_after".to_string(), id.to_string()));
    }
    Some((path, query))
}

/// Walks a child list of `parent_id` to its end, starting after `after`.
pub async fn fetch_children(
    client: &StripeClient,
    child: &DataType,
    parent_id: &str,
    after: Option<String>,
    counters: &RequestCounters,
) -> Result<Vec<Value>, StripeError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let Some((path, query)) = child_request(child, parent_id, cursor.as_deref()) else {
            return Ok(out);
        };
        let page = client.list(&path, &query, counters).await?;
        let last = page
            .data
            .last()
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        out.extend(page.data);
        match (page.has_more, last) {
            (true, Some(id)) => cursor = Some(id),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines() -> &'static DataType {
        cls_catalog::find("invoice_line_items").expect("in catalog")
    }

    #[test]
    fn a_complete_embedded_page_needs_no_request() {
        let inv = json!({"id": "in_1", "lines": {"object": "list", "data": [{"id": "il_1"}], "has_more": false}});
        let got = embedded_children(lines(), &inv);
        assert_eq!(got.items.len(), 1);
        assert!(!got.fetch_more);
    }

    #[test]
    fn has_more_continues_after_the_last_embedded_child() {
        let inv = json!({"id": "in_1", "lines": {"data": [{"id": "il_1"}, {"id": "il_2"}], "has_more": true}});
        let got = embedded_children(lines(), &inv);
        assert!(got.fetch_more);
        assert_eq!(got.after.as_deref(), Some("il_2"));
    }

    #[test]
    fn a_missing_embedded_list_is_fetched_whole() {
        let got = embedded_children(lines(), &json!({"id": "in_1"}));
        assert!(got.fetch_more);
        assert_eq!(got.after, None);
        let pm = cls_catalog::find("payment_methods").expect("in catalog");
        assert!(embedded_children(pm, &json!({"id": "cus_1"})).fetch_more);
    }

    #[test]
    fn child_requests_nest_or_name_the_parent() {
        let (path, q) = child_request(lines(), "in_1", Some("il_2")).expect("a child type");
        assert_eq!(path, "/v1/invoices/in_1/lines");
        assert!(q.contains(&("starting_after".into(), "il_2".into())));
        let items = cls_catalog::find("subscription_items").expect("in catalog");
        let (path, q) = child_request(items, "sub_1", None).expect("a child type");
        assert_eq!(path, "/v1/subscription_items");
        assert!(q.contains(&("subscription".into(), "sub_1".into())));
    }
}
