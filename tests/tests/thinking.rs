//! Thinking models: the reasoning streamed before the answer is read, not mistaken for a
//! stall — the time to the first token (of any kind) comes before the time to the first
//! answer token, in the result and in the agent's metrics; reasoning and cached tokens
//! are counted exactly; progress says "thinking"; `thinking` and `max_tokens` reach each
//! provider's request in its own field; the reasoning never joins the thread.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::mcp::{self, result_text, RawWs};
use exai_tests::metrics::http_get;
use exai_tests::process::python_sdk;
use exai_tests::{Agent, Daemon};
use serde_json::{json, Value};

/// 1,500 ms of thinking at one reasoning token per 50 ms.
const REASONING_TOKENS: u64 = 30;

fn received(llm: &FakeLlmProc) -> Vec<Value> {
    let (_, body) = http_get(llm.port, "/_requests").unwrap();
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn chat(ws: &mut RawWs, args: Value) -> Value {
    ws.call_tool("chat", args)["result"].clone()
}

#[test]
fn a_thinking_chat_shows_both_first_token_times_and_counts_its_reasoning() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let llm = FakeLlmProc::start(&[]);
    let daemon = Daemon::with_llm(
        &socket,
        llm.port,
        &[("EXAI_PROGRESS_INTERVAL_MS", "200".into())],
    );
    let steps = python_sdk(&["thinking", &daemon.ws_url(), "glm-5"]);
    let result = &steps["thinking"];
    assert_eq!(result["validated"], true, "{result}");
    let s = &result["structured"];
    let ttft = s["time_to_first_token_ms"].as_u64().unwrap();
    let ttfa = s["time_to_first_answer_token_ms"].as_u64().unwrap();
    assert!(
        ttft < ttfa,
        "first token {ttft} ms, first answer token {ttfa} ms"
    );
    assert_eq!(s["usage"]["reasoning_tokens"], REASONING_TOKENS);
    assert_eq!(
        s["usage"]["output_tokens"],
        REASONING_TOKENS + 3,
        "reasoning + \"echo: think first\""
    );
    let steps_text: Vec<String> = (1..=REASONING_TOKENS).map(|i| format!("step{i}")).collect();
    assert_eq!(
        s["reasoning"],
        steps_text.join(" "),
        "include_reasoning returns it"
    );
    assert_eq!(s["answer"], "echo: think first");
    let messages: Vec<&str> = result["progress_messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("thinking: ")),
        "progress during thinking says so: {messages:?}"
    );

    // The agent: both histograms, the first token earlier; reasoning tokens exact.
    let model = [("provider", "glm"), ("model", "glm-5")];
    agent.wait_metric(
        "mcp_tokens_total",
        &[("type", "reasoning"), ("model", "glm-5")],
        |v| v == REASONING_TOKENS as f64,
    );
    let scrape = agent.scrape();
    let sum = |name| scrape.sum(name, &model);
    assert_eq!(sum("mcp_api_time_to_first_token_seconds_count"), 1.0);
    assert_eq!(sum("mcp_api_time_to_first_answer_token_seconds_count"), 1.0);
    assert!(
        sum("mcp_api_time_to_first_token_seconds_sum")
            < sum("mcp_api_time_to_first_answer_token_seconds_sum"),
        "{}",
        scrape.text
    );
}

#[test]
fn thinking_and_the_output_bound_reach_each_provider_in_its_own_field() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("events.sock");
    let agent = Agent::start(&socket);
    let llm = FakeLlmProc::start(&["--think-ms", "100"]);
    let daemon = Daemon::with_llm(&socket, llm.port, &[]);
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");

    let off = chat(
        &mut ws,
        json!({"prompt": "quick one", "model": "glm-5", "thinking": "disabled", "max_tokens": 64}),
    );
    assert_eq!(off["isError"], false, "{off}");
    assert_eq!(off["structuredContent"]["usage"]["reasoning_tokens"], 0);
    assert_eq!(off["structuredContent"]["thinking"], "disabled");
    let sent = received(&llm);
    let glm = &sent.last().unwrap()["body"];
    assert_eq!(glm["thinking"], json!({"type": "disabled"}), "{glm}");
    assert_eq!(glm["max_tokens"], 64);
    assert!(glm.get("max_completion_tokens").is_none());

    // Kimi K2.6 honours max_completion_tokens; auto leaves thinking to the model.
    let id = {
        let on = chat(
            &mut ws,
            json!({"prompt": "deep one", "model": "kimi-k2.6", "max_tokens": 64}),
        );
        assert_eq!(
            on["structuredContent"]["usage"]["reasoning_tokens"], 2,
            "{on}"
        );
        assert!(
            on["structuredContent"].get("reasoning").is_none(),
            "only with include_reasoning"
        );
        on["structuredContent"]["continuation_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kimi = received(&llm).last().unwrap()["body"].clone();
    assert_eq!(kimi["max_completion_tokens"], 64, "{kimi}");
    assert!(
        kimi.get("max_tokens").is_none() && kimi.get("thinking").is_none(),
        "{kimi}"
    );

    let enabled = chat(
        &mut ws,
        json!({"prompt": "and more", "model": "kimi-k2.6", "thinking": "enabled", "continuation_id": id}),
    );
    assert_eq!(enabled["isError"], false, "{enabled}");
    let body = received(&llm).last().unwrap()["body"].clone();
    assert_eq!(body["thinking"], json!({"type": "enabled"}));
    // The earlier turn went back as its answer only: no reasoning in the thread.
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "echo: deep one"})
    );
    // Moonshot reports what its cache served: the two earlier messages.
    assert_eq!(
        enabled["structuredContent"]["usage"]["cached_tokens"],
        2 + 3
    );

    // A model that never thinks cannot be asked to.
    let refused = chat(
        &mut ws,
        json!({"prompt": "x", "model": "moonshot-v1-8k", "thinking": "enabled"}),
    );
    assert_eq!(refused["isError"], true);
    assert!(result_text(&json!({"result": refused}))
        .starts_with("moonshot-v1-8k answers without thinking"));

    // Cached tokens add up exactly in the agent.
    agent.wait_metric(
        "mcp_tokens_total",
        &[("type", "cached"), ("model", "kimi-k2.6")],
        |v| v == 5.0,
    );
    agent.wait_metric(
        "mcp_tokens_total",
        &[("type", "reasoning"), ("model", "kimi-k2.6")],
        |v| v == 4.0,
    );
}
