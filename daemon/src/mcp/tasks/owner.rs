//! Who owns a task over MCP 2025-11-25: the session that started it. Over WebSocket
//! that is a random id drawn when the session starts; over Streamable HTTP its
//! `Mcp-Session-Id`, hashed, so that a call answered in place (`server::direct`) finds
//! the same owner as one through rmcp. A session's tasks end with it.

use crate::mcp::{headers, McpHandler};
use crate::tasks::TaskStore;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex};

/// The tasks of one MCP session: their owner, and their end with the session's (when
/// the last clone of its handler goes, rmcp having closed the session).
pub(in crate::mcp) struct SessionTasks {
    /// Drawn at random when the session starts: the owner over WebSocket.
    id: u64,
    store: Arc<TaskStore>,
    /// Owners this session's tasks were created under, dropped with it.
    owners: Mutex<Vec<String>>,
}

impl SessionTasks {
    pub(in crate::mcp) fn new(store: Arc<TaskStore>) -> Self {
        Self {
            id: rand::random(),
            store,
            owners: Mutex::default(),
        }
    }

    pub(super) fn owned(&self, owner: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        if !owners.iter().any(|o| o == owner) {
            owners.push(owner.to_string());
        }
    }
}

impl Drop for SessionTasks {
    fn drop(&mut self) {
        let owners = std::mem::take(self.owners.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Without a runtime (the process is ending) the tasks expire with their TTL.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for owner in owners {
            let store = self.store.clone();
            runtime.spawn(async move {
                match store.drop_owner(&owner).await {
                    Ok(n) if n > 0 => tracing::info!(tasks = n, "session ended: its tasks were cancelled and dropped"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "session ended: its tasks could not be dropped; they expire with their TTL"),
                }
            });
        }
    }
}

/// Keys the hash of a Streamable HTTP session id into an owner, drawn once per process.
static SESSION_KEY: LazyLock<std::collections::hash_map::RandomState> =
    LazyLock::new(std::collections::hash_map::RandomState::new);

/// The owner of the tasks of the Streamable HTTP session a request names (its
/// `Mcp-Session-Id`), if it names one. The session id is hashed with a key drawn at
/// start: it is a bearer capability, and the task store (Redis, maybe) never sees it.
/// A session lives in one daemon, so the owner need only be stable within it.
pub fn http_session_owner(headers: &http::HeaderMap) -> Option<String> {
    let id = headers.get("mcp-session-id")?;
    Some(format!(
        "mcp-session-{:016x}",
        SESSION_KEY.hash_one(id.as_bytes())
    ))
}

fn websocket_owner(id: u64) -> String {
    format!("mcp-session-{id:016x}")
}

impl McpHandler {
    /// Whose tasks a request may start and see: its session's; a stateless request's
    /// are the fleet's (`modern`).
    pub(in crate::mcp) fn owner(&self, ctx: &RequestContext<RoleServer>) -> String {
        if crate::mcp::era::Era::of(&ctx.meta) == crate::mcp::era::Era::Stateless {
            return super::modern::STATELESS_OWNER.to_string();
        }
        headers(ctx)
            .and_then(http_session_owner)
            .unwrap_or_else(|| websocket_owner(self.session.id))
    }
}
