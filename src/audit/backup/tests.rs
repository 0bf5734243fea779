use super::*;

fn layout(root: &Path) -> Layout {
    Layout {
        databases: vec![
            ("audit.db".into(), root.join("data/audit.db")),
            ("registry.db".into(), root.join("data/registry.db")),
        ],
        segments: root.join("data/audit.db.segments"),
        archives: root.join("data/archive"),
        lock: root.join("data/audit.db.commits.lock"),
    }
}

async fn sqlite_with(path: &Path, value: &str) {
    use sqlx::ConnectOptions;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (v TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (?)")
        .bind(value)
        .execute(&mut conn)
        .await
        .unwrap();
    // Left open: the row is still in the write-ahead log, as under a running gateway.
    std::mem::forget(conn);
}

async fn value_of(path: &Path) -> String {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_backup_copies_every_part_and_restores_them_where_another_layout_says() {
    let source = tempfile::tempdir().unwrap();
    let from = layout(source.path());
    sqlite_with(&from.databases[0].1, "audit row").await;
    std::fs::create_dir_all(&from.segments).unwrap();
    std::fs::create_dir_all(&from.archives).unwrap();
    std::fs::write(from.segments.join("0000000000000001.log"), b"sealed log").unwrap();
    std::fs::write(from.segments.join("0000000000000001.idx"), b"its index").unwrap();
    std::fs::write(from.segments.join("0000000000000002.log"), b"newest").unwrap();
    std::fs::write(from.segments.join("0000000000000002.idx.tmp"), b"half").unwrap();
    std::fs::write(from.archives.join("vm-1-100.jsonl"), b"archived").unwrap();

    let to = source.path().join("backup");
    let heads = BTreeMap::from([("vm".to_owned(), 7)]);
    let manifest = take(&from, &to, heads.clone()).await.expect("backup");
    assert_eq!(manifest.heads, heads);
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    // No half-written index, no registry (there is none), the database as a snapshot.
    assert_eq!(
        paths,
        [
            "segments/0000000000000001.idx",
            "segments/0000000000000001.log",
            "segments/0000000000000002.log",
            "db/audit.db",
            "archive/vm-1-100.jsonl"
        ]
    );
    assert!(matches!(
        take(&from, &to, BTreeMap::new()).await,
        Err(BackupError::NotEmpty(_))
    ));

    let target = tempfile::tempdir().unwrap();
    let into = layout(target.path());
    let restored = restore(&into, &to, false).expect("restore");
    assert!(restored.moved_aside.is_empty());
    assert_eq!(value_of(&into.databases[0].1).await, "audit row");
    assert_eq!(
        std::fs::read(into.segments.join("0000000000000002.log")).unwrap(),
        b"newest"
    );
    assert_eq!(
        std::fs::read(into.archives.join("vm-1-100.jsonl")).unwrap(),
        b"archived"
    );

    // Data in the way is refused, or moved aside (never deleted) with `replace`.
    assert!(matches!(
        restore(&into, &to, false),
        Err(BackupError::Occupied(_))
    ));
    let again = restore(&into, &to, true).expect("replace");
    assert!(again.moved_aside.iter().all(|p| p.exists()));
    assert!(again.moved_aside.len() >= 3, "{:?}", again.moved_aside);

    // A file missing from the backup is named before anything is touched.
    std::fs::remove_file(to.join("archive/vm-1-100.jsonl")).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    match restore(&layout(fresh.path()), &to, false) {
        Err(BackupError::Damaged { path, .. }) => assert_eq!(path, "archive/vm-1-100.jsonl"),
        other => panic!("{other:?}"),
    }
    assert!(!fresh.path().join("data/audit.db").exists());
    assert!(matches!(
        restore(&layout(fresh.path()), fresh.path(), false),
        Err(BackupError::NoManifest(_))
    ));
}

#[test]
fn a_restore_refuses_a_store_a_gateway_holds() {
    let dir = tempfile::tempdir().unwrap();
    let l = layout(dir.path());
    std::fs::create_dir_all(l.lock.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&l.lock).unwrap();
    held.lock().unwrap();
    // An empty backup: only its manifest.
    let backup = dir.path().join("b");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::write(
        backup.join(MANIFEST),
        r#"{"format":1,"taken_at":"x","heads":{},"files":[]}"#,
    )
    .unwrap();
    assert!(is_live(&l));
    assert!(matches!(
        restore(&l, &backup, true),
        Err(BackupError::Live(_))
    ));
    drop(held);
    assert!(!is_live(&l));
    restore(&l, &backup, true).expect("no gateway: restored");
}
