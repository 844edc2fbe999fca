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

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    segments.sort();
    segments
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
fn damage_in_an_older_segment_loses_only_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB spool: 4 KiB segments, so 1 KiB records fill one in four.
    let (spool, _reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let big = |i: usize| format!("{i:04}{}", "x".repeat(1000));
    for i in 0..8 {
        append(&spool, &big(i));
    }
    drop((spool, _reader));
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 2, "{segments:?}");
    // Damage the second record of the first segment (as a power loss might have).
    let mut bytes = fs::read(&segments[0]).unwrap();
    bytes[HEADER + 1004 + HEADER + 10] ^= 1;
    fs::write(&segments[0], &bytes).unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    assert_eq!(spool.depth(), 7);
    let (texts, _) = read_all(&mut reader);
    let ids: Vec<&str> = texts.iter().map(|t| &t[..4]).collect();
    assert_eq!(
        ids,
        ["0000", "0002", "0003", "0004", "0005", "0006", "0007"]
    );
    assert_eq!(spool.stats().damaged, 1);
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

/// Twelve records in one segment, as the finding measured them; `damage` alters the file.
fn twelve(damage: impl Fn(&mut Vec<u8>, &[usize])) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    let texts: Vec<String> = (0..12).map(|i| format!("1\nrecord {i:02}")).collect();
    let mut starts = Vec::new();
    for text in &texts {
        starts.push(spool.stats().bytes as usize);
        append(&spool, text);
    }
    drop((spool, _reader));
    let path = last_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    damage(&mut bytes, &starts);
    fs::write(&path, &bytes).unwrap();
    (dir, texts)
}

fn without(texts: &[String], lost: &[usize]) -> Vec<String> {
    texts
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost.contains(i))
        .map(|(_, t)| t.clone())
        .collect()
}

#[test]
fn a_flipped_byte_mid_segment_loses_only_its_record_even_in_the_newest_segment() {
    for (what, at) in [("length", 1), ("checksum", 5), ("payload", HEADER + 3)] {
        let (dir, texts) = twelve(|bytes, starts| bytes[starts[4] + at] ^= 0x10);
        let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.depth(), 11, "{what}");
        append(&spool, "1\nafter the restart");
        let (got, _) = read_all(&mut reader);
        let mut expected = without(&texts, &[4]);
        expected.push("1\nafter the restart".into());
        assert_eq!(got, expected, "{what}");
        assert_eq!(spool.stats().damaged, 1, "{what}");
    }
}

#[test]
fn a_stretch_of_zeros_or_garbage_loses_only_the_records_it_covers() {
    let (dir, texts) = twelve(|bytes, starts| {
        for b in &mut bytes[starts[3] + 2..starts[5] + 1] {
            *b = 0;
        }
    });
    let (_spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(read_all(&mut reader).0, without(&texts, &[3, 4, 5]));
}

#[test]
fn a_torn_sealed_segment_keeps_the_records_of_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let big = |i: usize| format!("1\n{i:04}{}", "x".repeat(1000));
    for i in 0..8 {
        append(&spool, &big(i));
    }
    drop((spool, _reader));
    let first = &segment_files(dir.path())[0];
    let len = fs::metadata(first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let (_spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    let (texts, _) = read_all(&mut reader);
    let ids: Vec<&str> = texts.iter().map(|t| &t[2..6]).collect();
    assert_eq!(
        ids,
        ["0000", "0001", "0002", "0004", "0005", "0006", "0007"]
    );
}

#[test]
fn a_cursor_naming_a_later_segment_deletes_nothing_and_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    for i in 0..8 {
        append(&spool, &format!("1\n{i:04}{}", "x".repeat(1000)));
    }
    drop((spool, _reader));
    let before = segment_files(dir.path());
    fs::write(dir.path().join("cursor"), "exai-spool-cursor v1 99999 0\n").unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 64 << 10).unwrap();
    assert_eq!(segment_files(dir.path())[..before.len()], before[..]);
    assert_eq!(spool.depth(), 8);
    assert_eq!(read_all(&mut reader).0.len(), 8);
}

#[test]
fn a_cursor_past_the_end_or_inside_a_record_is_not_trusted() {
    for (what, offset) in [("past the end", 1_000_000u64), ("inside a record", 3)] {
        let (dir, texts) = twelve(|_, _| {});
        let segment = last_segment(dir.path());
        let number: u64 = segment
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches("segment-")
            .parse()
            .unwrap();
        fs::write(
            dir.path().join("cursor"),
            format!("exai-spool-cursor v1 {number} {offset}\n"),
        )
        .unwrap();
        let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.depth(), 12, "{what}");
        assert_eq!(read_all(&mut reader).0, texts, "{what}");
    }
}

#[test]
fn a_huge_segment_number_is_renumbered_and_nothing_wraps_or_walks() {
    let dir = tempfile::tempdir().unwrap();
    let mut framed = Vec::new();
    crate::supabase::frame::encode(b"1\nfirst", &mut framed);
    fs::write(segment_path(dir.path(), 3), &framed).unwrap();
    let mut framed = Vec::new();
    crate::supabase::frame::encode(b"1\nlast", &mut framed);
    fs::write(segment_path(dir.path(), u64::MAX), &framed).unwrap();
    fs::write(
        dir.path().join("cursor"),
        format!("exai-spool-cursor v1 {} 0\n", u64::MAX),
    )
    .unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    // The cursor named the last segment: only it is left to send.
    assert_eq!(read_all(&mut reader).0, ["1\nlast"]);
    append(&spool, "1\nnew");
    let (texts, batch) = read_all(&mut reader);
    assert_eq!(texts, ["1\nlast", "1\nnew"]);
    reader.commit(batch.end, 2).unwrap();
    let names: Vec<String> = segment_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["segment-00000000000000000002.spool"]);
}

#[test]
fn a_segment_named_out_of_range_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("segment-99999999999999999999.spool"), b"x").unwrap();
    fs::write(dir.path().join("segment-7.spool"), b"x").unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    append(&spool, "1\nok");
    assert_eq!(read_all(&mut reader).0, ["1\nok"]);
}

#[test]
fn a_read_returns_at_once_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, mut reader) = Spool::open(dir.path(), 1 << 20).unwrap();
    append(&spool, "1\na");
    let stop = tokio_util::sync::CancellationToken::new();
    reader.observe(stop.clone());
    stop.cancel();
    let batch = reader.read(10, usize::MAX).unwrap();
    assert!(batch.payloads.is_empty());
    assert_eq!(
        spool.depth(),
        1,
        "nothing was skipped: it is read after a restart"
    );
}
