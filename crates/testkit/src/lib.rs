//! Test helpers shared by the crates' black-box tests: a fresh PostgreSQL database per test
//! ([`db`]) and the in-process Stripe emulator ([`emulator`]).

pub mod db;
pub mod emulator;
