//! What `exai-daemon` and `exai-agent` do the same way as processes, so that each is
//! written once: reading settings ([`settings`]), the signals that stop them and one
//! bounded wait for what is still running ([`stop`]), logging ([`logging`]), the backoff
//! of an accept loop ([`accept`]), the container healthcheck's HTTP probe ([`probe`]),
//! the one rule for loopback `Host` names ([`host`]), and warnings at most so often
//! ([`throttle`]). Nothing here knows the event wire (that is `exai-proto`) or MCP.

pub mod accept;
pub mod host;
pub mod logging;
pub mod probe;
pub mod settings;
pub mod stop;
pub mod throttle;
