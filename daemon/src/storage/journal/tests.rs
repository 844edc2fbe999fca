use super::*;
use std::fs;

const WAIT: Duration = Duration::from_secs(10);

fn turn(user: &str) -> Turn {
    Turn {
        user: user.into(),
        assistant: format!("echo: {user}"),
        model: "glm-4.5-flash".into(),
        at_unix_ms: 1_732_480_000_000,
    }
}

async fn keep(journal: &Journal, id: &str, user: &str) {
    match journal.keep(id, &turn(user)).await {
        Kept::Written => {}
        other => panic!("{user} of {id} not written: {other:?}"),
    }
}

/// Every turn the journal holds, oldest first, as (conversation, prompt).
fn held(journal: &Journal) -> Vec<(String, String)> {
    let seqs = journal.oldest(usize::MAX);
    journal
        .read(&seqs)
        .into_iter()
        .map(|(_, r)| {
            let r = r.expect("readable");
            (r.conversation, r.turn.user)
        })
        .collect()
}

fn turn_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "turn"))
        .collect();
    files.sort();
    files
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn nothing_is_created_until_a_turn_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("journal/host:8079");
    let journal = Journal::open(&dir, 1 << 20, WAIT).unwrap();
    assert!(!dir.exists());
    assert!(journal.is_empty());
    keep(&journal, "c1", "q0").await;
    assert_eq!(turn_files(&dir).len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&turn_files(&dir)[0]), 0o600);
    }
}

#[tokio::test]
async fn turns_come_back_in_the_order_they_were_kept_and_leave_when_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
    for (id, user) in [
        ("a", "a0"),
        ("b", "b0"),
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
    ] {
        keep(&journal, id, user).await;
    }
    assert!(journal.holds("a") && journal.holds("b") && !journal.holds("c"));
    assert_eq!(
        held(&journal),
        pairs(&[
            ("a", "a0"),
            ("b", "b0"),
            ("a", "a1"),
            ("a", "a2"),
            ("b", "b1")
        ])
    );
    let first_three = journal.oldest(3);
    journal.remove(&[
        (first_three[0], Outcome::Replayed),
        (first_three[1], Outcome::Replayed),
        (first_three[2], Outcome::Discarded),
    ]);
    assert_eq!(held(&journal), pairs(&[("a", "a2"), ("b", "b1")]));
    assert_eq!(turn_files(dir.path()).len(), 2);
    let rest = journal.oldest(10);
    journal.remove(&[(rest[0], Outcome::Replayed), (rest[1], Outcome::Replayed)]);
    assert!(!journal.holds("a") && !journal.holds("b"));
    assert!(journal.is_empty());
    assert!(turn_files(dir.path()).is_empty());
    let stats = journal.stats();
    assert_eq!(
        (stats.turns, stats.bytes, stats.replayed, stats.discarded),
        (0, 0, 4, 1)
    );
}

#[tokio::test]
async fn the_journal_is_bounded_and_a_turn_past_it_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let one = file::encode(&Record {
        conversation: "c".into(),
        turn: turn("q0"),
    })
    .unwrap()
    .len() as u64;
    let journal = Journal::open(dir.path(), 3 * one, WAIT).unwrap();
    for i in 0..3 {
        keep(&journal, "c", &format!("q{i}")).await;
    }
    match journal.keep("c", &turn("q3")).await {
        Kept::Refused(e @ JournalError::Full { .. }) => assert!(
            e.to_string().contains("EXAI_STORAGE_JOURNAL_MAX_BYTES"),
            "{e}"
        ),
        other => panic!("expected full, got {other:?}"),
    }
    let stats = journal.stats();
    assert_eq!(
        (stats.turns, stats.bytes, stats.max_bytes, stats.refused),
        (3, 3 * one, 3 * one, 1)
    );
    assert_eq!(turn_files(dir.path()).len(), 3);
    // Room again once a turn leaves.
    journal.remove(&[(journal.oldest(1)[0], Outcome::Replayed)]);
    keep(&journal, "c", "q4").await;
    let users: Vec<String> = held(&journal).into_iter().map(|(_, u)| u).collect();
    assert_eq!(users, ["q1", "q2", "q4"]);
}

#[tokio::test]
async fn kept_turns_survive_reopening_and_numbering_goes_on_after_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
        keep(&journal, "a", "a0").await;
        keep(&journal, "b", "b0").await;
        keep(&journal, "a", "a1").await;
    }
    let journal = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
    assert_eq!(journal.stats().turns, 3);
    assert!(journal.holds("a"));
    keep(&journal, "a", "a2").await;
    assert_eq!(
        held(&journal),
        pairs(&[("a", "a0"), ("b", "b0"), ("a", "a1"), ("a", "a2")])
    );
}

#[tokio::test]
async fn a_damaged_record_is_skipped_and_counted_and_the_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
        for i in 0..5 {
            keep(&journal, "c", &format!("q{i}")).await;
        }
    }
    let files = turn_files(dir.path());
    // A flipped byte in one, another emptied (a power loss), and a crash's leftover.
    let mut bytes = fs::read(&files[1]).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    fs::write(&files[1], bytes).unwrap();
    fs::write(&files[3], b"").unwrap();
    let leftover = dir.path().join("turn-00000000000000000009.turn.tmp");
    fs::write(&leftover, b"half a turn").unwrap();

    let journal = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
    let users: Vec<String> = held(&journal).into_iter().map(|(_, u)| u).collect();
    assert_eq!(users, ["q0", "q2", "q4"]);
    assert_eq!(journal.stats().damaged, 2);
    assert_eq!(
        turn_files(dir.path()).len(),
        3,
        "damaged records are deleted"
    );
    assert!(!leftover.exists());

    // Damage found while replaying is skipped the same way.
    fs::write(&turn_files(dir.path())[1], b"exai-journal v1 00000000\n{}").unwrap();
    let read = journal.read(&journal.oldest(10));
    let found: Vec<Option<String>> = read
        .iter()
        .map(|(_, r)| r.as_ref().map(|r| r.turn.user.clone()))
        .collect();
    assert_eq!(found, [Some("q0".into()), None, Some("q4".into())]);
    assert_eq!(journal.stats().damaged, 3);
}

#[tokio::test]
async fn one_directory_serves_one_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let first = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
    keep(&first, "c", "q0").await;
    let err = Journal::open(dir.path(), 1 << 20, WAIT)
        .err()
        .expect("the directory is taken");
    assert!(matches!(err, JournalError::InUse(_)), "{err}");
    assert!(
        err.to_string().contains("EXAI_STORAGE_JOURNAL_DIR"),
        "{err}"
    );
    drop(first);
    let second = Journal::open(dir.path(), 1 << 20, WAIT).unwrap();
    assert_eq!(second.stats().turns, 1);
}

#[test]
fn a_record_reads_back_as_written_and_any_change_is_caught() {
    let record = Record {
        conversation: "c".into(),
        turn: turn("naïve question\nwith two lines"),
    };
    let bytes = file::encode(&record).unwrap();
    assert_eq!(file::decode(&bytes), Ok(record));
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 0x01;
        assert!(file::decode(&damaged).is_err(), "byte {i}");
    }
    assert!(file::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(file::decode(b"").is_err());
}
