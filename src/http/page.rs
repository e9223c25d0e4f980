//! The status page's routes (`GET /`, `GET /sessions/{provider}/{session}`):
//! the HTML comes from [`crate::status_page`]; this file adds the headers.
//!
//! Must not: wait on the scheduler (the page reads the store and the
//! registry, like the JSON API).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::status_page;

/// Nothing but the page itself and its inline style may load: a name that
/// somehow slipped past escaping still could not run a script.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

fn store_error(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "http: the status page cannot read the store");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "<!DOCTYPE html><title>wa-watchdog</title><p>The status page cannot read the store: {}</p>",
            maud::html! { (e.to_string()) }.into_string()
        ),
    )
}

pub(super) async fn fleet(State(s): State<Arc<HttpState>>) -> Response {
    match status_page::read_fleet(&s.store, &s.metrics, s.clock.now()).await {
        Ok(f) => html(StatusCode::OK, status_page::fleet_html(&f)),
        Err(e) => store_error(e),
    }
}

pub(super) async fn session(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    let now = s.clock.now();
    match status_page::read_session(&s.store, &provider, &session, now).await {
        Ok(Some(h)) => html(StatusCode::OK, status_page::session_html(&h)),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            status_page::not_found_html(&provider, &session, now),
        ),
        Err(e) => store_error(e),
    }
}
