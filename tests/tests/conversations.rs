//! Conversations that lose no turn: chats continuing one conversation at once through
//! two daemons sharing Redis, turns answered while Redis is down, and conversations an
//! older daemon wrote.

use exai_tests::conversation::{
    chat, continuation, key, sent_to_provider, session, status, stored_prompts, stored_turns, text,
};
use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::redis::RedisServer;
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Barrier};

/// A daemon keeping conversations in `redis_url`, its journal in `dir/journal`.
fn start_daemon(dir: &Path, llm: &FakeLlmProc, redis_url: &str, env: &[(&str, &str)]) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    let mut all = vec![
        ("REDIS_URL", redis_url.to_string()),
        (
            "EXAI_STORAGE_JOURNAL_DIR",
            dir.join("journal").display().to_string(),
        ),
    ];
    all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    Daemon::with_llm(&dir.join("events.sock"), llm.port, &all)
}

/// The journal's turn files in `dir/journal`.
fn journal_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("journal")).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".turn"))
            })
            .count()
    })
}

#[test]
fn sixteen_chats_continuing_one_conversation_through_two_daemons_keep_all_seventeen_turns() {
    let dir = tempfile::tempdir().unwrap();
    // Each answer takes a while, so that all sixteen read the conversation before any
    // adds to it: the race a read-modify-write loses.
    let llm = FakeLlmProc::start(&["--latency-ms", "300"]);
    let redis = RedisServer::start();
    let env = [("EXAI_WS_GLM_MAX_INFLIGHT", "16")];
    let daemons = [
        start_daemon(&dir.path().join("a"), &llm, &redis.url(), &env),
        start_daemon(&dir.path().join("b"), &llm, &redis.url(), &env),
    ];
    let mut ws = session(&daemons[0].ws_url());
    let id = continuation(&chat(&mut ws, "the first turn", None));

    let start = Arc::new(Barrier::new(16));
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let (url, id, start) = (daemons[i % 2].ws_url(), id.clone(), start.clone());
            std::thread::spawn(move || {
                let mut ws = session(&url);
                start.wait();
                chat(&mut ws, &format!("parallel turn {i}"), Some(&id))
            })
        })
        .collect();
    for call in calls {
        let result = call.join().expect("the chat thread");
        assert_eq!(
            result["structuredContent"]["history_available"], true,
            "{result}"
        );
    }

    let prompts = stored_prompts(&redis, &id);
    assert_eq!(prompts.len(), 17, "{prompts:?}");
    assert_eq!(prompts[0], "the first turn");
    let mut parallel = prompts[1..].to_vec();
    parallel.sort();
    let mut expected: Vec<String> = (0..16).map(|i| format!("parallel turn {i}")).collect();
    expected.sort();
    assert_eq!(parallel, expected, "every turn once");
    // And the next chat is sent all seventeen.
    let next = chat(&mut ws, "what did we say?", Some(&id));
    assert_eq!(next["structuredContent"]["history_turns"], 17, "{next}");
    assert_eq!(sent_to_provider(&llm, "what did we say?").len(), 35);
}

#[test]
fn turns_answered_while_redis_is_down_join_their_conversation_in_order_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let mut redis = RedisServer::start();
    let daemon = start_daemon(
        dir.path(),
        &llm,
        &redis.url(),
        &[("MAX_CONVERSATION_TURNS", "200")],
    );
    let mut ws = session(&daemon.ws_url());
    let id = continuation(&chat(&mut ws, "before the outage", None));

    redis.kill();
    for i in 0..100 {
        let result = chat(&mut ws, &format!("while Redis is down {i}"), Some(&id));
        assert_eq!(
            result["structuredContent"]["history_available"], false,
            "{result}"
        );
        let said = text(&result);
        assert!(
            said.contains("[conversation history unavailable: redis storage unavailable"),
            "{said}"
        );
        assert!(
            said.contains(
                "this turn was kept on disk and joins the conversation when Redis takes it"
            ),
            "{said}"
        );
    }
    assert_eq!(journal_files(dir.path()), 100);
    let journal = status(&mut ws)["storage"]["journal"].clone();
    assert_eq!(
        (&journal["turns"], &journal["refused"]),
        (&json!(100), &json!(0)),
        "{journal}"
    );

    redis.restart();
    let prompts = wait_for("all 101 turns in the conversation", PATIENCE, || {
        let prompts = stored_prompts(&redis, &id);
        (prompts.len() >= 101).then_some(prompts)
    });
    let mut expected = vec!["before the outage".to_string()];
    expected.extend((0..100).map(|i| format!("while Redis is down {i}")));
    assert_eq!(prompts, expected, "every turn once, in the order answered");
    let journal = wait_for("the journal to empty", PATIENCE, || {
        let journal = status(&mut ws)["storage"]["journal"].clone();
        (journal["turns"] == 0).then_some(journal)
    });
    assert_eq!(
        journal,
        json!({"turns": 0, "bytes": 0, "max_bytes": 64 << 20, "refused": 0, "damaged": 0,
               "replayed": 100, "discarded": 0})
    );
    assert_eq!(journal_files(dir.path()), 0);
    daemon
        .proc
        .wait_for_log("storage journal: every kept turn is in its conversation");
    let after = chat(&mut ws, "and after?", Some(&id));
    assert_eq!(
        after["structuredContent"]["history_available"], true,
        "{after}"
    );
    assert_eq!(after["structuredContent"]["history_turns"], 101);
}

