use super::*;
use crate::supabase::frame::HEADER;
use std::fs::OpenOptions;

fn record(text: &str) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER];
    buf.extend_from_slice(text.as_bytes());
    buf
}

fn append(spool: &Spool, text: &str) {
    spool.append(&mut record(text)).unwrap();
}

fn read_all(reader: &mut SpoolReader) -> (Vec<String>, Batch) {
    let batch = reader.read(usize::MAX, usize::MAX).unwrap();
    let texts = batch
        .payloads
        .iter()
        .map(|p| String::from_utf8(p.clone()).unwrap())
        .collect();
    (texts, batch)
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

use std::fs;

#[test]
fn records_come_back_in_order_and_only_unsent_ones_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    for i in 0..5 {
        append(&spool, &format!("r{i}"));
    }
    assert_eq!(spool.depth(), 5);
    let batch = reader.read(2, usize::MAX).unwrap();
    assert_eq!(batch.payloads, [b"r0".to_vec(), b"r1".to_vec()]);
    reader.commit(batch.end, 2).unwrap();
    assert_eq!(spool.depth(), 3);
    spool.sync().unwrap();
    drop((spool, reader));

    // A restart replays only what was not acknowledged.
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.depth(), 3);
    let (texts, batch) = read_all(&mut reader);
    assert_eq!(texts, ["r2", "r3", "r4"]);
    // Not acknowledged before this restart either: the same three come back.
    drop((spool, reader));
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    let (again, _) = read_all(&mut reader);
    assert_eq!(again, texts);
    let _ = batch;
    append(&spool, "r5");
    let (texts, batch) = read_all(&mut reader);
    assert_eq!(texts, ["r2", "r3", "r4", "r5"]);
    reader.commit(batch.end, 4).unwrap();
    assert_eq!(spool.depth(), 0);
    assert!(read_all(&mut reader).0.is_empty());
}

#[test]
fn a_torn_last_record_is_cut_off_and_appends_go_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    for text in ["one", "two", "three, cut short by a crash"] {
        append(&spool, text);
    }
    drop((spool, _reader));
    let path = last_segment(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    // Every way the last write could have been cut short.
    for cut in 1..(HEADER as u64 + 27) {
        let copy = tempfile::tempdir().unwrap();
        fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        let torn = copy.path().join(path.file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&torn)
            .unwrap()
            .set_len(len - cut)
            .unwrap();
        let (spool, mut reader) = Spool::open(copy.path(), 1 << 20).unwrap();
        assert_eq!(spool.depth(), 2, "cut {cut}");
        append(&spool, "four");
        let (texts, _) = read_all(&mut reader);
        assert_eq!(texts, ["one", "two", "four"], "cut {cut}");
    }
}

#[test]
fn a_damaged_last_record_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    for text in ["one", "two", "three"] {
        append(&spool, text);
    }
    drop((spool, _reader));
    let path = last_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.depth(), 2);
    let (texts, _) = read_all(&mut reader);
    assert_eq!(texts, ["one", "two"]);
}

#[test]
fn damage_in_an_older_segment_skips_only_the_rest_of_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB spool: 4 KiB segments, so 1 KiB records fill one in four.
    let (spool, _reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let big = |i: usize| format!("{i:04}{}", "x".repeat(1000));
    for i in 0..8 {
        append(&spool, &big(i));
    }
    drop((spool, _reader));
    let mut segments: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    // Damage the second record of the first segment (as a power loss might have).
    let mut bytes = fs::read(&segments[0]).unwrap();
    bytes[HEADER + 1004 + HEADER + 10] ^= 1;
    fs::write(&segments[0], &bytes).unwrap();
    let (_spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let (texts, _) = read_all(&mut reader);
    let ids: Vec<&str> = texts.iter().map(|t| &t[..4]).collect();
    assert_eq!(ids[0], "0000");
    assert!(!ids.contains(&"0001"), "{ids:?}");
    assert_eq!(
        ids.last(),
        Some(&"0007"),
        "later segments still read: {ids:?}"
    );
}

#[test]
fn a_full_spool_refuses_and_counts_until_uploads_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let text = "y".repeat(1000);
    let mut accepted = 0;
    let refused = loop {
        match spool.append(&mut record(&text)) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(refused, SpoolError::Full { .. }), "{refused}");
    assert!(
        refused.to_string().contains("EXAI_SPOOL_MAX_BYTES"),
        "{refused}"
    );
    assert!(spool.stats().bytes <= 64 << 10);
    assert_eq!(spool.stats().refused, 1);
    assert_eq!(spool.depth(), accepted);

    let (texts, batch) = read_all(&mut reader);
    assert_eq!(texts.len() as u64, accepted);
    reader.commit(batch.end, accepted).unwrap();
    assert!(
        spool.stats().bytes <= spool.segment_bytes(),
        "uploaded segments are deleted: {:?}",
        spool.stats()
    );
    append(&spool, "room again");
    spool.sync().unwrap();
}

