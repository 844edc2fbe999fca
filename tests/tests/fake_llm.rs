//! The real `fake-llm` binary speaks the chat-completions wire format as Moonshot (Kimi)
//! and Z.ai (GLM) do today — usage shapes, thinking, model lists, unknown models — and
//! fails on request the ways their APIs do.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::PATIENCE;
use futures_util::StreamExt;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "sk-fake-test-key";

/// Long enough for a local answer, short enough to show a stall.
const SHORT: Duration = Duration::from_millis(300);

fn start() -> FakeLlmProc {
    FakeLlmProc::start(&["--key", KEY])
}

fn chat(message: &str, stream: bool) -> Value {
    json!({
        "model": "kimi-k2.6",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": message},
        ],
        "temperature": 0.3,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

async fn post(fake: &FakeLlmProc, body: &Value) -> Response {
    Client::new()
        .post(fake.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("fake-llm answers")
}

async fn json_of(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// The `data:` payloads of an event stream, and how the body ended.
async fn events(response: Response) -> (Vec<String>, Result<(), reqwest::Error>) {
    let mut text = String::new();
    let mut body = response.bytes_stream();
    let mut end = Ok(());
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => text.push_str(std::str::from_utf8(&bytes).expect("UTF-8 events")),
            Err(e) => {
                end = Err(e);
                break;
            }
        }
    }
    let data = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect();
    (data, end)
}

fn assert_error(body: &Value, kind: &str, code: &str) {
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

async fn stats(fake: &FakeLlmProc) -> Value {
    json_of(Client::new().get(fake.url("/_stats")).send().await.unwrap()).await
}

#[tokio::test]
async fn a_plain_request_gets_the_echo_and_word_counts() {
    let fake = start();
    let response = post(&fake, &chat("hello there world", false)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_of(response).await;
    assert!(
        body["id"].as_str().unwrap().starts_with("chatcmpl-"),
        "{body}"
    );
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "kimi-k2.6");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "echo: hello there world");
    assert!(choice["message"].get("reasoning_content").is_none());
    assert_eq!(choice["finish_reason"], "stop");
    // "be brief" + "hello there world"; "echo:" + three words; "be brief" came before
    // the last message (Moonshot puts cached_tokens directly in usage).
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9, "cached_tokens": 2,
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );

    // GLM's base path answers as Z.ai.
    let mut glm = chat("glm here", false);
    glm["model"] = "glm-4.5-flash".into();
    let response = Client::new()
        .post(fake.url("/api/paas/v4/chat/completions"))
        .bearer_auth(KEY)
        .json(&glm)
        .send()
        .await
        .unwrap();
    let body = json_of(response).await;
    assert_eq!(body["choices"][0]["message"]["content"], "echo: glm here");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7,
               "completion_tokens_details": {"reasoning_tokens": 0}, "prompt_tokens_details": {"cached_tokens": 2}})
    );
}

