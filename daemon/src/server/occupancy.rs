//! Who holds what at the MCP edge, in one place: connection places ([`Admission`]),
//! Streamable HTTP sessions, `GET` streams by client, request bytes held, WebSocket
//! sessions open. Made once in `main` and passed down: the server fills it, the heartbeat
//! and the `status` tool read it, and no one reaches back into the server for a count.

use super::admission::Admission;
use super::body::BodyBudget;
use super::sessions::BoundedSessions;
use super::streams::StreamPlaces;
use super::under_way::UnderWay;
use crate::config::ConnectionLimits;
use std::sync::Arc;

pub struct Occupancy {
    pub(super) limits: ConnectionLimits,
    /// Places for connections serving a request, and the pool of those still sending.
    pub(super) admission: Arc<Admission>,
    /// Streamable HTTP sessions (the 2025 era's), bounded.
    pub(super) http_sessions: Arc<BoundedSessions>,
    /// `GET /mcp` streams by client address.
    pub(super) streams: StreamPlaces,
    /// Bytes of request bodies held now.
    pub(super) bodies: BodyBudget,
    /// WebSocket sessions open now.
    pub(super) websocket: UnderWay,
}

impl Occupancy {
    pub fn new(limits: &ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            admission: Admission::new(limits.max_connections, limits.max_pending),
            http_sessions: Arc::new(BoundedSessions::new(
                limits.max_http_sessions,
                limits.http_session_idle,
            )),
            streams: StreamPlaces::new(limits.max_streams_per_client),
            bodies: BodyBudget::new(limits.max_request_bytes),
            websocket: UnderWay::default(),
            limits: limits.clone(),
        })
    }

    /// Streamable HTTP sessions open now (the heartbeat counts them with WebSocket
    /// sessions as connections).
    pub fn http_sessions(&self) -> usize {
        self.http_sessions.open()
    }

    /// WebSocket sessions open now.
    pub fn websocket_sessions(&self) -> usize {
        self.websocket.now()
    }

    /// Connections, places and sessions now, as `status` shows them.
    pub fn report(&self) -> serde_json::Value {
        let limits = &self.limits;
        serde_json::json!({
            "websocket_sessions": self.websocket_sessions(),
            "http_sessions": self.http_sessions(),
            "max_http_sessions": limits.max_http_sessions,
            "http_sessions_evicted": self.http_sessions.evicted(),
            "active": self.admission.active_now(),
            "max_connections": limits.max_connections,
            "pending": self.admission.pending_now(),
            "max_pending_connections": limits.max_pending,
            // Connections closed because the pool of those not yet authenticated was
            // full (they were the ones waiting the longest).
            "pending_evicted": self.admission.evicted(),
            "request_bytes": self.bodies.held(),
            "max_request_bytes": limits.max_request_bytes,
        })
    }
}
