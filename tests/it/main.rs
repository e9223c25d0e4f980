//! The integration tests, one binary with a module per area (one link
//! instead of one per file). `hostile_corpus` stays its own binary: it
//! counts every panic of its process with a panic hook and measures the
//! process's resident memory, which other tests in the same process would
//! disturb.

mod common;

mod alerting_assets;
mod cli;
mod crash_sigkill;
mod delivery_proof;
mod demo;
mod demo_webhooks;
mod discovery_grace;
mod fleet_discovery;
mod fleet_restart;
mod grafana_dashboard;
mod http_api;
mod layering;
mod maintenance;
mod monitoring_e2e;
mod operator_cli;
mod reload;
mod replicas;
mod replicas_binary;
mod replicas_shared;
mod ring;
mod scheduler_loop;
mod sim_green_api;
mod sim_waha;
mod status_page;
mod status_page_browser;
mod store;
mod store_faults;
mod store_writer;
mod systemd;
mod watchdog_green;
mod watchdog_waha;
mod webhooks;
mod webhooks_daemon;
