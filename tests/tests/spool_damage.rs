//! A daemon started on a damaged spool loses only the damaged record and uploads every
//! intact one: a record cut short mid-segment, a flipped byte mid-segment, a cursor that
//! names a segment past the end, a segment with a huge number. None of them hangs the
//! uploader, deletes a segment unasked, or keeps SIGTERM from stopping the daemon.

use exai_tests::fake_llm::FakeLlmProc;
use exai_tests::fake_postgrest::FakePostgrest;
use exai_tests::mcp;
use exai_tests::spool::{record, segment};
use exai_tests::{wait_for, Daemon, PATIENCE};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

/// Records per segment, and segments: twelve turns, as the finding measured them.
const PER_SEGMENT: usize = 4;
const SEGMENTS: u64 = 3;

fn prompt(n: usize) -> String {
    format!("turn-{n:02}")
}

/// Three segments of four records each; `damage` may change a segment's bytes given the
/// offsets where its records start. Returns every prompt written.
fn seed(dir: &Path, damage: impl Fn(u64, &mut Vec<u8>, &[usize])) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut prompts = Vec::new();
    for s in 0..SEGMENTS {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for r in 0..PER_SEGMENT {
            let n = s as usize * PER_SEGMENT + r;
            starts.push(bytes.len());
            bytes.extend(record(&format!("conv-{n}"), &prompt(n), 1_000 * n as u64));
            prompts.push(prompt(n));
        }
        damage(s + 1, &mut bytes, &starts);
        std::fs::write(segment(dir, s + 1), bytes).unwrap();
    }
    prompts
}

fn start(dir: &Path, llm: &FakeLlmProc, fake: &FakePostgrest) -> Daemon {
    Daemon::with_llm(
        &dir.join("events.sock"),
        llm.port,
        &[
            ("SUPABASE_URL", fake.url()),
            ("SUPABASE_SERVICE_ROLE_KEY", fake.key().to_string()),
            ("EXAI_SPOOL_DIR", dir.join("spool").display().to_string()),
        ],
    )
}

fn uploaded(fake: &FakePostgrest) -> BTreeSet<String> {
    fake.rows("messages", &[("role", "user")])
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_string())
        .collect()
}

/// Starts a daemon on the seeded spool and checks that exactly `expected` arrive, that a
/// new turn follows them, and that SIGTERM stops the daemon.
fn uploads_exactly(dir: &Path, expected: BTreeSet<String>) -> Daemon {
    let llm = FakeLlmProc::start(&[]);
    let fake = FakePostgrest::start();
    let mut daemon = start(dir, &llm, &fake);
    wait_for(
        &format!("{} intact turns uploaded", expected.len()),
        PATIENCE,
        || (uploaded(&fake) == expected).then_some(()),
    );
    let mut ws = mcp::connect(&daemon.ws_url(), &[]).unwrap();
    ws.initialize("2025-11-25");
    let answer = ws.call_tool("chat", json!({"prompt": "after-restart"}));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    wait_for("the new turn uploaded", PATIENCE, || {
        uploaded(&fake).contains("after-restart").then_some(())
    });
    assert_eq!(uploaded(&fake).len(), expected.len() + 1);
    drop(ws);
    let status = daemon.proc.terminate();
    assert!(status.success(), "SIGTERM ends the daemon: {status:?}");
    daemon
}

fn all_but(prompts: &[String], lost: &[usize]) -> BTreeSet<String> {
    prompts
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost.contains(i))
        .map(|(_, p)| p.clone())
        .collect()
}

#[test]
fn a_record_cut_short_mid_segment_loses_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // The second record of the second segment lost its last 20 bytes.
    let prompts = seed(&spool, |s, bytes, starts| {
        if s == 2 {
            let end = starts[2];
            bytes.drain(end - 20..end);
        }
    });
    let daemon = uploads_exactly(dir.path(), all_but(&prompts, &[5]));
    daemon
        .proc
        .wait_for_log("spool: skipping an unreadable record");
}

#[test]
fn a_flipped_byte_mid_segment_loses_only_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // In the newest segment, where a crash's torn tail is cut at start: damage before
    // whole records is not a torn tail.
    let prompts = seed(&spool, |s, bytes, starts| {
        if s == SEGMENTS {
            bytes[starts[1] + 40] ^= 0x04;
        }
    });
    uploads_exactly(dir.path(), all_but(&prompts, &[9]));
}

#[test]
fn a_cursor_past_the_last_segment_deletes_nothing_and_everything_is_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let prompts = seed(&spool, |_, _, _| {});
    std::fs::write(spool.join("cursor"), "exai-spool-cursor v1 9000 0\n").unwrap();
    let daemon = uploads_exactly(dir.path(), all_but(&prompts, &[]));
    daemon
        .proc
        .wait_for_log("the cursor names a segment that is not in the spool");
}

#[test]
fn a_segment_with_a_huge_number_is_read_in_turn_and_sigterm_still_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut prompts = seed(&spool, |_, _, _| {});
    std::fs::write(
        segment(&spool, u64::MAX - 7),
        record("conv-huge", "turn-huge", 99_000),
    )
    .unwrap();
    prompts.push("turn-huge".into());
    uploads_exactly(dir.path(), prompts.into_iter().collect());
}
