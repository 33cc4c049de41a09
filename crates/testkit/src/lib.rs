//! placeholder
pub mod db;
