//! The model catalogue stays true: a model only the provider lists is callable after
//! start, `kimi:<id>` reaches the provider as `<id>`, a retired id is sent as its
//! successor, an unknown model (here or at the provider) gets a clear error, a models
//! file adds entries, a provider without a model list keeps the table (logged once),
//! and the default falls back to what is available.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, result_text, RawWs};
use exai_tests::metrics::http_get;
use exai_tests::{wait_for, Agent, Daemon, PATIENCE};
use serde_json::{json, Value};

fn connect(daemon: &Daemon) -> RawWs {
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    ws
}

fn chat(ws: &mut RawWs, args: Value) -> Value {
    ws.call_tool("chat", args)["result"].clone()
}

fn structured(ws: &mut RawWs, tool: &str) -> Value {
    ws.call_tool(tool, json!({}))["result"]["structuredContent"].clone()
}

/// The `model` of the provider's last chat request.
fn last_model_sent(llm: &FakeLlmProc) -> Value {
    let (_, body) = http_get(llm.port, "/_requests").unwrap();
    let log: Value = serde_json::from_str(&body).unwrap();
    log.as_array().unwrap().last().unwrap()["body"]["model"].clone()
}

/// The catalogue entry `name`, once listmodels shows it.
fn wait_for_model(ws: &mut RawWs, name: &str) -> Value {
    wait_for(&format!("{name} in listmodels"), PATIENCE, || {
        structured(ws, "listmodels")["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
    })
}

#[test]
fn a_model_only_the_provider_lists_is_callable_by_name_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&["--extra-models", "glm:glm-9-preview"]);
    let daemon = Daemon::with_llm(&dir.path().join("events.sock"), llm.port, &[]);
    let mut ws = connect(&daemon);
    let entry = wait_for_model(&mut ws, "glm-9-preview");
    assert_eq!(
        (
            &entry["provider"],
            &entry["source"],
            &entry["thinking"],
            &entry["listed_by_provider"]
        ),
        (
            &json!("glm"),
            &json!("provider"),
            &json!("unknown"),
            &json!(true)
        )
    );
    let answer = chat(
        &mut ws,
        json!({"prompt": "hello nine", "model": "glm-9-preview"}),
    );
    assert_eq!(answer["isError"], false, "{answer}");
    assert_eq!(answer["structuredContent"]["model"], "glm-9-preview");
    assert_eq!(last_model_sent(&llm), "glm-9-preview");
    let lists = &structured(&mut ws, "status")["catalogue"]["model_lists"];
    assert_eq!(lists[1]["state"], "listed", "{lists}");
    assert_eq!(lists[1]["models_added"], 1, "{lists}");
    assert!(result_text(&ws.call_tool("listmodels", json!({})))
        .contains("- glm-9-preview: listed by glm; context unknown; thinking unknown"));
}

