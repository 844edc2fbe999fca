//! The `fake-postgrest` binary speaks the PostgREST subset the daemon relies on, with
//! PostgREST's statuses and error bodies, and its fault modes switch at run time.

use exai_tests::fake_postgrest::{request, FakePostgrest, Fault};
use exai_tests::{wait_for, PATIENCE};
use serde_json::{json, Value};

fn post(fake: &FakePostgrest, path: &str, prefer: Option<&str>, body: &Value) -> (u16, Value) {
    let bearer = format!("Bearer {}", fake.key());
    let mut headers = vec![("apikey", fake.key()), ("Authorization", bearer.as_str())];
    if let Some(p) = prefer {
        headers.push(("Prefer", p));
    }
    let (status, text) = request(fake.port(), "POST", path, &headers, &body.to_string()).unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn upserts_inserts_and_selects_like_postgrest() {
    let fake = FakePostgrest::start();
    let merge = Some("resolution=merge-duplicates,return=minimal");
    let conversation =
        json!([{"id": "c1", "model": "glm-4.5-flash", "updated_at": "2026-01-01T00:00:00.000Z"}]);
    assert_eq!(
        post(
            &fake,
            "/rest/v1/conversations?on_conflict=id",
            merge,
            &conversation
        ),
        (201, Value::Null)
    );
    let message = |content: &str| json!([{"id": "m1", "conversation_id": "c1", "role": "user", "content": content}]);
    assert_eq!(
        post(
            &fake,
            "/rest/v1/messages?on_conflict=id",
            merge,
            &message("one")
        )
        .0,
        201
    );
    let (status, body) = post(
        &fake,
        "/rest/v1/messages?on_conflict=id",
        Some("resolution=merge-duplicates,return=representation"),
        &message("two"),
    );
    assert_eq!((status, &body[0]["content"]), (201, &json!("two")));
    // Without the resolution preference a duplicate key is a conflict.
    let (status, body) = post(&fake, "/rest/v1/messages", None, &message("three"));
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("23505")),
        "{body}"
    );
    let (status, body) = post(
        &fake,
        "/rest/v1/messages",
        merge,
        &json!({"id": "m2", "conversation_id": "nope", "role": "user", "content": "x"}),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("23503")),
        "{body}"
    );

    let rows = fake.rows("messages", &[("conversation_id", "c1")]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["content"], "two");
    assert!(fake.rows("messages", &[("role", "assistant")]).is_empty());
    let stats = fake.stats();
    assert_eq!(stats.tables["messages"].rows, 1);
    assert_eq!(stats.tables["messages"].duplicates, 1);
    assert_eq!(stats.by_status["409"], 2);
}

#[test]
fn wrong_keys_get_supabase_and_postgrest_401s() {
    let fake = FakePostgrest::start();
    let row = json!({"id": "c"}).to_string();
    let (status, text) = request(
        fake.port(),
        "POST",
        "/rest/v1/conversations",
        &[("apikey", "nope")],
        &row,
    )
    .unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["message"],
        "Invalid API key"
    );
    let (status, text) = request(
        fake.port(),
        "POST",
        "/rest/v1/conversations",
        &[("apikey", fake.key()), ("Authorization", "Bearer nope")],
        &row,
    )
    .unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["code"],
        "PGRST301"
    );
    assert!(fake.rows("conversations", &[]).is_empty());
}

#[test]
fn faults_switch_at_run_time() {
    let fake = FakePostgrest::start();
    let row = json!({"id": "c"});
    fake.set_fault(Some(Fault::Unavailable));
    assert_eq!(post(&fake, "/rest/v1/conversations", None, &row).0, 503);
    fake.set_fault(Some(Fault::Unauthorized));
    assert_eq!(post(&fake, "/rest/v1/conversations", None, &row).0, 401);
    fake.set_fault(Some(Fault::Stall));
    let port = fake.port();
    let key = fake.key().to_string();
    // Taken and never answered: the request is counted while its client still waits.
    std::thread::spawn(move || {
        let _ = request(
            port,
            "POST",
            "/rest/v1/conversations",
            &[("apikey", &key)],
            "{}",
        );
    });
    wait_for("the stalled request to arrive", PATIENCE, || {
        (fake.stats().by_status.get("stalled") == Some(&1)).then_some(())
    });
    fake.set_fault(None);
    assert_eq!(post(&fake, "/rest/v1/conversations", None, &row).0, 201);
    let stats = fake.stats();
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.fault, None);
    let (status, _) = request(port, "POST", "/_control", &[], r#"{"fault": "teapot"}"#).unwrap();
    assert_eq!(status, 400);
}
