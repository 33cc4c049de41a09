//! Per-session state that lives in this process's memory only.
//!
//! Why in memory, keyed by the session, rather than in hidden form fields or an inactive
//! configuration created at step 3 of the wizard:
//! - a secret in a hidden field or a URL is sent back by the browser on every later step,
//!   lands in history, caches and screenshots; here the Stripe key pasted at step 3 and a
//!   connection string that was tested but not yet saved never leave the server again;
//! - a configuration created early would be written (encrypted) to the state database, run
//!   by nothing, and linger when the wizard is abandoned; a draft simply disappears with its
//!   session or after [`DRAFT_TTL`];
//! - the cost is that a restart forgets unfinished wizards: the person pastes the key again,
//!   which is the safe failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cls_catalog::DataType;
use cls_control::{ProjectId, StripeCheckError};
use cls_destination::DatabaseUrl;
use cls_engine::StripeCheck;
use cls_stripe::ApiKey;

/// How long an untouched draft is kept.
pub(crate) const DRAFT_TTL: Duration = Duration::from_secs(12 * 3600);

/// The configuration wizard's answers so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wizard {
    /// Step 1: the data types, in catalog order.
    pub types: Vec<&'static DataType>,
    /// Step 2: the project.
    pub project: Option<ProjectId>,
    /// Step 3: the Stripe key (zeroed when dropped; never rendered but masked).
    pub key: Option<ApiKey>,
    /// Step 3: the last Test Connection result, or why it could not run.
    pub check: Option<Result<StripeCheck, StripeCheckError>>,
    /// Step 4: create the tables automatically (`true`) or by hand (`false`).
    pub tables_auto: Option<bool>,
}

/// A connection string entered in a project form and tested, kept so Save does not need
/// it pasted again.
#[derive(Debug, Clone)]
pub(crate) struct PendingUrl {
    /// The project being edited, `None` for a new one.
    pub project: Option<ProjectId>,
    /// The URL (its `Debug`/`Display` mask the password).
    pub url: DatabaseUrl,
}

/// A one-shot message shown on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    /// Good news (`true`) or a problem (`false`).
    pub ok: bool,
    /// The message.
    pub text: String,
}

/// Everything kept for one session.
#[derive(Debug, Default)]
pub(crate) struct SessionDrafts {
    /// The wizard in progress.
    pub wizard: Wizard,
    /// A tested, unsaved connection string.
    pub pending_url: Option<PendingUrl>,
    /// The notice for the next page.
    pub notice: Option<Notice>,
    /// When this was last used (for expiry).
    touched: Option<Instant>,
}

/// All sessions' drafts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Drafts {
    /// Keyed by the session's id.
    inner: Arc<Mutex<HashMap<String, SessionDrafts>>>,
}

impl Drafts {
    /// Runs `f` on the drafts of `session`, creating them when missing; forgets drafts left
    /// untouched for [`DRAFT_TTL`].
    pub fn with<R>(&self, session: &str, f: impl FnOnce(&mut SessionDrafts) -> R) -> R {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        all.retain(|_, d| d.touched.is_none_or(|t| now.duration_since(t) < DRAFT_TTL));
        let entry = all.entry(session.to_string()).or_default();
        entry.touched = Some(now);
        f(entry)
    }

    /// Sets the notice shown on the session's next page.
    pub fn notice(&self, session: &str, ok: bool, text: impl Into<String>) {
        let text = text.into();
        self.with(session, |d| d.notice = Some(Notice { ok, text }));
    }

    /// Takes the session's notice, if any.
    pub fn take_notice(&self, session: &str) -> Option<Notice> {
        self.with(session, |d| d.notice.take())
    }

    /// Forgets everything of a session (sign-out).
    pub fn forget(&self, session: &str) {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_shown_once_and_sessions_are_apart() {
        let d = Drafts::default();
        d.notice("a", true, "saved");
        assert_eq!(d.take_notice("b"), None);
        assert_eq!(
            d.take_notice("a"),
            Some(Notice {
                ok: true,
                text: "saved".into()
            })
        );
        assert_eq!(d.take_notice("a"), None);
        d.notice("a", false, "x");
        d.forget("a");
        assert_eq!(d.take_notice("a"), None);
    }
}
