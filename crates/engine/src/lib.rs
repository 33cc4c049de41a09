//! The engine: plans a run, walks the source under the shared rate budget, hands batches to the
//! destination with their checkpoints, and reports progress and a summary.
//!
//! - [`plan`]: which lists to walk for the chosen data types (pure, tested without I/O);
//! - [`run`]: executing a full sync;
//! - [`events`]: what one Stripe event does to the tables and the version it writes with (pure);
//! - [`incremental`]: following the events feed from the stored cursor, and the apply path
//!   shared with webhooks;
//! - [`report`]: progress events and the per-data-type summary;
//! - [`connect`]: Stripe Connect — a platform's run that also copies each connected account.

pub mod backfill;
pub mod check;
pub mod connect;
pub mod cursor;
pub mod events;
pub mod incremental;
pub mod plan;
pub mod report;
pub mod run;

pub use check::{check_stripe, ConnectedAccess, StripeCheck, TypeAccess};
pub use connect::{
    list_connected_accounts, run_sync_with_connected, ConnectReport, ConnectedAccount,
};
pub use cursor::{load_cursor, store_cursor, EventsCursor, EVENTS_CURSOR_KEY};
pub use events::{backfill_version, event_version, EventSource, Sequencer, SkipReason};
pub use incremental::{
    apply_events, plan_incremental, run_incremental, run_sync, ApplyStats, IncrementalPlan,
    RequestedMode,
};
pub use plan::{plan_streams, Stream};
pub use report::{
    EventsSummary, Progress, RunStatus, SyncMode, SyncReport, TypeReport, TypeStatus,
};
pub use run::{
    account_info, resolve_account, run_full_sync, AccountInfo, EngineError, ProgressFn, SyncOptions,
};