#[test]
fn turns_kept_in_the_journal_survive_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let mut redis = RedisServer::start();
    let mut daemon = start_daemon(dir.path(), &llm, &redis.url(), &[]);
    let mut ws = session(&daemon.ws_url());
    let id = continuation(&chat(&mut ws, "first", None));
    redis.kill();
    for prompt in ["second", "third"] {
        let result = chat(&mut ws, prompt, Some(&id));
        assert!(
            text(&result).contains("this turn was kept on disk"),
            "{result}"
        );
    }
    drop(ws);
    daemon.proc.kill_hard();

    redis.restart();
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &[]);
    daemon
        .proc
        .wait_for_log("storage journal: turns kept while Redis was away wait for it");
    let prompts = wait_for("the kept turns in the conversation", PATIENCE, || {
        let prompts = stored_prompts(&redis, &id);
        (prompts.len() >= 3).then_some(prompts)
    });
    assert_eq!(prompts, ["first", "second", "third"]);
    wait_for("the journal to empty", PATIENCE, || {
        (journal_files(dir.path()) == 0).then_some(())
    });
}

#[test]
fn a_conversation_an_older_daemon_wrote_is_continued_with_its_turns_and_becomes_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let redis = RedisServer::start();
    // As daemons before the list layout wrote it: one JSON string, set whole.
    let older = json!({"turns": [
        {"user": "an old question", "assistant": "an old answer", "model": "glm-4.5-flash", "at_unix_ms": 1_732_480_000_000u64},
        {"user": "a second question", "assistant": "a second answer", "model": "glm-4.5-flash", "at_unix_ms": 1_732_480_001_000u64},
    ]});
    let key = key("older-thread");
    redis.command(&["SET", &key, &older.to_string(), "EX", "3600"]);
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &[]);
    let mut ws = session(&daemon.ws_url());

    let result = chat(&mut ws, "do you remember?", Some("older-thread"));
    assert_eq!(
        result["structuredContent"]["history_available"], true,
        "{result}"
    );
    assert_eq!(result["structuredContent"]["history_turns"], 2);
    assert_eq!(
        sent_to_provider(&llm, "do you remember?"),
        [
            ("user", "an old question"),
            ("assistant", "an old answer"),
            ("user", "a second question"),
            ("assistant", "a second answer"),
            ("user", "do you remember?"),
        ]
        .map(|(r, c)| (r.to_string(), c.to_string()))
    );

    // Converted on that append: a list of the old turns and the new one.
    assert_eq!(
        redis.command(&["TYPE", &key]).text().as_deref(),
        Some("list")
    );
    let turns = stored_turns(&redis, "older-thread");
    assert_eq!(turns.len(), 3);
    assert_eq!(turns[0], older["turns"][0]);
    assert_eq!(turns[1], older["turns"][1]);
    assert_eq!(turns[2]["user"], "do you remember?");
    let ttl = redis.command(&["TTL", &key]).integer();
    assert!(ttl > 3 * 3600 - 60, "the time to live restarted: {ttl}");
    let next = chat(&mut ws, "and now?", Some("older-thread"));
    assert_eq!(next["structuredContent"]["history_turns"], 3, "{next}");
}

#[test]
fn turns_kept_for_a_conversation_an_older_daemon_wrote_are_replayed_into_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeLlmProc::start(&[]);
    let mut redis = RedisServer::start();
    let older = json!({"turns": [
        {"user": "an old question", "assistant": "an old answer", "model": "glm-4.5-flash", "at_unix_ms": 1_732_480_000_000u64},
    ]});
    redis.command(&["SET", &key("older-thread"), &older.to_string()]);
    let daemon = start_daemon(dir.path(), &llm, &redis.url(), &[]);
    let mut ws = session(&daemon.ws_url());
    redis.kill();
    for prompt in ["kept one", "kept two"] {
        let result = chat(&mut ws, prompt, Some("older-thread"));
        assert!(
            text(&result).contains("this turn was kept on disk"),
            "{result}"
        );
    }
    redis.restart();
    let prompts = wait_for("the kept turns in the conversation", PATIENCE, || {
        let prompts = stored_prompts(&redis, "older-thread");
        (prompts.len() >= 3).then_some(prompts)
    });
    assert_eq!(prompts, ["an old question", "kept one", "kept two"]);
    assert_eq!(
        redis
            .command(&["TYPE", &key("older-thread")])
            .text()
            .as_deref(),
        Some("list")
    );
    let journal = wait_for("the journal to empty", PATIENCE, || {
        let journal = status(&mut ws)["storage"]["journal"].clone();
        (journal["turns"] == 0).then_some(journal)
    });
    assert_eq!(
        (&journal["replayed"], &journal["discarded"]),
        (&json!(2), &json!(0))
    );
}
