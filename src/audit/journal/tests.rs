//! Tests of the journaled store: the commit file, recovery after a crash, moves into SQLite.

use super::*;
use crate::audit::record::GENESIS;
use crate::audit::record::testing::chain;

fn commit_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.db.commits.") && !n.ends_with(".lock"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn commits_land_in_a_file_first_and_every_read_sees_them() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let store = JournaledStore::open(&path, true, false)
        .await
        .expect("open");
    let records = chain("gw", 1, 5, GENESIS);
    let signer = Signer::from_seed("s1", &[3; 32]).expect("seed");
    let cp = signer.sign("gw", 5, &records[4].hash, 1);
    store
        .append(records[..3].to_vec(), None)
        .await
        .expect("append");
    store
        .append(records[3..].to_vec(), Some(&cp))
        .await
        .expect("append");
    // Committed: in a commit file, not yet in SQLite.
    assert_eq!(commit_files(dir.path()), ["audit.db.commits.1"]);
    assert_eq!(store.sqlite().count("gw").await.expect("count"), 0);
    // A read moves them first, with the checkpoint, and the file goes.
    assert_eq!(store.scan("gw", 0, 100).await.expect("scan"), records);
    assert_eq!(store.checkpoints("gw").await.expect("cps"), vec![cp]);
    assert_eq!(
        store.head("gw").await.expect("head"),
        Some((5, records[4].hash))
    );
    assert!(commit_files(dir.path()).is_empty());
    // The next commit opens a new file.
    let more = chain("gw", 6, 1, records[4].hash);
    store.append(more.clone(), None).await.expect("append");
    assert_eq!(commit_files(dir.path()), ["audit.db.commits.2"]);
    // Another opener of the same store reads SQLite only and cannot commit.
    let other = JournaledStore::open(&path, true, false)
        .await
        .expect("second open");
    assert_eq!(other.count("gw").await.expect("count"), 5);
    let refused = other.append(chain("gw", 7, 1, more[0].hash), None).await;
    assert!(
        refused.is_err_and(|e| e.0.contains("another process owns")),
        "a second owner was refused"
    );
    // The mover takes the rest within its interval.
    tokio::time::sleep(MOVE_EVERY + Duration::from_millis(500)).await;
    assert_eq!(other.count("gw").await.expect("count"), 6);
    assert!(commit_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_crash_leaves_commit_files_that_the_next_open_moves_in_once() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let records = chain("gw", 1, 6, GENESIS);
    {
        // Records 1-2 moved into SQLite, but their file was not removed before the crash.
        let sqlite = SqliteStore::open(&path, false).await.expect("open");
        sqlite
            .append(records[..2].to_vec(), None)
            .await
            .expect("append");
    }
    let mut first = Frame::encode(&records[..2], None);
    first.extend(Frame::encode(&records[2..4], None));
    std::fs::write(dir.path().join("audit.db.commits.3"), &first).expect("write");
    // The last file: one whole frame, then a torn one (the crash cut that commit).
    let mut last = Frame::encode(&records[4..5], None);
    let torn = Frame::encode(&records[5..], None);
    last.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(dir.path().join("audit.db.commits.4"), &last).expect("write");

    let store = JournaledStore::open(&path, true, false)
        .await
        .expect("open");
    assert!(commit_files(dir.path()).is_empty(), "moved and removed");
    let held = store.scan("gw", 0, 100).await.expect("scan");
    assert_eq!(
        held,
        records[..5],
        "each record once; the torn commit dropped"
    );
    // Numbering continues after the files found.
    store
        .append(chain("gw", 6, 1, records[4].hash), None)
        .await
        .expect("append");
    assert_eq!(commit_files(dir.path()), ["audit.db.commits.5"]);
}

