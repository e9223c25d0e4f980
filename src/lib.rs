//! wa-watchdog: a health watchdog for WhatsApp API sessions.
//!
//! See ARCHITECTURE.md for the code map, the data flow and the invariants.

pub mod clock;
pub mod machine;
pub mod policy;
pub mod provider;
pub mod sim;
pub mod store;