#[tokio::test]
async fn a_stream_reassembles_to_the_same_text_and_ends_with_usage_then_done() {
    let fake = start();
    let response = post(&fake, &chat("hello  there world", true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (data, end) = events(response).await;
    end.expect("the stream ends cleanly");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));

    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("each chunk is JSON"))
        .collect();
    let (last, content) = chunks.split_last().unwrap();
    let id = &chunks[0]["id"];
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], "kimi-k2.6");
        let role = &chunk["choices"][0]["delta"]["role"];
        assert_eq!(role.as_str(), (i == 0).then_some("assistant"), "{chunk}");
    }
    let text: String = content
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "echo: hello  there world");
    assert_eq!(content.len(), 4, "one chunk per word");
    assert!(content.iter().all(|c| c.get("usage").is_none()));

    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    // Moonshot streams usage inside the closing choice.
    assert!(last.get("usage").is_none(), "{last}");
    assert_eq!(
        last["choices"][0]["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9, "cached_tokens": 2,
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
}

async fn post_to(fake: &FakeLlmProc, path: &str, body: &Value) -> Response {
    Client::new()
        .post(fake.url(path))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("fake-llm answers")
}

#[tokio::test]
async fn a_thinking_model_streams_its_reasoning_before_the_answer() {
    let fake = FakeLlmProc::start(&["--key", KEY, "--think-ms", "200"]);
    let mut body = chat("why [think:100]", true);
    body["model"] = "glm-5".into();
    let response = post_to(&fake, "/api/paas/v4/chat/completions", &body).await;
    let (data, end) = events(response).await;
    end.unwrap();
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let reasoning: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    // 200 ms configured + 100 ms asked, one step per 50 ms.
    assert_eq!(reasoning.concat(), "step1 step2 step3 step4 step5 step6");
    let first_answer = chunks
        .iter()
        .position(|c| c["choices"][0]["delta"]["content"].is_string())
        .unwrap();
    assert_eq!(
        first_answer, 6,
        "every reasoning chunk comes before the answer"
    );
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 6);
    assert_eq!(usage["completion_tokens"], 6 + 2);

    // Disabled thinking: no reasoning at all, and the request recorded what it asked.
    body["thinking"] = json!({"type": "disabled"});
    body["stream"] = false.into();
    let whole = json_of(post_to(&fake, "/api/paas/v4/chat/completions", &body).await).await;
    assert!(
        whole["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{whole}"
    );
    assert_eq!(
        whole["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    let log = json_of(
        Client::new()
            .get(fake.url("/_requests"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(log[1]["body"]["thinking"], json!({"type": "disabled"}));

    // A whole answer carries its reasoning in the message.
    body["thinking"] = json!({"type": "enabled"});
    let whole = json_of(post_to(&fake, "/api/paas/v4/chat/completions", &body).await).await;
    assert_eq!(
        whole["choices"][0]["message"]["reasoning_content"],
        "step1 step2 step3 step4 step5 step6"
    );
}

#[tokio::test]
async fn each_provider_lists_its_models_and_refuses_others_its_own_way() {
    let fake = FakeLlmProc::start(&[
        "--key",
        KEY,
        "--extra-models",
        "glm:glm-9-preview",
        "--no-model-list",
        "kimi",
    ]);
    let list = |path: &'static str| {
        let url = fake.url(path);
        async move {
            Client::new()
                .get(url)
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
        }
    };
    let glm = json_of(list("/api/paas/v4/models").await).await;
    let ids: Vec<&str> = glm["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"glm-4.5-flash") && ids.contains(&"glm-9-preview"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"kimi-k2.6"));
    assert_eq!(list("/v1/models").await.status(), StatusCode::NOT_FOUND);

    let mut body = chat("hi", false);
    body["model"] = "kimi-k2-0905-preview".into();
    let response = post_to(&fake, "/v1/chat/completions", &body).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(response).await,
        json!({"error": {"message": "Not found the model kimi-k2-0905-preview or Permission denied",
                         "type": "resource_not_found_error"}})
    );
    body["model"] = "glm-0".into();
    let response = post_to(&fake, "/api/paas/v4/chat/completions", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refusal = json_of(response).await;
    assert_eq!(refusal["error"]["code"], "1211");
    assert_eq!(
        refusal["error"]["message"],
        "Unknown Model, please check the model code."
    );
    body["model"] = "glm-9-preview".into();
    assert_eq!(
        post_to(&fake, "/api/paas/v4/chat/completions", &body)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_stream_the_client_drops_is_counted_as_abandoned() {
    let fake = start();
    let response = post(&fake, &chat("[fault:stall-stream] one two", true)).await;
    let mut body = response.bytes_stream();
    assert!(body.next().await.unwrap().is_ok());
    drop(body);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats(&fake).await["abandoned"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drop was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A stream read to its end is not.
    let (_, end) = events(post(&fake, &chat("whole", true)).await).await;
    end.unwrap();
    assert_eq!(stats(&fake).await["abandoned"], 1);
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401() {
    let fake = start();
    let url = fake.url("/v1/chat/completions");
    let body = chat("hi", false);
    let response = Client::new().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_error(
        &json_of(response).await,
        "authentication_error",
        "invalid_api_key",
    );
    let response = Client::new()
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Without --key any key will do, but not none.
    let open = FakeLlmProc::start(&[]);
    let url = open.url("/v1/chat/completions");
    let response = Client::new()
        .post(&url)
        .bearer_auth("sk-anything")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = Client::new().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rate_limits_and_server_errors_look_like_the_real_ones() {
    let fake = start();
    let response = post(&fake, &chat("[fault:429 retry-after=2] slow down", false)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_error(
        &json_of(response).await,
        "rate_limit_error",
        "rate_limit_exceeded",
    );
    let response = post(&fake, &chat("[fault:429]", true)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");

    for (directive, status) in [
        ("[fault:500]", StatusCode::INTERNAL_SERVER_ERROR),
        ("[fault:503]", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let response = post(&fake, &chat(directive, false)).await;
        assert_eq!(response.status(), status);
        let body = json_of(response).await;
        assert_eq!(body["error"]["type"], "server_error", "{body}");
    }
}

#[tokio::test]
async fn a_counted_fault_fails_exactly_that_many_times_then_answers() {
    let fake = start();
    let message = "[fault:500x2] please retry me";
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post(&fake, &chat(message, false)).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK,
            StatusCode::OK
        ]
    );
    let body = json_of(post(&fake, &chat(message, false)).await).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: please retry me"
    );
    // Another message has its own count.
    let other = post(&fake, &chat("[fault:500x2] someone else", false)).await;
    assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let stats = stats(&fake).await;
    assert_eq!(stats["requests"], 6);
    assert_eq!(stats["by_fault"]["500"], 3);
}

#[tokio::test]
async fn a_cut_response_ends_early_without_done() {
    let fake = start();
    let message = "[fault:cut] one two three four five six seven eight";
    let response = post(&fake, &chat(message, true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (data, end) = events(response).await;
    assert!(end.is_err(), "the connection should drop mid-stream");
    assert!(!data.is_empty() && data.len() < 9, "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");

    let response = post(&fake, &chat(message, false)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let declared = response.content_length().unwrap();
    let body = response.bytes().await;
    assert!(body.is_err(), "a body of {declared} bytes was promised");
}

#[tokio::test]
async fn malformed_bodies_do_not_parse() {
    let fake = start();
    let response = post(&fake, &chat("[fault:malformed] hi", false)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    let response = post(&fake, &chat("[fault:malformed] hi", true)).await;
    let (data, end) = events(response).await;
    end.unwrap();
    assert!(serde_json::from_str::<Value>(&data[0]).is_err(), "{data:?}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_stalled_request_gets_no_answer() {
    let fake = start();
    let client = Client::builder().timeout(SHORT).build().unwrap();
    let err = client
        .post(fake.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat("[fault:stall] anyone there", false))
        .send()
        .await
        .expect_err("a stalled request must not be answered");
    assert!(err.is_timeout(), "{err}");

    // A stalled stream sends its headers and first chunk, then nothing.
    let response = post(&fake, &chat("[fault:stall-stream] one two three", true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {"), "{first:?}");
    let next = tokio::time::timeout(SHORT, body.next()).await;
    assert!(next.is_err(), "nothing should follow the first chunk");

    // The server is still answering others.
    let response = post(&fake, &chat("still here", false)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_request_log_shows_request_ids_and_never_the_key() {
    let fake = start();
    let response = Client::new()
        .post(fake.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "req-42")
        .json(&chat("logged", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = Client::new()
        .post(fake.url("/v1/chat/completions"))
        .json(&chat("no key", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let raw = Client::new()
        .get(fake.url("/_requests"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!raw.contains(KEY), "the key leaked: {raw}");
    let log: Value = serde_json::from_str(&raw).unwrap();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["path"], "/v1/chat/completions");
    assert_eq!(log[0]["headers"]["authorization"], true);
    assert_eq!(log[0]["headers"]["x-request-id"], "req-42");
    assert_eq!(log[0]["body"]["messages"][1]["content"], "logged");
    assert_eq!(log[1]["headers"]["authorization"], false);
    assert_eq!(log[1]["headers"]["x-request-id"], Value::Null);

    let cleared = Client::new()
        .delete(fake.url("/_requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let log = json_of(
        Client::new()
            .get(fake.url("/_requests"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(log, json!([]));

    // Requests are not logged to stderr: only the listening line is there.
    assert_eq!(fake.proc.log().len(), 1, "{:?}", fake.proc.log());
}

#[tokio::test]
async fn the_control_endpoint_fails_the_next_requests_then_recovers() {
    let fake = start();
    let control = |body: Value| {
        let url = fake.url("/_control");
        async move { Client::new().post(url).json(&body).send().await.unwrap() }
    };
    let armed = control(json!({"fault": "503", "count": 2})).await;
    assert_eq!(armed.status(), StatusCode::OK);
    let mut statuses = Vec::new();
    for message in ["a", "b", "c"] {
        statuses.push(post(&fake, &chat(message, false)).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::OK
        ]
    );

    control(json!({"fault": "429", "retry_after": 3})).await;
    for _ in 0..3 {
        let response = post(&fake, &chat("any", false)).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3");
    }
    control(json!({"fault": null})).await;
    assert_eq!(
        post(&fake, &chat("any", false)).await.status(),
        StatusCode::OK
    );

    let bad = control(json!({"fault": "teapot"})).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let stats = stats(&fake).await;
    assert_eq!(stats["requests"], 7);
    assert_eq!(stats["by_fault"]["503"], 2);
    assert_eq!(stats["by_fault"]["429"], 3);
}

#[tokio::test]
async fn bad_requests_get_openai_style_errors() {
    let fake = start();
    let url = fake.url("/v1/chat/completions");
    let send = |body: Vec<u8>| {
        let url = url.clone();
        async move {
            Client::new()
                .post(url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let response = send(b"{\"model\": ".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &json_of(response).await,
        "invalid_request_error",
        "invalid_json",
    );
    let response = send(br#"{"model": "m", "messages": []}"#.to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = send(serde_json::to_vec(&chat("[fault:teapot]", false)).unwrap()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &json_of(response).await,
        "invalid_request_error",
        "invalid_directive",
    );
    let response = send(vec![b' '; 8 * 1024 * 1024 + 1]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn sigterm_stops_the_server_even_with_a_request_stalled() {
    let mut fake = start();
    let url = fake.url("/v1/chat/completions");
    let stalled = tokio::spawn(async move {
        Client::new()
            .post(url)
            .bearer_auth(KEY)
            .json(&chat("[fault:stall] wait", false))
            .send()
            .await
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stats(&fake).await["requests"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::task::spawn_blocking(move || fake.proc.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let outcome = stalled.await.unwrap();
    assert!(
        outcome.is_err(),
        "the stalled request cannot have been answered"
    );
}
