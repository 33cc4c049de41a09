//! The fault-injection suite: every way a sync can be hurt from outside — Stripe misbehaving,
//! the destination database failing under it, the process dying, the clock jumping — tried
//! against the real `cls sync`, and every outcome judged by one rule:
//!
//! > either the destination equals the emulator's `/_emulator/export` exactly, or the run says
//! > it failed (exit 1) or was partial (exit 3) with a cause that names the fault. A run that
//! > says it succeeded with anything missing is a **wrong success**, and fails the suite.
//!
//! A run that failed must also *recover*: once the fault is gone, running again ends equal to
//! the export. A failure without a recognisable cause, or a failure that does not recover, is
//! **unexplained**, and fails the suite too.
//!
//! Layout, in the order a trial uses it:
//! - [`fault`]: the faults ([`Fault`]) and the quick matrix.
//! - [`pg`]: what is done to the PostgreSQL destination (terminated backends, revoked
//!   privileges, a "full disk", a dedicated login role) without touching the shared server.
//! - [`sync`]: running a sync — the `cls` binary as a process (killable), or the engine
//!   in-process where a fault needs a knob the binary does not expose (the clock, the
//!   request timeout).
//! - [`judge`]: comparing the destination with the export, and the verdict of a run (pure).
//! - [`trial`]: one fault, one seed: set up, inject, run, judge, recover, tear down.
//! - [`report`]: the table of every fault tried, how many times, and the outcomes.
//!
//! `CLS_FAULTS_DEBUG=1` prints what each emulator-fault trial's runs said (for replaying a
//! failing seed with `cls-faults --seed S --only NAME`).
//!
//! Words: a *trial* is one fault tried once (one emulator, one fresh database, one or more
//! runs); a *run* is one `cls sync`; the *export* is the emulator's view of the whole account.

#![warn(missing_docs)]

pub mod fault;
pub mod judge;
pub mod pg;
pub mod report;
pub mod sync;
pub mod trial;

pub use fault::Fault;
pub use judge::Verdict;
pub use report::Report;
pub use trial::{run_matrix, run_trial, Harness, Trial};
