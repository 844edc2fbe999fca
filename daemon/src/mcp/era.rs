//! Which protocol revision a request is served under, and the one place a result is
//! shaped for it.
//!
//! A request that names its revision in `_meta` (`io.modelcontextprotocol/protocolVersion`)
//! is of the 2026-07-28 era: stateless, no session, served by any daemon. Anything else
//! is of the handshake era (2024-11-05 to 2025-11-25), inside the session its
//! `initialize` opened. rmcp shapes the results of the requests it dispatches the same
//! way (it strips `resultType` for handshake peers and fills cache hints for 2026 ones);
//! [`finish`] is what the daemon adds on top, and all that a call answered in place
//! (`server::direct`) gets.

use rmcp::model::{Implementation, MetaObject, ProtocolVersion, RequestMetaObject, ServerResult};

/// The `_meta` key naming the server in every 2026 result.
pub const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// How long a 2026 client may keep `tools/list`'s answer: the tools never change while
/// a daemon runs, and every daemon of a fleet lists the same.
pub const TOOLS_TTL_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: an `initialize` handshake, then a session.
    Handshake,
    /// 2026-07-28: each request names its revision and the client's capabilities.
    Stateless,
}

impl Era {
    /// The era of a request, from its `_meta`.
    pub fn of(meta: &RequestMetaObject) -> Self {
        if meta.contains_key(super::compat::PROTOCOL_VERSION_KEY) {
            Era::Stateless
        } else {
            Era::Handshake
        }
    }
}

/// The server as 2026 results name it.
pub fn server_info() -> Implementation {
    Implementation::new("exai", crate::VERSION)
}

/// The revisions this server speaks, oldest first; the newest is the stateless one.
pub fn supported() -> &'static [ProtocolVersion] {
    ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28)
}

/// Shapes `result` for `era`: a 2026 result keeps `resultType` and names the server in
/// `_meta`; a handshake-era one has no `resultType`, as those revisions define it.
pub fn finish(result: &mut ServerResult, era: Era) {
    match era {
        Era::Handshake => result.strip_result_type_for_legacy_peer(),
        Era::Stateless => {
            if let Some(meta) = meta_of(result) {
                stamp(meta);
            }
        }
    }
}

fn meta_of(result: &mut ServerResult) -> Option<&mut Option<MetaObject>> {
    match result {
        ServerResult::CallToolResult(r) => Some(&mut r.meta),
        ServerResult::ListToolsResult(r) => Some(&mut r.meta),
        _ => None,
    }
}

/// The server as `_meta` names it, built once: every 2026 result carries it.
pub fn server_info_json() -> serde_json::Value {
    static INFO: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| serde_json::to_value(server_info()).unwrap_or_default());
    INFO.clone()
}

/// Names the server in a 2026 result's `_meta`.
pub fn stamp(meta: &mut Option<MetaObject>) {
    let meta = meta.get_or_insert_with(MetaObject::default);
    if !meta.contains_key(SERVER_INFO_KEY) {
        meta.insert(SERVER_INFO_KEY.to_owned(), server_info_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolResult, ContentBlock};

    fn meta(json: serde_json::Value) -> RequestMetaObject {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_request_naming_its_revision_is_stateless() {
        assert_eq!(Era::of(&RequestMetaObject::default()), Era::Handshake);
        assert_eq!(
            Era::of(&meta(serde_json::json!({"progressToken": 1}))),
            Era::Handshake
        );
        assert_eq!(
            Era::of(&meta(serde_json::json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28"
            }))),
            Era::Stateless
        );
    }

    #[test]
    fn each_era_gets_its_own_result_shape() {
        let result =
            || ServerResult::CallToolResult(CallToolResult::success(vec![ContentBlock::text("x")]));
        let mut old = result();
        finish(&mut old, Era::Handshake);
        let old = serde_json::to_value(&old).unwrap();
        assert!(old.get("resultType").is_none(), "{old}");
        assert!(old.get("_meta").is_none(), "{old}");

        let mut new = result();
        finish(&mut new, Era::Stateless);
        let new = serde_json::to_value(&new).unwrap();
        assert_eq!(new["resultType"], "complete");
        assert_eq!(new["_meta"][SERVER_INFO_KEY]["name"], "exai");
    }

    #[test]
    fn the_tools_report_the_revisions_served() {
        let listed: Vec<&str> = supported().iter().map(|v| v.as_str()).collect();
        assert_eq!(listed, crate::tools::PROTOCOL_VERSIONS);
    }
}