#[test]
fn an_oversized_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader) = Spool::open(dir.path(), 1 << 30).unwrap();
    let mut huge = vec![0u8; HEADER + crate::supabase::frame::MAX_PAYLOAD + 1];
    assert!(matches!(
        spool.append(&mut huge),
        Err(SpoolError::TooLarge(_))
    ));
    assert_eq!(spool.depth(), 0);
}

#[test]
fn an_unreadable_cursor_replays_from_the_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    append(&spool, "a");
    append(&spool, "b");
    let batch = reader.read(1, usize::MAX).unwrap();
    reader.commit(batch.end, 1).unwrap();
    drop((spool, reader));
    fs::write(dir.path().join("cursor"), "garbage").unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.depth(), 2);
    assert_eq!(read_all(&mut reader).0, ["a", "b"]);
}

#[test]
fn records_larger_than_a_read_chunk_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 64 << 20).unwrap();
    let big = "z".repeat(300 << 10);
    for text in ["small", &big, "after"] {
        append(&spool, text);
    }
    let batch = reader.read(2, usize::MAX).unwrap();
    assert_eq!(batch.payloads.len(), 2);
    assert_eq!(batch.payloads[1].len(), big.len());
    reader.commit(batch.end, 2).unwrap();
    assert_eq!(read_all(&mut reader).0, ["after"]);
}

#[test]
fn a_cursor_that_cannot_be_saved_moves_on_and_keeps_the_segments_for_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB segments: 1 KiB records fill one in four.
    let (spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let big = |i: usize| format!("{i:04}{}", "x".repeat(1000));
    for i in 0..6 {
        append(&spool, &big(i));
    }
    // A directory where the temporary cursor file goes: the save fails, even for root.
    fs::create_dir(dir.path().join("cursor.tmp")).unwrap();
    let batch = reader.read(5, usize::MAX).unwrap();
    assert!(reader.commit(batch.end, 5).is_err());
    assert_eq!(spool.depth(), 1);
    let (rest, _) = read_all(&mut reader);
    assert_eq!(rest.len(), 1, "the same batch is not read again");
    assert!(
        fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "spool"))
            .count()
            >= 2,
        "segments stay for a replay"
    );
    drop((spool, reader));
    // A restart replays from the last saved cursor: all six.
    let (spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    assert_eq!(spool.depth(), 6);
    fs::remove_dir(dir.path().join("cursor.tmp")).unwrap();
    let (texts, batch) = read_all(&mut reader);
    assert_eq!(texts.len(), 6);
    reader.commit(batch.end, 6).unwrap();
    assert!(
        spool.stats().bytes <= spool.segment_bytes(),
        "{:?}",
        spool.stats()
    );
}

#[cfg(unix)]
#[test]
fn the_directory_and_every_file_are_private_whatever_they_were() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let old = segment_path(&dir, 1);
    let mut framed = Vec::new();
    crate::supabase::frame::encode(b"kept", &mut framed);
    fs::write(&old, framed).unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(dir.join("cursor.tmp"), "stale").unwrap();
    fs::set_permissions(dir.join("cursor.tmp"), fs::Permissions::from_mode(0o644)).unwrap();

    let (spool, mut reader) = Spool::open(&dir, 1 << 20).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&old), 0o600);
    append(&spool, "new");
    let (texts, batch) = read_all(&mut reader);
    assert_eq!(texts, ["kept", "new"]);
    reader.commit(batch.end, 2).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}
