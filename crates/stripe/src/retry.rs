//! When to retry a request, and how long to wait first — pure functions, tested without I/O.
//!
//! The rules follow Stripe's own SDKs: the `Stripe-Should-Retry` response header decides first;
//! without it, 409, 429, 5xx, network failures and cut-off or garbled bodies are retried. The
//! wait is exponential backoff with jitter, raised to `Retry-After` when Stripe sends a sane one,
//! and the whole request (every attempt and wait) is bounded in count and in time. Every request
//! this client sends is a GET, so a retry can never repeat a side effect.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// Longest `Retry-After` honoured; longer values are treated as absent (Stripe's SDKs do the
/// same) so that a confused proxy cannot park a sync for an hour.
pub const MAX_SANE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The bounds on retrying one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Time from the first attempt after which no retry starts.
    pub max_elapsed: Duration,
    /// Wait before the first retry (doubled for each following one).
    pub initial_backoff: Duration,
    /// Longest wait between two attempts (before `Retry-After`).
    pub max_backoff: Duration,
}

/// What one failed attempt tells about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetrySignal {
    /// `Stripe-Should-Retry`, when present and `true`/`false`.
    pub should_retry: Option<bool>,
    /// `Retry-After`, when present and sane.
    pub retry_after: Option<Duration>,
    /// Whether the failure is of a kind retried by default (409, 429, 5xx, network, bad body).
    pub transient: bool,
    /// Which of Stripe's limiters refused the request (`Stripe-Rate-Limited-Reason`), when
    /// it says.
    pub limited_by: Option<LimitedBy>,
}

/// Which of Stripe's limiters refused a request, from its `Stripe-Rate-Limited-Reason`
/// header (<https://docs.stripe.com/rate-limits>: `global-rate`, `global-concurrency`,
/// `endpoint-rate`, `endpoint-concurrency`, `resource-specific`). A 429 without the header
/// did not come from a rate limiter (a lock timeout, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The account's global limit (its rate or its concurrent requests).
    Account,
    /// This endpoint's own limit, or a limit of the resource it acts on.
    Endpoint,
}

/// Reads `Stripe-Rate-Limited-Reason`; an unknown value counts as absent.
pub fn limited_by_header(headers: &HeaderMap) -> Option<LimitedBy> {
    let value = headers
        .get("stripe-rate-limited-reason")?
        .to_str()
        .ok()?
        .trim();
    match value.to_ascii_lowercase().as_str() {
        "global-rate" | "global-concurrency" => Some(LimitedBy::Account),
        "endpoint-rate" | "endpoint-concurrency" | "resource-specific" => Some(LimitedBy::Endpoint),
        _ => None,
    }
}

impl RetrySignal {
    /// The signal of an HTTP answer with this status and these headers.
    pub fn from_response(status: u16, headers: &HeaderMap) -> RetrySignal {
        RetrySignal {
            should_retry: should_retry_header(headers),
            retry_after: retry_after_header(headers),
            transient: status_is_transient(status),
            limited_by: limited_by_header(headers),
        }
    }

    /// The signal of a failure without an answer (connection, timeout, cut-off body).
    pub fn transient() -> RetrySignal {
        RetrySignal {
            transient: true,
            ..RetrySignal::default()
        }
    }
}

/// Statuses retried when Stripe does not say otherwise.
pub fn status_is_transient(status: u16) -> bool {
    matches!(status, 409 | 429) || (500..=599).contains(&status)
}

/// Reads `Stripe-Should-Retry`; anything but `true`/`false` counts as absent.
pub fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get("stripe-should-retry")?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Reads `Retry-After` as seconds (integer or decimal). The HTTP-date form, negative, absurd
/// or over-long values count as absent: the backoff applies instead.
pub fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value)
}

/// See [`retry_after_header`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    let wait = Duration::try_from_secs_f64(seconds).ok()?;
    (wait <= MAX_SANE_RETRY_AFTER).then_some(wait)
}

