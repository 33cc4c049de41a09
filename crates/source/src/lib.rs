//! The Stripe source: how pages of each data type are read from Stripe.
//!
//! The source knows Stripe's list semantics and nothing about databases:
//! - [`window`]: a `created` range `[start, end)` and the planning of disjoint windows;
//! - [`list`]: one page of a top-level list, walked newest first within a window, with the
//!   catalog's fixed parameters (`status=all` for subscriptions);
//! - [`children`]: child objects (invoice lines, subscription items, a customer's payment
//!   methods), read from the parent's embedded first page and fetched only when that page says
//!   `has_more`.

pub mod children;
pub mod list;
pub mod window;

pub use children::{child_list, embedded_children, fetch_children, EmbeddedChildren};
pub use list::{fetch_page, page_query, PAGE_SIZE};
pub use window::Window;
