//! `POST /webhooks/{provider}`: reads the headers that matter and the body
//! (bounded by the provider's `webhook_body_limit`), and hands them to
//! [`crate::webhooks::Receiver`], which decides everything else. Routing only.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{HttpState, REQUEST_TIMEOUT, error};
use crate::webhooks::{Receiver, Reply, Request as WebhookRequest};

/// The webhook route with its own bounds (body limit up to the largest
/// `webhook_body_limit`, the request timeout), to merge into a router.
pub(super) fn routes(receiver: Option<&Receiver>) -> Router<Arc<HttpState>> {
    let limit = receiver.map_or(crate::config::DEFAULT_WEBHOOK_BODY_LIMIT, |r| {
        r.max_body_limit()
    });
    Router::new()
        .route("/webhooks/{provider}", post(webhook))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(timeout))
}

async fn timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

async fn webhook(
    State(s): State<Arc<HttpState>>,
    Path(provider): Path<String>,
    req: Request,
) -> Response {
    let Some(receiver) = &s.webhooks else {
        return error(StatusCode::NOT_FOUND, "webhooks are not configured");
    };
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let content_type = text(headers, header::CONTENT_TYPE.as_str());
    let declared = text(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
    if let Some(reply) = receiver.precheck(&provider, content_type, declared) {
        return respond(reply);
    }
    let limit = receiver.body_limit(&provider);
    let bytes = match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(b) => b,
        Err(_) => return respond(receiver.too_large(&provider)),
    };
    let reply = receiver.handle(
        &provider,
        WebhookRequest {
            content_type,
            hmac: text(headers, "x-webhook-hmac"),
            hmac_algorithm: text(headers, "x-webhook-hmac-algorithm"),
            request_id: text(headers, "x-webhook-request-id"),
            timestamp: text(headers, "x-webhook-timestamp"),
            authorization: text(headers, header::AUTHORIZATION.as_str()),
            body: &bytes,
        },
    );
    respond(reply)
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(reply.body)).into_response();
    if let Some(secs) = reply.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