/// How long to wait before retry number `retries_done + 1`, or `None` to give up.
///
/// `elapsed` is the time since the first attempt started; `jitter` is a number in `[0, 1]`
/// (random in production, fixed in tests) that spreads the waits of concurrent requests so that
/// they do not come back all at once.
pub fn next_delay(
    policy: &RetryPolicy,
    signal: &RetrySignal,
    retries_done: u32,
    elapsed: Duration,
    jitter: f64,
) -> Option<Duration> {
    let wanted = signal.should_retry.unwrap_or(signal.transient);
    if !wanted || retries_done >= policy.max_retries {
        return None;
    }
    let exponential = policy
        .initial_backoff
        .saturating_mul(1u32.checked_shl(retries_done.min(31)).unwrap_or(u32::MAX));
    let capped = exponential.min(policy.max_backoff);
    // Jitter keeps between half and all of the backoff, never below the initial wait.
    let jitter = jitter.clamp(0.0, 1.0);
    let mut delay = capped
        .mul_f64(0.5 + 0.5 * jitter)
        .max(policy.initial_backoff.min(capped));
    if let Some(retry_after) = signal.retry_after {
        delay = delay.max(retry_after);
    }
    if elapsed.saturating_add(delay) > policy.max_elapsed {
        return None;
    }
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 8,
        max_elapsed: Duration::from_secs(120),
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(8),
    };

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn reads_which_limiter_refused() {
        let cases = [
            ("global-rate", Some(LimitedBy::Account)),
            ("global-concurrency", Some(LimitedBy::Account)),
            ("endpoint-rate", Some(LimitedBy::Endpoint)),
            ("Endpoint-Concurrency", Some(LimitedBy::Endpoint)),
            ("resource-specific", Some(LimitedBy::Endpoint)),
            ("something-new", None),
            ("", None),
        ];
        for (value, expected) in cases {
            let h = headers(&[("stripe-rate-limited-reason", value)]);
            assert_eq!(limited_by_header(&h), expected, "{value:?}");
            assert_eq!(RetrySignal::from_response(429, &h).limited_by, expected);
        }
        assert_eq!(limited_by_header(&HeaderMap::new()), None);
    }

    fn delay(signal: RetrySignal, retries_done: u32) -> Option<Duration> {
        next_delay(&POLICY, &signal, retries_done, Duration::ZERO, 1.0)
    }

    #[test]
    fn transient_statuses() {
        for status in [409, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_transient(status), "{status}");
        }
        for status in [200, 301, 400, 401, 402, 403, 404, 422] {
            assert!(!status_is_transient(status), "{status}");
        }
    }

    #[test]
    fn stripe_should_retry_decides_first() {
        let no = RetrySignal::from_response(503, &headers(&[("stripe-should-retry", "false")]));
        assert_eq!(delay(no, 0), None);
        let yes = RetrySignal::from_response(400, &headers(&[("stripe-should-retry", "true")]));
        assert_eq!(delay(yes, 0), Some(Duration::from_millis(500)));
        let odd = RetrySignal::from_response(503, &headers(&[("stripe-should-retry", "maybe")]));
        assert_eq!(odd.should_retry, None);
        assert!(delay(odd, 0).is_some());
        let default_400 = RetrySignal::from_response(400, &HeaderMap::new());
        assert_eq!(delay(default_400, 0), None);
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.25 "),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("61"), None);
        assert_eq!(parse_retry_after("86400"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("inf"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let signal = RetrySignal::from_response(429, &headers(&[("retry-after", "3")]));
        assert_eq!(signal.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_raises_but_never_lowers_the_wait() {
        let mut map = HeaderMap::new();
        map.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        let signal = RetrySignal::from_response(429, &map);
        assert_eq!(delay(signal, 0), Some(Duration::from_secs(5)));
        map.insert(RETRY_AFTER, HeaderValue::from_static("0"));
        let signal = RetrySignal::from_response(429, &map);
        assert_eq!(delay(signal, 3), Some(Duration::from_secs(4)));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = RetrySignal::transient();
        let waits: Vec<_> = (0..8).map(|n| delay(s, n).map(|d| d.as_millis())).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000].map(Some)
        );
        assert_eq!(delay(s, 8), None, "max_retries bounds the count");
    }

    #[test]
    fn jitter_keeps_half_to_all_of_the_wait_and_never_below_the_first() {
        let s = RetrySignal::transient();
        let low = next_delay(&POLICY, &s, 3, Duration::ZERO, 0.0);
        assert_eq!(low, Some(Duration::from_secs(2)));
        let first = next_delay(&POLICY, &s, 0, Duration::ZERO, 0.0);
        assert_eq!(first, Some(Duration::from_millis(500)));
        let out_of_range = next_delay(&POLICY, &s, 3, Duration::ZERO, 7.0);
        assert_eq!(out_of_range, Some(Duration::from_secs(4)));
    }

    #[test]
    fn elapsed_time_bounds_the_retries() {
        let s = RetrySignal::transient();
        assert_eq!(
            next_delay(&POLICY, &s, 2, Duration::from_secs(117), 1.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            next_delay(&POLICY, &s, 2, Duration::from_secs(119), 1.0),
            None
        );
    }

    #[test]
    fn huge_retry_counts_do_not_overflow() {
        let policy = RetryPolicy {
            max_retries: u32::MAX,
            max_elapsed: Duration::MAX,
            ..POLICY
        };
        let s = RetrySignal::transient();
        assert_eq!(
            next_delay(&policy, &s, 40, Duration::ZERO, 1.0),
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            next_delay(&policy, &s, u32::MAX - 1, Duration::ZERO, 1.0),
            Some(Duration::from_secs(8))
        );
    }
}
