//! The operator's kit in `compose/prometheus/`: every rule file passes `promtool check
//! rules`, every unit-test file passes `promtool test rules`, the shipped scrape
//! configuration loads every rule file, and every alert is shown both firing and not
//! firing and every recording rule has its value checked.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn compose_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose");
    // Resolved, so messages name the file as an operator would find it.
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("cannot find {}: {e}", dir.display()))
}

/// Rule files: the `.yml` files directly in `compose/prometheus/`.
fn rule_files() -> Vec<PathBuf> {
    let files = yaml_files(&compose_dir().join("prometheus"));
    let names: Vec<_> = files.iter().filter_map(|f| f.file_name()).collect();
    // Guards against a move that would leave the other tests checking nothing.
    for expected in ["alerts.yml", "rules.yml"] {
        assert!(
            names.contains(&OsStr::new(expected)),
            "compose/prometheus/{expected} is missing; found {names:?}"
        );
    }
    files
}

/// Unit-test files: the `.yml` files in `compose/prometheus/tests/`.
fn test_files() -> Vec<PathBuf> {
    let files = yaml_files(&compose_dir().join("prometheus/tests"));
    assert!(
        !files.is_empty(),
        "no unit-test files in compose/prometheus/tests/"
    );
    files
}

/// The `.yml` files directly in `dir`, sorted so runs and messages are always in one order.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension() == Some(OsStr::new("yml")))
        .collect();
    files.sort();
    files
}

/// Runs promtool; its whole output, and whether it succeeded.
fn promtool(args: &[&OsStr]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool (Debian package prometheus, installed by tests/run.sh): {e}"
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Runs `promtool <verb…> <file>` for each file and fails with the output of every file
/// promtool refused, not just the first.
fn promtool_each(verb: &[&str], files: &[PathBuf]) {
    let mut refused = Vec::new();
    for file in files {
        let mut args: Vec<&OsStr> = verb.iter().map(OsStr::new).collect();
        args.push(file.as_os_str());
        let (ok, said) = promtool(&args);
        if !ok {
            refused.push(format!(
                "promtool {} {} failed:\n{said}",
                verb.join(" "),
                file.display()
            ));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

#[test]
fn every_rule_file_passes_promtool_check_rules() {
    promtool_each(&["check", "rules"], &rule_files());
}

#[test]
fn every_unit_test_file_passes_promtool_test_rules() {
    promtool_each(&["test", "rules"], &test_files());
}

#[test]
fn the_shipped_config_loads_every_rule_file() {
    let config = compose_dir().join("prometheus.yml");
    let (ok, said) = promtool(&[
        OsStr::new("check"),
        OsStr::new("config"),
        config.as_os_str(),
    ]);
    assert!(ok, "promtool check config {}:\n{said}", config.display());
    // promtool names each rule file the configuration loads, as it checks it.
    for file in rule_files() {
        let name = format!("prometheus/{}", file.file_name().unwrap().to_string_lossy());
        assert!(
            said.contains(&name),
            "compose/prometheus.yml does not load {name} (rule_files):\n{said}"
        );
    }
}

/// The value after `key:` on a trimmed YAML line that starts with it (or with `- key:`).
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.trim_start().trim_start_matches("- ");
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    Some(rest.trim().trim_matches(|c| c == '\'' || c == '"'))
}

#[test]
fn every_alert_is_shown_firing_and_not_firing_and_every_recording_rule_is_tested() {
    let mut alerts = BTreeSet::new();
    let mut records = BTreeSet::new();
    for file in rule_files() {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            alerts.extend(value_of(line, "alert").map(str::to_owned));
            records.extend(value_of(line, "record").map(str::to_owned));
        }
    }

    // Read as the test files are written: each alert case names `alertname` before
    // `exp_alerts`, which is `[]` when the alert must not fire.
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut exprs = Vec::new();
    for file in test_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut alertname: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            if let Some(name) = value_of(line, "alertname") {
                alertname = Some(name.to_owned());
            } else if let Some(expected) = value_of(line, "exp_alerts") {
                let name = alertname.take().unwrap_or_else(|| {
                    panic!(
                        "{}:{}: exp_alerts without an alertname before it",
                        file.display(),
                        n + 1
                    )
                });
                if expected == "[]" {
                    quiet.insert(name);
                } else {
                    firing.insert(name);
                }
            } else if let Some(expr) = value_of(line, "expr") {
                exprs.push(expr.to_owned());
            }
        }
    }

    let mut gaps = Vec::new();
    for alert in &alerts {
        if !firing.contains(alert) {
            gaps.push(format!("{alert}: no test shows it firing"));
        }
        if !quiet.contains(alert) {
            gaps.push(format!(
                "{alert}: no test shows it not firing (exp_alerts: [])"
            ));
        }
    }
    for record in &records {
        // The recorded name itself, optionally with a selector: `name` or `name{…}`.
        let tested = exprs.iter().any(|e| {
            e.strip_prefix(record.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        });
        if !tested {
            gaps.push(format!("{record}: no promql_expr_test checks its value"));
        }
    }
    for name in firing.union(&quiet) {
        if !alerts.contains(name) {
            gaps.push(format!("{name}: tested, but no rule file defines it"));
        }
    }
    assert!(
        !alerts.is_empty() && !records.is_empty(),
        "no alert or recording rule found"
    );
    assert!(
        gaps.is_empty(),
        "compose/prometheus/tests/ leaves gaps:\n{}",
        gaps.join("\n")
    );
}