#[tokio::test]
async fn records_sqlite_refuses_stay_committed_and_move_once_it_takes_them() {
    let dir = tempfile::tempdir().expect("dir");
    let store = JournaledStore::open(&dir.path().join("audit.db"), true, false)
        .await
        .expect("open");
    let records = chain("gw", 1, 4, GENESIS);
    let signer = Signer::from_seed("s1", &[3; 32]).expect("seed");
    let cp = signer.sign("gw", 2, &records[1].hash, 1);
    store
        .append(records[..2].to_vec(), Some(&cp))
        .await
        .expect("append");
    let pool = store.sqlite().pool();
    sqlx::raw_sql("ALTER TABLE audit_records RENAME TO hidden")
        .execute(pool)
        .await
        .expect("hide");
    assert!(store.flush().await.is_err(), "SQLite refuses the move");
    // Commits go on meanwhile: they are durable in their files.
    store
        .append(records[2..].to_vec(), None)
        .await
        .expect("append");
    assert_eq!(
        commit_files(dir.path()),
        ["audit.db.commits.1", "audit.db.commits.2"]
    );
    sqlx::raw_sql("ALTER TABLE hidden RENAME TO audit_records")
        .execute(pool)
        .await
        .expect("restore");
    store.flush().await.expect("moves now");
    assert_eq!(store.scan("gw", 0, 100).await.expect("scan"), records);
    assert_eq!(store.checkpoints("gw").await.expect("cps"), vec![cp]);
    assert!(commit_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_damaged_line_in_the_middle_stops_the_open() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let records = chain("gw", 1, 2, GENESIS);
    let mut text = Frame::encode(&records[..1], None);
    text.extend_from_slice(b"{\"records\": [garbage\n");
    text.extend(Frame::encode(&records[1..], None));
    std::fs::write(dir.path().join("audit.db.commits.1"), &text).expect("write");
    let refused = JournaledStore::open(&path, true, false).await;
    let message = refused.err().expect("refused").0;
    assert!(message.contains("is damaged"), "{message}");
    assert_eq!(commit_files(dir.path()), ["audit.db.commits.1"], "kept");
}

/// The nice value of each SQLite worker thread of this process.
#[cfg(target_os = "linux")]
fn sqlite_thread_nices() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| stat.contains("(sqlx-sqlite"))
        .filter_map(|stat| {
            // Fields after "(comm)" start at the third; the nice value is the 19th.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().nth(16)?.parse().ok()
        })
        .collect()
}

#[tokio::test]
async fn behind_calls_a_commit_waits_for_moves_that_fall_far_behind_and_otherwise_not() {
    let records = chain("gw", 1, (HOLD_AT + 1024) as i64, GENESIS);
    for behind_calls in [true, false] {
        let dir = tempfile::tempdir().expect("dir");
        let store = JournaledStore::open(&dir.path().join("audit.db"), false, behind_calls)
            .await
            .expect("open");
        // No move can run while the test holds this.
        let stalled = store.moving.lock().await;
        for batch in records[..HOLD_AT].chunks(1024) {
            store.append(batch.to_vec(), None).await.expect("append");
        }
        let next = records[HOLD_AT..].to_vec();
        let held = tokio::spawn({
            let store = store.clone();
            async move { store.append(next, None).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            held.is_finished(),
            !behind_calls,
            "behind calls: {behind_calls}"
        );
        drop(stalled);
        tokio::time::timeout(Duration::from_secs(30), held)
            .await
            .expect("the commit goes through once records move")
            .expect("joined")
            .expect("committed");
        if behind_calls {
            // The move ran before the held commit was added, on SQLite threads lowered
            // behind calls.
            assert_eq!(
                store.inner.count("gw").await.expect("count"),
                HOLD_AT as i64
            );
            #[cfg(target_os = "linux")]
            assert!(
                sqlite_thread_nices().contains(&MOVE_NICE),
                "{:?}",
                sqlite_thread_nices()
            );
        }
        assert_eq!(
            store.count("gw").await.expect("count"),
            HOLD_AT as i64 + 1024
        );
    }
}

#[tokio::test]
async fn a_commit_held_for_a_move_that_fails_stops_waiting() {
    let dir = tempfile::tempdir().expect("dir");
    let store = JournaledStore::open(&dir.path().join("audit.db"), false, true)
        .await
        .expect("open");
    let records = chain("gw", 1, (HOLD_AT + 1) as i64, GENESIS);
    let stalled = store.moving.lock().await;
    for batch in records[..HOLD_AT].chunks(4096) {
        store.append(batch.to_vec(), None).await.expect("append");
    }
    let next = records[HOLD_AT..].to_vec();
    let held = tokio::spawn({
        let store = store.clone();
        async move { store.append(next, None).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "held for the move");
    sqlx::raw_sql("ALTER TABLE audit_records RENAME TO hidden")
        .execute(store.sqlite().pool())
        .await
        .expect("hide");
    drop(stalled);
    // The move fails; the commit stops waiting for moves and lands in its file.
    tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("not held after a failed move")
        .expect("joined")
        .expect("committed");
    sqlx::raw_sql("ALTER TABLE hidden RENAME TO audit_records")
        .execute(store.sqlite().pool())
        .await
        .expect("restore");
    assert_eq!(store.count("gw").await.expect("count"), HOLD_AT as i64 + 1);
}

#[tokio::test]
async fn after_a_flush_the_database_file_alone_holds_every_record() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let store = JournaledStore::open(&path, true, true).await.expect("open");
    let records = chain("gw", 1, 300, GENESIS);
    store.append(records.clone(), None).await.expect("append");
    store.flush().await.expect("flush");
    assert!(commit_files(dir.path()).is_empty());
    // A backup that copies only the database file.
    let copy = tempfile::tempdir().expect("dir");
    std::fs::copy(&path, copy.path().join("audit.db")).expect("copy");
    let restored = SqliteStore::open(&copy.path().join("audit.db"), false)
        .await
        .expect("open the copy");
    assert_eq!(restored.scan("gw", 0, 1_000).await.expect("scan"), records);
}
