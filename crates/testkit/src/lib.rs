//! placeholder
pub mod db;
pub mod emulator;