#[test]
fn a_named_provider_gets_the_id_as_given_and_a_retired_id_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(&socket, llm.port, &[]);
    let mut ws = connect(&daemon);

    // A retired id is an alias: the provider gets its successor.
    let answer = chat(
        &mut ws,
        json!({"prompt": "old config", "model": "kimi-k2-0905-preview"}),
    );
    assert_eq!(answer["isError"], false, "{answer}");
    assert_eq!(last_model_sent(&llm), "kimi-k2.6");
    assert_eq!(answer["structuredContent"]["model"], "kimi-k2.6");

    // kimi:<id> is sent as it is, and the provider's refusal names the model.
    let refused = chat(
        &mut ws,
        json!({"prompt": "hi", "model": "kimi:kimi-k2-0905-preview"}),
    );
    assert_eq!(last_model_sent(&llm), "kimi-k2-0905-preview");
    assert_eq!(refused["isError"], true);
    assert_eq!(
        result_text(&json!({"result": refused})),
        "model \"kimi-k2-0905-preview\" was not found at kimi (HTTP 404: Not found the model kimi-k2-0905-preview or Permission denied); call listmodels for the models this server offers"
    );
    let refused = chat(&mut ws, json!({"prompt": "hi", "model": "glm:glm-0"}));
    assert_eq!(last_model_sent(&llm), "glm-0");
    assert_eq!(
        result_text(&json!({"result": refused})),
        "model \"glm-0\" was not found at glm (HTTP 400: Unknown Model, please check the model code.); call listmodels for the models this server offers"
    );

    // A name nobody knows never reaches a provider.
    let unknown = chat(&mut ws, json!({"prompt": "hi", "model": "gpt-4"}));
    assert_eq!(unknown["isError"], true);
    assert_eq!(
        result_text(&json!({"result": unknown})),
        "unknown model \"gpt-4\"; call listmodels for the models this server offers, or name any model of a provider as kimi:<id> or glm:<id>"
    );
    assert_eq!(last_model_sent(&llm), "glm-0");
    // A malformed id is the caller's mistake.
    let bad = ws.call_tool("chat", json!({"prompt": "hi", "model": "kimi:a b"}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    // Each refusal is counted as model_not_found, not as a client error.
    agent.wait_metric(
        "mcp_api_calls_total",
        &[("status", "model_not_found")],
        |v| v == 2.0,
    );
    let scrape = agent.scrape();
    assert_eq!(
        scrape.sum(
            "mcp_api_calls_total",
            &[("provider", "glm"), ("status", "model_not_found")]
        ),
        1.0
    );
    assert_eq!(
        scrape.sum("mcp_api_calls_total", &[("status", "client_error")]),
        0.0
    );
}

#[test]
fn a_models_file_adds_models_and_the_default_can_name_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.toml");
    std::fs::write(
        &file,
        r#"
[[models]]
name = "glm-5.1"
provider = "glm"
aliases = ["glm-next"]
context_window = 200000
thinking = "optional"
description = "GLM-5.1 from the models file"
"#,
    )
    .unwrap();
    let llm = FakeLlmProc::start(&["--extra-models", "glm:glm-5.1"]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[
            ("EXAI_MODELS_FILE", file.display().to_string()),
            ("DEFAULT_MODEL", "glm-next".into()),
            ("EXAI_MODELS_REFRESH_S", "0".into()),
        ],
    );
    let mut ws = connect(&daemon);
    let models = structured(&mut ws, "listmodels");
    assert_eq!(models["default_model"], "glm-next");
    let entry = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "glm-5.1")
        .unwrap()
        .clone();
    assert_eq!(
        (
            &entry["source"],
            &entry["context_window"],
            &entry["listed_by_provider"]
        ),
        (&json!("file"), &json!(200000), &Value::Null)
    );
    assert_eq!(models["providers"][1]["model_list"], "off");
    let answer = chat(&mut ws, json!({"prompt": "from the file"}));
    assert_eq!(answer["structuredContent"]["model"], "glm-5.1", "{answer}");
    assert_eq!(last_model_sent(&llm), "glm-5.1");

    // A broken file stops the start with a message naming the setting.
    std::fs::write(&file, "[[models]]\nname = \"x\"\nprovider = \"openai\"\n").unwrap();
    let mut proc = exai_tests::Proc::spawn(
        "exai-daemon",
        &[],
        &[
            ("EXAI_MODELS_FILE", file.display().to_string()),
            (
                "EXAI_EVENTS_SOCKET",
                dir.path().join("e2.sock").display().to_string(),
            ),
        ],
    );
    let status = proc.wait_exit();
    assert_eq!(status.code(), Some(2));
    proc.wait_for_log("invalid setting: EXAI_MODELS_FILE=");
    proc.wait_for_log("provider \"openai\": expected kimi or glm");
}

#[test]
fn a_provider_without_a_model_list_keeps_the_table_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&["--no-model-list", "glm"]);
    let daemon = Daemon::with_llm(
        &dir.path().join("events.sock"),
        llm.port,
        &[("EXAI_MODELS_REFRESH_S", "1".into())],
    );
    let mut ws = connect(&daemon);
    let glm = wait_for("three attempts at GLM's model list", PATIENCE, || {
        let lists = structured(&mut ws, "status")["catalogue"]["model_lists"].clone();
        (lists[1]["attempts"].as_u64() >= Some(3)).then(|| lists[1].clone())
    });
    assert_eq!(glm["state"], "failed");
    assert!(glm["error"].as_str().unwrap().contains("HTTP 404"), "{glm}");
    assert_eq!(
        daemon.proc.count_log("cannot list the provider's models"),
        1,
        "logged once, not at every attempt"
    );
    let models = structured(&mut ws, "listmodels");
    assert_eq!(models["providers"][0]["model_list"], "listed");
    assert_eq!(models["providers"][1]["model_list"], "failed");
    // The table still serves.
    let answer = chat(&mut ws, json!({"prompt": "still here", "model": "glm-4.6"}));
    assert_eq!(answer["isError"], false, "{answer}");
}

#[test]
fn the_default_falls_back_to_an_available_provider() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    // GLM, the default's provider, has no key.
    let daemon = Daemon::start_with(
        &dir.path().join("events.sock"),
        &[
            ("KIMI_API_KEY", "test-kimi-key".into()),
            ("KIMI_API_URL", llm.url("/v1")),
            ("GLM_API_KEY", String::new()),
            ("ZHIPUAI_API_KEY", String::new()),
        ],
    );
    let mut ws = connect(&daemon);
    let answer = chat(&mut ws, json!({"prompt": "anyone"}));
    assert_eq!(answer["isError"], false, "{answer}");
    assert_eq!(answer["structuredContent"]["model"], "kimi-k2.6");
    let auto = chat(&mut ws, json!({"prompt": "anyone", "model": "auto"}));
    assert_eq!(auto["structuredContent"]["provider"], "kimi");
    // Naming the unavailable provider's model says why it cannot be used.
    let named = chat(&mut ws, json!({"prompt": "x", "model": "glm-5"}));
    assert!(result_text(&json!({"result": named})).starts_with(
        "model glm-5 needs provider glm, which is unavailable: no API key: set GLM_API_KEY"
    ));
}
