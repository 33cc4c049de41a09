//! `cls-stripe`: Stripe API keys and the read-only Stripe HTTP client.
//!
//! This is the first stage of the data flow (Stripe client → source → engine → destination).
//! It knows nothing about data types or databases; it turns a pasted key into an [`ApiKey`] and
//! GET requests into JSON, within Stripe's rate limits.
//!
//! Layout:
//! - [`key`]: [`ApiKey`] — parse at the boundary; kind and mode from the prefix; masked display.
//! - [`client`]: [`StripeClient`] — GET only, Bearer auth, pinned `Stripe-Version`, retries,
//!   [`RequestCounters`] supplied by the caller.
//! - [`limiter`]: the one rate budget per client (global by mode + per endpoint; proactive and
//!   adaptive; divided at run time among the runs sharing one account).
//! - [`retry`]: the retry decision and backoff, as pure functions.
//! - [`error`]: [`StripeError`] and Stripe's error-body parsing (`rak_…` permissions).

pub mod client;
pub mod error;
pub mod key;
pub mod limiter;
pub mod retry;

pub use client::{
    ClientConfig, CounterSnapshot, ListPage, RequestCounters, StripeClient, DEFAULT_API_BASE,
    DEFAULT_STRIPE_VERSION, LIVE_MODE_GLOBAL_RPS, PER_ENDPOINT_RPS, TEST_MODE_GLOBAL_RPS,
};
pub use error::{parse_permission, permission_label, StripeError};
pub use key::{ApiKey, KeyError, KeyKind, Mode};
pub use limiter::{normalize_endpoint, Adaptation};
