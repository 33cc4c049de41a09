//! One page of a top-level list.
//!
//! Stripe lists newest first; `starting_after=<last id>` continues the walk toward older
//! objects. Within a window the walk ends when a page says `has_more: false`.

use cls_catalog::DataType;
use cls_stripe::{ListPage, RequestCounters, StripeClient, StripeError};

use crate::window::Window;

/// The largest page Stripe serves.
pub const PAGE_SIZE: u32 = 100;

/// The query for one page of `data_type`'s list: full pages, the catalog's fixed parameters,
/// the window (when the list can filter by `created`) and the cursor.
pub fn page_query(
    data_type: &DataType,
    window: Option<Window>,
    starting_after: Option<&str>,
) -> Vec<(String, String)> {
    let mut q = vec![("limit".to_string(), PAGE_SIZE.to_string())];
    for (k, v) in data_type.list_params {
        q.push(((*k).to_string(), (*v).to_string()));
    }
    if let (Some(w), true) = (window, data_type.created_filter()) {
        q.push(("created[gte]".to_string(), w.start.to_string()));
        q.push(("created[lt]".to_string(), w.end.to_string()));
    }
    if let Some(id) = starting_after {
        q.push(("starting_after".to_string(), id.to_string()));
    }
    q
}

/// Fetches one page of a top-level list.
pub async fn fetch_page(
    client: &StripeClient,
    data_type: &DataType,
    window: Option<Window>,
    starting_after: Option<&str>,
    counters: &RequestCounters,
) -> Result<ListPage, StripeError> {
    let query = page_query(data_type, window, starting_after);
    client.list(data_type.list_path, &query, counters).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
        q.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn subscriptions_ask_for_every_status_in_full_pages() {
        let t = cls_catalog::find("subscriptions").expect("in catalog");
        let q = page_query(t, None, None);
        assert_eq!(get(&q, "status"), Some("all"));
        assert_eq!(get(&q, "limit"), Some("100"));
        assert_eq!(get(&q, "starting_after"), None);
    }

    #[test]
    fn windows_become_half_open_created_filters() {
        let t = cls_catalog::find("customers").expect("in catalog");
        let w = Window::new(100, 200);
        let q = page_query(t, w, Some("cus_9"));
        assert_eq!(get(&q, "created[gte]"), Some("100"));
        assert_eq!(get(&q, "created[lt]"), Some("200"));
        assert_eq!(get(&q, "starting_after"), Some("cus_9"));
    }
}
