//! wa-watchdog: a health watchdog for WhatsApp API sessions.
//!
//! See ARCHITECTURE.md for the code map, the data flow and the invariants.

pub mod alertmanager;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod confirm;
pub mod demo;
pub mod events;
pub mod health;
pub mod http;
pub mod lease;
pub mod machine;
pub mod maintenance;
pub mod metrics;
pub mod outcome;
pub mod policy;
pub mod provider;
pub mod redact;
pub mod reload;
pub mod ring;
pub mod scheduler;
pub mod service;
pub mod sim;
pub mod status_page;
pub mod store;
pub mod telemetry;
pub mod webhooks;
