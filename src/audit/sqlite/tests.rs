//! Tests of the SQLite audit store: a column changed without its hash reads as an altered
//! record.

use super::*;
use crate::audit::record::testing::chain;

/// A store at schema version 1, holding `records` in version 1's row form.
async fn version_1_store(path: &Path, records: &[Chained]) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("create");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL);
         INSERT INTO schema_migrations VALUES (1, 0); {}",
        MIGRATIONS[0].1
    )))
    .execute(&pool)
    .await
    .expect("version 1");
    for chunk in records.chunks(1_000) {
        let mut b =
            sqlx::QueryBuilder::new(format!("INSERT INTO audit_records ({}) ", rows::COLUMNS));
        b.push_values(chunk, |mut row, r| {
            let e = &r.entry;
            row.push_bind(r.instance.as_str())
                .push_bind(r.seq)
                .push_bind(e.time_ms);
            for text in [
                &e.request_id,
                &e.trace_id,
                &e.transport,
                &e.actor,
                &e.credential,
                &e.officer_id,
                &e.agency_code,
                &e.procedure_code,
                &e.dossier_id,
                &e.purpose,
                &e.dataset,
                &e.subject,
                &e.action,
            ] {
                row.push_bind(text.as_str());
            }
            row.push_bind(e.fields.join(","))
                .push_bind(e.outcome.as_str())
                .push_bind(e.cache.as_str())
                .push_bind(e.upstream_status.as_str())
                .push_bind(e.upstream_ms)
                .push_bind(e.detail.as_str())
                .push_bind(r.prev_hash.as_slice())
                .push_bind(r.hash.as_slice());
        });
        b.build().execute(&pool).await.expect("version 1 rows");
    }
    pool.close().await;
}

#[tokio::test]
async fn a_version_1_store_is_brought_to_compact_rows_with_every_record_intact() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let records = chain("gw", 1, 7_500, GENESIS);
    version_1_store(&path, &records).await;

    let store = SqliteStore::open(&path, false).await.expect("migrates");
    let read = store.scan("gw", 0, 10_000).await.expect("scan");
    assert_eq!(read, records, "every record, field for field");
    assert!(read.iter().all(Chained::hash_holds));
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(store.pool())
        .await
        .expect("version");
    assert_eq!(
        version,
        MIGRATIONS.last().expect("migrations").0,
        "every migration ran"
    );
    let found = store
        .query(&Query {
            officer_id: Some("canbo01".into()),
            dossier_id: Some(records[3].entry.dossier_id.clone()),
            limit: 10,
            ..Query::default()
        })
        .await
        .expect("query");
    assert_eq!(found, vec![records[3].clone()]);
    // Reopening finds nothing left to do.
    drop(store);
    let again = SqliteStore::open(&path, false).await.expect("reopen");
    assert_eq!(again.count("gw").await.expect("count"), 7_500);
}

#[tokio::test]
async fn a_column_changed_without_its_hash_reads_as_an_altered_record() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("audit.db"), false)
        .await
        .expect("open");
    let records = chain("gw", 1, 3, GENESIS);
    store.append(records.clone(), None).await.expect("append");
    sqlx::raw_sql("UPDATE audit_records SET officer_id = 'someone-else' WHERE seq = 2")
        .execute(store.pool())
        .await
        .expect("tamper");
    let read = store.scan("gw", 0, 10).await.expect("scan");
    assert_eq!(
        read[1].entry.officer_id, "someone-else",
        "the column is what is read"
    );
    assert!(read[0].hash_holds() && !read[1].hash_holds() && read[2].hash_holds());

    sqlx::raw_sql("UPDATE audit_records SET entry = X'00' WHERE seq = 3")
        .execute(store.pool())
        .await
        .expect("tamper");
    let e = store.scan("gw", 0, 10).await.expect_err("unreadable");
    assert!(e.0.contains("record 3 cannot be read"), "{}", e.0);
}

#[tokio::test]
async fn version_2_records_keep_their_facts_and_are_found_by_the_people_they_name() {
    use crate::audit::record::{Disclosure, chain_hash};
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("audit.db"), false)
        .await
        .expect("opens");
    // A record of version 1 (before disclosures were recorded), then two of version 2:
    // the parent looked up as the subject, and the child whose record names the parent.
    let mut records = chain("gw", 1, 1, GENESIS);
    let mut prev = records[0].hash;
    for (seq, subject, mentions) in [
        (2, "k1:parent", vec![]),
        (
            3,
            "k1:child",
            vec![("father".to_owned(), "k1:parent".to_owned())],
        ),
    ] {
        let entry = AuditEntry {
            time_ms: 1_700_000_000_000 + seq,
            subject: subject.into(),
            action: "fetch".into(),
            outcome: "served".into(),
            fields: vec!["full_name".into(), "father".into()],
            upstream_ms: -1,
            disclosure: Some(Disclosure {
                legal_basis: "Nghị định 47/2020/NĐ-CP".into(),
                withheld: seq == 3,
                mentions,
            }),
            ..AuditEntry::default()
        };
        let hash = chain_hash(&prev, "gw", seq, &entry);
        records.push(Chained {
            instance: "gw".into(),
            seq,
            entry,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    store.append(records.clone(), None).await.expect("appended");
    let read = store.scan("gw", 0, 10).await.expect("scan");
    assert_eq!(read, records, "each version reads back as written");
    assert!(read.iter().all(Chained::hash_holds));
    assert_eq!(
        read.iter().map(|r| r.entry.version()).collect::<Vec<_>>(),
        [1, 2, 2]
    );
    let about = |person: &str| Query {
        persons: vec![person.into()],
        limit: 10,
        ..Query::default()
    };
    let parent = store.query(&about("k1:parent")).await.expect("query");
    assert_eq!(
        parent.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [3, 2],
        "as the subject and as the father in the child's record, newest first"
    );
    let child = store.query(&about("k1:child")).await.expect("query");
    assert_eq!(child.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
    // A record of version 1 is found by its own subject.
    let old = store
        .query(&about(&records[0].entry.subject))
        .await
        .expect("query");
    assert_eq!(old.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
}
