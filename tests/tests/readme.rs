//! The README's `listmodels` example is what a daemon answers: started as the README
//! says (Kimi's key set, GLM's not), once Kimi's model list is in.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, result_text};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::json;
use std::path::Path;

/// The fenced block after the README's marker line.
fn readme_example() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(readme).expect("README.md");
    let after = text
        .split_once("<!-- listmodels example:")
        .expect("the README's listmodels marker")
        .1;
    let block = after
        .split_once("```text\n")
        .expect("a text block after the marker")
        .1;
    block
        .split_once("\n```")
        .expect("the block's end")
        .0
        .to_string()
}

#[test]
fn the_readme_listmodels_example_matches_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("KIMI_API_KEY", "test-kimi-key".into()),
            ("KIMI_API_URL", llm.url("/v1")),
            // Empty is unset, whatever the shell running the tests has.
            ("GLM_API_KEY", String::new()),
            ("ZHIPUAI_API_KEY", String::new()),
        ],
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    wait_for("Kimi's model list", PATIENCE, || {
        let status = ws.call_tool("status", json!({}))["result"]["structuredContent"].clone();
        (status["catalogue"]["model_lists"][0]["state"] == "listed").then_some(())
    });
    let answer = result_text(&ws.call_tool("listmodels", json!({})));
    assert_eq!(
        answer,
        readme_example(),
        "README.md's listmodels example is out of date"
    );
}
