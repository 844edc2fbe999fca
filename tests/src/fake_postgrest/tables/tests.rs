use super::*;

fn conversation(t: &mut Tables, id: &str) {
    t.write(
        "conversations",
        json!({"id": id, "model": "m"}).to_string().as_bytes(),
        None,
        Resolution::MergeDuplicates,
        false,
    )
    .unwrap();
}

#[test]
fn upserts_replace_and_plain_inserts_refuse_duplicates() {
    let mut t = Tables::default();
    conversation(&mut t, "c1");
    let msg = |id: &str, content: &str| {
        json!([{"id": id, "conversation_id": "c1", "role": "user", "content": content}]).to_string()
    };
    t.write(
        "messages",
        msg("m1", "a").as_bytes(),
        Some("id"),
        Resolution::MergeDuplicates,
        false,
    )
    .unwrap();
    t.write(
        "messages",
        msg("m1", "b").as_bytes(),
        Some("id"),
        Resolution::MergeDuplicates,
        false,
    )
    .unwrap();
    let rows = t
        .select("messages", &[("conversation_id".into(), "eq.c1".into())])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["content"], "b");
    assert_eq!(
        t.stats()["messages"],
        TableStats {
            rows: 1,
            received: 2,
            duplicates: 1
        }
    );

    let err = t
        .write(
            "messages",
            msg("m1", "c").as_bytes(),
            None,
            Resolution::Error,
            false,
        )
        .unwrap_err();
    assert_eq!(
        (err.status, err.body["code"].as_str()),
        (409, Some("23505"))
    );
    t.write(
        "messages",
        msg("m1", "c").as_bytes(),
        None,
        Resolution::IgnoreDuplicates,
        false,
    )
    .unwrap();
    assert_eq!(t.select("messages", &[]).unwrap()[0]["content"], "b");
}

#[test]
fn refuses_what_postgres_would() {
    let mut t = Tables::default();
    let orphan =
        json!([{"id": "m", "conversation_id": "nope", "role": "user", "content": "x"}]).to_string();
    let err = t
        .write(
            "messages",
            orphan.as_bytes(),
            None,
            Resolution::MergeDuplicates,
            false,
        )
        .unwrap_err();
    assert_eq!(
        (err.status, err.body["code"].as_str()),
        (409, Some("23503"))
    );

    let twice = json!([{"id": "c", "model": "m"}, {"id": "c", "model": "n"}]).to_string();
    let err = t
        .write(
            "conversations",
            twice.as_bytes(),
            None,
            Resolution::MergeDuplicates,
            false,
        )
        .unwrap_err();
    assert_eq!(
        (err.status, err.body["code"].as_str()),
        (400, Some("21000"))
    );

    let unknown = json!({"id": "c", "colour": "red"}).to_string();
    let err = t
        .write(
            "conversations",
            unknown.as_bytes(),
            None,
            Resolution::Error,
            false,
        )
        .unwrap_err();
    assert_eq!(err.body["code"], "PGRST204");
    let err = t
        .write("nope", b"{}", None, Resolution::Error, false)
        .unwrap_err();
    assert_eq!(err.status, 404);
    let err = t
        .write("conversations", b"not json", None, Resolution::Error, false)
        .unwrap_err();
    assert_eq!(err.body["code"], "PGRST102");
    let ragged = json!([{"id": "a"}, {"id": "b", "model": "m"}]).to_string();
    assert_eq!(
        t.write(
            "conversations",
            ragged.as_bytes(),
            None,
            Resolution::Error,
            false
        )
        .unwrap_err()
        .status,
        400
    );
    let nul = json!([{"id": "a\u{0}b", "model": "m"}]).to_string();
    let err = t
        .write(
            "conversations",
            nul.as_bytes(),
            None,
            Resolution::MergeDuplicates,
            false,
        )
        .unwrap_err();
    assert_eq!(
        (err.status, err.body["code"].as_str()),
        (400, Some("22P05")),
        "Postgres text cannot hold NUL"
    );
    let err = t
        .select("conversations", &[("id".into(), "gt.a".into())])
        .unwrap_err();
    assert_eq!(err.body["code"], "PGRST100");
    assert!(
        t.select("conversations", &[]).unwrap().is_empty(),
        "nothing was written by a refused request"
    );
}
