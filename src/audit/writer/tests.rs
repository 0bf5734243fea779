use super::*;
use crate::audit::memory::MemoryStore as FakeStore;
use crate::audit::record::checkpoint_signed_by;

async fn start(store: Arc<FakeStore>, settings: WriterSettings) -> (AuditLog, JoinHandle<()>) {
    AuditLog::start(
        store,
        "gw1",
        SubjectKeys::new(vec![crate::audit::record::SubjectKey::new(
            "k1",
            b"0123456789abcdef",
        )]),
        Signer::from_seed("s1", &[3; 32]).expect("seed"),
        settings,
    )
    .await
    .expect("starts")
}

fn entry(n: i64) -> AuditEntry {
    AuditEntry {
        time_ms: n,
        outcome: "served".into(),
        ..AuditEntry::default()
    }
}

#[tokio::test]
async fn fail_closed_refuses_while_the_store_fails_and_the_chain_resumes_intact() {
    let store = Arc::new(FakeStore::default());
    let (log, _task) = start(store.clone(), WriterSettings::default()).await;
    log.record(entry(1)).await.expect("committed");
    store.failing.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.record(entry(2)).await,
        Err(AuditFailure::Store(_))
    ));
    store.failing.store(false, Ordering::SeqCst);
    log.record(entry(3)).await.expect("committed");
    let records = store.records.lock().unwrap().clone();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        records[1].entry.time_ms, 3,
        "the failed record left no hole"
    );
    assert_eq!(records[1].prev_hash, records[0].hash);
    assert!(records.iter().all(Chained::hash_holds));
}

// One worker, as the gateway runs on one core: the writer, woken by the first record,
// runs next (the worker's LIFO slot) while the other calls wait in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_sync_commit_waits_for_the_calls_already_running_while_they_keep_arriving() {
    // Spawned from the worker, as calls are: the order below is the worker's own.
    tokio::spawn(async move {
        let store = Arc::new(FakeStore::default());
        let (log, task) = start(store.clone(), WriterSettings::default()).await;
        let log = Arc::new(log);
        // Six calls on this runtime, each started by the one before it just before that
        // one records: the writer is woken by the first record while the others are still
        // on their way, and one commit carries them all.
        let (mut next, mut start) = (Vec::new(), Vec::new());
        for _ in 0..6 {
            let (tx, rx) = oneshot::channel::<()>();
            next.push(Some(tx));
            start.push(Some(rx));
        }
        next.rotate_left(1);
        next[5] = None;
        start[0] = None;
        let calls: Vec<_> = (0..6)
            .map(|i| {
                let (log, started, next) = (log.clone(), start[i].take(), next[i].take());
                tokio::spawn(async move {
                    if let Some(started) = started {
                        started.await.expect("started");
                    }
                    if let Some(next) = next {
                        next.send(()).expect("next waits");
                    }
                    log.record(entry(i as i64)).await
                })
            })
            .collect();
        for c in calls {
            c.await.expect("joined").expect("committed");
        }
        assert_eq!(log.stats().commits.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().largest_batch.load(Ordering::Relaxed), 6);
        // Calls that stop arriving are not waited for: two records far apart are two
        // commits.
        log.record(entry(7)).await.expect("committed");
        log.record(entry(8)).await.expect("committed");
        assert_eq!(log.stats().commits.load(Ordering::Relaxed), 3);
        drop(Arc::into_inner(log));
        task.await.expect("writer ends");
    })
    .await
    .expect("the scenario runs");
}

#[tokio::test(start_paused = true)]
async fn async_commits_let_their_group_fill_and_sync_commits_do_not_wait() {
    for durability in [Durability::Async, Durability::Sync] {
        let store = Arc::new(FakeStore::default());
        let settings = WriterSettings {
            durability,
            ..WriterSettings::default()
        };
        let (log, task) = start(store.clone(), settings).await;
        // Records 2 ms apart: within one async group's wait, each a commit of its own
        // when someone waits on it.
        for n in 1..=3 {
            log.record(entry(n)).await.expect("taken");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let commits = log.stats().commits.load(Ordering::Relaxed);
        let expected = if durability == Durability::Async {
            1
        } else {
            3
        };
        assert_eq!(commits, expected, "{durability:?}");
        assert_eq!(store.records.lock().unwrap().len(), 3);
        drop(log);
        task.await.expect("writer ends");
    }
}

#[tokio::test]
async fn fail_open_records_the_gap_when_the_store_returns() {
    let store = Arc::new(FakeStore::default());
    let settings = WriterSettings {
        fail_open: true,
        ..WriterSettings::default()
    };
    let (log, _task) = start(store.clone(), settings).await;
    store.failing.store(true, Ordering::SeqCst);
    for n in 1..=3 {
        assert!(
            log.record(entry(n)).await.is_err(),
            "the caller decides to serve"
        );
    }
    store.failing.store(false, Ordering::SeqCst);
    log.record(entry(4)).await.expect("committed");
    let records = store.records.lock().unwrap().clone();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].entry.action, "audit_gap");
    assert!(
        records[0].entry.detail.starts_with("3 call(s)"),
        "{}",
        records[0].entry.detail
    );
    assert_eq!(records[1].entry.time_ms, 4);
}

#[tokio::test]
async fn a_full_queue_sheds_at_once_instead_of_growing() {
    let store = Arc::new(FakeStore::default());
    store.hang.store(true, Ordering::SeqCst);
    let settings = WriterSettings {
        queue_capacity: 2,
        max_batch: 1,
        ..WriterSettings::default()
    };
    let (log, _task) = start(store.clone(), settings).await;
    let log = Arc::new(log);
    // One record is stuck in the hung commit, two wait in the queue…
    let mut waiting = Vec::new();
    for n in 0..3 {
        let log = log.clone();
        waiting.push(tokio::spawn(async move { log.record(entry(n)).await }));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …so the next is refused immediately.
    let refused = tokio::time::timeout(Duration::from_secs(1), log.record(entry(9)))
        .await
        .expect("answered at once");
    assert_eq!(refused, Err(AuditFailure::Full));
    assert_eq!(log.stats().backlog.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn checkpoints_sign_the_head_every_n_records_and_at_shutdown() {
    let store = Arc::new(FakeStore::default());
    let settings = WriterSettings {
        checkpoint_every: 4,
        ..WriterSettings::default()
    };
    let (log, task) = start(store.clone(), settings).await;
    for n in 1..=6 {
        log.record(entry(n)).await.expect("committed");
    }
    drop(log);
    task.await.expect("writer ends");
    let cps = store.checkpoints.lock().unwrap().clone();
    assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), [4, 6]);
    let signer = Signer::from_seed("s1", &[3; 32]).expect("seed");
    let records = store.records.lock().unwrap().clone();
    for cp in &cps {
        assert!(checkpoint_signed_by(cp, &signer.public_key()));
        assert_eq!(cp.hash, records[cp.seq as usize - 1].hash);
    }
}
