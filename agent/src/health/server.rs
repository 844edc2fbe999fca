//! `/health/live`, `/health/ready`, `/health` and `/healthz`: each composes its answer
//! from the registry of daemons and the agent's last findings, and answers at once.

use super::{Checked, Health};
use crate::http_server::{self, Body, Handler};
use chrono::{SecondsFormat, Utc};
use hyper::Response;
use serde::Serialize;
use std::sync::Arc;

const JSON: &str = "application/json";

/// The full report, as `/health` and `/healthz` answer it.
#[derive(Serialize)]
pub struct Report<'a> {
    pub status: super::report::Status,
    pub timestamp_utc: String,
    pub timestamp_local: String,
    pub timezone: &'static str,
    pub version: &'static str,
    /// When the checks behind this report ran.
    pub checked_at_utc: String,
    pub components: &'a super::report::Components,
}

impl<'a> Report<'a> {
    pub fn new(checked: &'a Checked, timezone: chrono_tz::Tz) -> Self {
        let now = Utc::now();
        Self {
            status: checked.status,
            timestamp_utc: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            timestamp_local: now
                .with_timezone(&timezone)
                .to_rfc3339_opts(SecondsFormat::Millis, false),
            timezone: timezone.name(),
            version: crate::VERSION,
            checked_at_utc: chrono::DateTime::<Utc>::from(checked.checked_at)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            components: &checked.components,
        }
    }
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
    status: super::report::Status,
    timestamp_utc: String,
    /// Components that keep the agent from being ready.
    waiting_for: Vec<&'static str>,
}

/// `loopback_only`: bound to a loopback address, so a `Host` naming anything else is a
/// DNS-rebinding page, not a local client.
pub fn handler(health: Arc<Health>, loopback_only: bool) -> Handler {
    let timezone = health.timezone();
    Arc::new(move |req| {
        if loopback_only && !http_server::loopback_host(&req) {
            return http_server::foreign_host();
        }
        if req.uri().path() == "/health/live" {
            return json(
                200,
                &serde_json::json!({
                    "status": "alive",
                    "version": crate::VERSION,
                    "timestamp_utc": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                }),
            );
        }
        let checked = health.check();
        match req.uri().path() {
            "/health/ready" => {
                let waiting_for = checked.components.waiting_for();
                let body = Ready {
                    ready: checked.ready,
                    status: checked.status,
                    timestamp_utc: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                    waiting_for,
                };
                json(if checked.ready { 200 } else { 503 }, &body)
            }
            "/health" | "/healthz" => {
                let code = if checked.status == super::report::Status::Healthy {
                    200
                } else {
                    503
                };
                json(code, &Report::new(&checked, timezone))
            }
            _ => http_server::text(
                404,
                "text/plain; charset=utf-8",
                "not found; try /health, /healthz, /health/live or /health/ready\n",
            ),
        }
    })
}

fn json(status: u16, body: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => http_server::text(status, JSON, bytes),
        Err(e) => http_server::text(
            500,
            "text/plain; charset=utf-8",
            format!("cannot render: {e}\n"),
        ),
    }
}
