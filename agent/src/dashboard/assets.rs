//! The page and its assets: embedded at build time, or read from `MONITORING_STATIC_DIR`
//! on every request when set (edit, reload).

use hyper::body::Bytes;
use std::path::Path;

/// Name, content type and embedded bytes of each file served.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "monitoring_dashboard.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../static/monitoring_dashboard.html"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/dashboard.css"),
    ),
];

/// The file at a request path: content type and bytes. `Err` when it exists but cannot
/// be read from the static directory.
pub fn lookup(
    path: &str,
    static_dir: Option<&Path>,
) -> Option<Result<(&'static str, Bytes), String>> {
    let name = match path {
        "/" => "monitoring_dashboard.html",
        other => other.strip_prefix('/')?,
    };
    let (name, content_type, embedded) = FILES.iter().find(|(n, _, _)| *n == name)?;
    Some(match static_dir {
        None => Ok((content_type, Bytes::from_static(embedded))),
        Some(dir) => std::fs::read(dir.join(name))
            .map(|bytes| (*content_type, Bytes::from(bytes)))
            .map_err(|e| format!("cannot read {name} from MONITORING_STATIC_DIR: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_the_dashboards_files() {
        let (kind, html) = lookup("/", None).unwrap().unwrap();
        assert_eq!(kind, "text/html; charset=utf-8");
        assert!(String::from_utf8_lossy(&html).contains("dashboard.js"));
        assert!(lookup("/dashboard.css", None).is_some());
        assert!(lookup("/../Cargo.toml", None).is_none());
        assert!(lookup("/etc/passwd", None).is_none());
        let missing = lookup("/dashboard.js", Some(Path::new("/nonexistent"))).unwrap();
        assert!(missing.unwrap_err().contains("MONITORING_STATIC_DIR"));
    }
}
