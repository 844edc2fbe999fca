//! Logging set-up: `EXAI_LOG` (a tracing filter; unset or empty means the program's
//! default, as for every other setting), to stderr, coloured only on a terminal.

/// Installs the global subscriber. `default` is the filter when `EXAI_LOG` is unset,
/// empty or not a filter.
pub fn init(default: &str) {
    use std::io::IsTerminal;
    let filter = std::env::var("EXAI_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
