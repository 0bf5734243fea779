use super::*;
use crate::audit::record::{AuditEntry, Disclosure, GENESIS, Signer, link};
use crate::audit::store::Query;
use std::time::Duration;

/// A chain of `n` records with a few repeating keys, people named in fields, and times that
/// do not always rise (a slow call commits after a faster one).
fn records(instance: &str, from: i64, n: i64, prev: [u8; 32]) -> Vec<Chained> {
    let entries = (from..from + n).map(|seq| AuditEntry {
        time_ms: 1_700_000_000_000 + seq * 10 - (seq % 7) * 15,
        request_id: format!("r{seq}"),
        actor: format!("consumer-{}", seq % 3),
        officer_id: format!("canbo{:02}", seq % 5),
        dossier_id: format!("H48-{:04}", seq % 11),
        dataset: if seq % 2 == 0 {
            "population"
        } else {
            "business"
        }
        .into(),
        subject: format!("k1:{:064x}", seq % 13),
        action: "fetch".into(),
        outcome: if seq % 4 == 0 { "not_found" } else { "served" }.into(),
        upstream_ms: -1,
        disclosure: (seq % 3 == 0).then(|| Disclosure {
            legal_basis: "basis".into(),
            withheld: false,
            mentions: vec![("father".into(), format!("k1:{:064x}", (seq + 1) % 13))],
        }),
        ..AuditEntry::default()
    });
    link(instance, from, prev, entries)
}

/// What a query must answer, computed by brute force.
fn expected(all: &[Chained], q: &Query, archived: &Archived) -> Vec<Chained> {
    let mut out: Vec<Chained> = all
        .iter()
        .filter(|r| {
            let e = &r.entry;
            let eq = |want: &Option<String>, got: &str| want.as_ref().is_none_or(|w| w == got);
            archived.get(&r.instance).is_none_or(|a| r.seq > *a)
                && (q.subjects.is_empty() || q.subjects.contains(&e.subject))
                && eq(&q.dataset, &e.dataset)
                && eq(&q.actor, &e.actor)
                && eq(&q.dossier_id, &e.dossier_id)
                && eq(&q.officer_id, &e.officer_id)
                && eq(&q.outcome, &e.outcome)
                && (q.persons.is_empty()
                    || q.persons.iter().any(|p| {
                        &e.subject == p
                            || e.disclosure
                                .as_ref()
                                .is_some_and(|d| d.mentions.iter().any(|(_, m)| m == p))
                    }))
                && q.from_ms.is_none_or(|f| e.time_ms >= f)
                && q.to_ms.is_none_or(|t| e.time_ms <= t)
                && q.after.as_ref().is_none_or(|(t, i, s)| {
                    e.time_ms < *t
                        || (e.time_ms == *t
                            && (&r.instance > i || (&r.instance == i && r.seq < *s)))
                })
        })
        .cloned()
        .collect();
    out.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.entry.time_ms),
            r.instance.clone(),
            std::cmp::Reverse(r.seq),
        )
    });
    out.truncate(q.limit);
    out
}

async fn append_all(store: &Segments, all: &[Chained], group: usize) {
    for chunk in all.chunks(group) {
        store.append(chunk, None).await.expect("append");
    }
}

/// Waits until every log but the newest has its index.
async fn sealed(store: &Segments) {
    for _ in 0..500 {
        let list = store.list().expect("list");
        let open = list.iter().filter(|s| matches!(s, Seg::Open(_))).count();
        if open <= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("logs were not sealed");
}

fn queries() -> Vec<Query> {
    let base = Query {
        limit: 25,
        ..Query::default()
    };
    let person = format!("k1:{:064x}", 4);
    vec![
        base.clone(),
        Query {
            subjects: vec![format!("k1:{:064x}", 5)],
            ..base.clone()
        },
        // One subject under two keys (after a rotation): records of either.
        Query {
            subjects: vec![format!("k1:{:064x}", 5), format!("k1:{:064x}", 7)],
            ..base.clone()
        },
        Query {
            persons: vec![person.clone()],
            ..base.clone()
        },
        Query {
            persons: vec![person.clone(), format!("k1:{:064x}", 9)],
            ..base.clone()
        },
        Query {
            persons: vec![person],
            dataset: Some("population".into()),
            ..base.clone()
        },
        Query {
            actor: Some("consumer-1".into()),
            limit: 300,
            ..base.clone()
        },
        Query {
            dossier_id: Some("H48-0003".into()),
            outcome: Some("served".into()),
            ..base.clone()
        },
        Query {
            officer_id: Some("canbo02".into()),
            from_ms: Some(1_700_000_002_000),
            to_ms: Some(1_700_000_006_000),
            ..base.clone()
        },
        Query {
            outcome: Some("not_found".into()),
            ..base.clone()
        },
        Query {
            officer_id: Some("nobody".into()),
            ..base.clone()
        },
        Query {
            actor: Some(String::new()),
            ..base
        },
    ]
}

#[tokio::test]
async fn queries_across_sealed_and_open_segments_match_a_brute_force_answer_page_by_page() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Segments::open_sealing_at(dir.path(), false, true, false, 100).expect("open");
    let all = records("gw", 1, 730, GENESIS);
    append_all(&store, &all, 17).await;
    sealed(&store).await;
    let list = store.list().expect("list");
    assert!(
        list.iter().filter(|s| matches!(s, Seg::Sealed(..))).count() >= 6,
        "several sealed"
    );
    assert!(
        matches!(list.last(), Some(Seg::Open(_))),
        "the newest is open"
    );
    let reader = Segments::open(dir.path(), false, false, false).expect("a reader");
    let none = Archived::new();
    for q in queries() {
        for who in [&store, &reader] {
            // Every page, following the cursor, until the answer runs out.
            let mut q = q.clone();
            let mut pages = 0;
            loop {
                let got = who.query(&q, &none).expect("query");
                assert_eq!(got, expected(&all, &q, &none), "{q:?}");
                let Some(last) = got.last() else { break };
                if got.len() < q.limit {
                    break;
                }
                q.after = Some((last.entry.time_ms, last.instance.clone(), last.seq));
                pages += 1;
                assert!(pages < 100, "pages do not end");
            }
        }
    }
    // Archived records are gone from answers.
    let archived: Archived = [("gw".to_owned(), 250)].into();
    let q = Query {
        limit: 1000,
        ..Query::default()
    };
    assert_eq!(
        store.query(&q, &archived).expect("q"),
        expected(&all, &q, &archived)
    );
}

#[tokio::test]
async fn a_chain_reads_back_in_order_with_its_head_count_and_checkpoints() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Segments::open_sealing_at(dir.path(), true, true, false, 64).expect("open");
    assert_eq!(store.head("gw").expect("head"), None);
    let all = records("gw", 1, 300, GENESIS);
    let other = records("gw.cli", 1, 5, GENESIS);
    let signer = Signer::from_seed("s1", &[3; 32]).expect("seed");
    let mut cps = Vec::new();
    for (i, chunk) in all.chunks(30).enumerate() {
        let last = chunk.last().expect("a record");
        let cp = (i % 2 == 1).then(|| signer.sign("gw", last.seq, &last.hash, 1));
        store.append(chunk, cp.as_ref()).await.expect("append");
        cps.extend(cp);
        if i == 3 {
            store.append(&other, None).await.expect("another chain");
        }
    }
    // A checkpoint alone (the head signed at shutdown) is a frame without records.
    let alone = signer.sign("gw", 300, &all[299].hash, 2);
    store
        .append(&[], Some(&alone))
        .await
        .expect("a checkpoint alone");
    cps.push(alone);
    sealed(&store).await;
    let last = all.last().expect("last");
    assert_eq!(store.head("gw").expect("head"), Some((300, last.hash)));
    assert_eq!(
        store.head("gw.cli").expect("head"),
        Some((5, other[4].hash))
    );
    assert_eq!(
        store
            .instances()
            .expect("instances")
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["gw".to_owned(), "gw.cli".to_owned()]
    );
    let mut read = Vec::new();
    loop {
        let after = read.last().map_or(0, |r: &Chained| r.seq);
        let page = store.scan("gw", after, 37).expect("scan");
        if page.is_empty() {
            break;
        }
        read.extend(page);
    }
    assert_eq!(read, all);
    assert_eq!(
        store.scan("gw.cli", 2, 10).expect("scan"),
        other[2..].to_vec()
    );
    assert_eq!(store.count("gw", 0).expect("count"), 300);
    assert_eq!(store.count("gw", 100).expect("count"), 200);
    assert_eq!(store.checkpoints("gw", 0).expect("cps"), cps);
    assert_eq!(
        store.checkpoints("gw", 120).expect("cps"),
        cps.iter()
            .filter(|c| c.seq > 120)
            .cloned()
            .collect::<Vec<_>>()
    );
    // Segments holding only archived records go; the rest stay readable.
    let before = store.list().expect("list").len();
    let removed = store
        .remove_archived(&[("gw".to_owned(), 200), ("gw.cli".to_owned(), 5)].into())
        .expect("remove");
    assert!(removed >= 2, "{removed}");
    assert_eq!(store.list().expect("list").len(), before - removed);
    assert_eq!(
        store.scan("gw", 200, 500).expect("scan"),
        all[200..].to_vec()
    );
}

#[tokio::test]
async fn a_torn_commit_is_cut_off_at_open_and_an_index_lost_in_a_crash_is_built_again() {
    let dir = tempfile::tempdir().expect("dir");
    let all = records("gw", 1, 90, GENESIS);
    {
        let store = Segments::open_sealing_at(dir.path(), false, true, false, 40).expect("open");
        append_all(&store, &all, 10).await;
        sealed(&store).await;
    }
    let store_dir = dir.path();
    let numbers: Vec<u64> = std::fs::read_dir(store_dir)
        .expect("list")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    let newest = *numbers.iter().max().expect("logs");
    let oldest = *numbers.iter().min().expect("logs");
    // A commit cut short at the end of the newest log, and the oldest log's index lost.
    let newest_log = store_dir.join(format!("{newest:016}.log"));
    let mut torn = Vec::new();
    format::encode_frame(&mut torn, &records("gw", 91, 3, all[89].hash), None);
    let mut bytes = std::fs::read(&newest_log).expect("read");
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&newest_log, &bytes).expect("tear");
    std::fs::remove_file(store_dir.join(format!("{oldest:016}.idx"))).expect("lose an index");
    let store = Segments::open(store_dir, false, true, false).expect("reopens");
    assert!(
        store
            .list()
            .expect("list")
            .iter()
            .all(|s| matches!(s, Seg::Sealed(..)))
    );
    assert_eq!(store.scan("gw", 0, 1000).expect("scan"), all);
    assert_eq!(store.head("gw").expect("head"), Some((90, all[89].hash)));
    // The next commit continues in a new log.
    let next = records("gw", 91, 2, all[89].hash);
    store.append(&next, None).await.expect("append");
    assert_eq!(store.scan("gw", 89, 10).expect("scan").len(), 3);
    drop(store);
    // Damage inside a log, with whole frames after it, stops the open.
    let oldest_log = store_dir.join(format!("{oldest:016}.log"));
    std::fs::remove_file(store_dir.join(format!("{oldest:016}.idx"))).expect("index");
    let mut bytes = std::fs::read(&oldest_log).expect("read");
    bytes[40] ^= 0xFF;
    std::fs::write(&oldest_log, &bytes).expect("damage");
    let refused = Segments::open(store_dir, false, true, false);
    assert!(
        refused.as_ref().is_err_and(|e| e.0.contains("damaged")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_reader_sees_each_commit_once_it_returns_and_cannot_append() {
    let dir = tempfile::tempdir().expect("dir");
    let owner = Segments::open(dir.path(), true, true, true).expect("owner");
    let reader = Segments::open(dir.path(), true, false, false).expect("reader");
    let all = records("gw", 1, 3, GENESIS);
    for (i, r) in all.iter().enumerate() {
        owner
            .append(std::slice::from_ref(r), None)
            .await
            .expect("append");
        assert_eq!(reader.scan("gw", 0, 10).expect("scan").len(), i + 1);
    }
    assert!(reader.append(&all, None).await.is_err());
}

#[tokio::test]
async fn an_index_changed_after_it_was_built_is_found() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Segments::open_sealing_at(dir.path(), false, true, false, 50).expect("open");
    append_all(&store, &records("gw", 1, 120, GENESIS), 10).await;
    sealed(&store).await;
    assert_eq!(
        store.indexes_differ().expect("checked"),
        Vec::<String>::new()
    );
    // Someone drops a subject's postings: the run points at another record.
    let idx = store.index_path(1);
    let mut bytes = std::fs::read(&idx).expect("read");
    let at = bytes.len() - 40;
    bytes[at] ^= 0x5A;
    std::fs::write(&idx, bytes).expect("write");
    let found = store.indexes_differ().expect("checked");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("does not match its log"), "{}", found[0]);
}

#[tokio::test]
async fn an_index_built_while_writing_is_the_one_its_log_builds() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Segments::open_sealing_at(dir.path(), false, true, false, 40).expect("open");
    let signer = Signer::from_seed("k1", &[5; 32]).expect("seed");
    // Two chains in the same logs, records without an officer or a dossier, a person named
    // who is also the subject, and checkpoints in some commits.
    let (mut a, mut b) = (
        records("gw-a", 1, 90, GENESIS),
        records("gw-b", 1, 90, GENESIS),
    );
    for (i, r) in a.iter_mut().chain(b.iter_mut()).enumerate() {
        if i % 4 == 0 {
            r.entry.officer_id.clear();
            r.entry.dossier_id.clear();
        }
        if let Some(d) = &mut r.entry.disclosure {
            d.mentions.push(("self".into(), r.entry.subject.clone()));
        }
    }
    let (a, b) = (relink(a), relink(b));
    for (i, (x, y)) in a.chunks(7).zip(b.chunks(7)).enumerate() {
        let cp = (i % 3 == 0).then(|| {
            let last = x.last().expect("a record");
            signer.sign(&last.instance, last.seq, &last.hash, last.entry.time_ms)
        });
        store.append(x, cp.as_ref()).await.expect("append");
        store.append(y, None).await.expect("append");
    }
    store.seal_current().await.expect("sealed");
    sealed(&store).await;
    let list = store.list().expect("list");
    assert!(
        list.iter().all(|s| matches!(s, Seg::Sealed(..))),
        "all sealed"
    );
    assert!(list.len() >= 4, "several logs: {}", list.len());
    // `indexes_differ` builds each index again from its log and compares the bytes.
    assert_eq!(
        store.indexes_differ().expect("checked"),
        Vec::<String>::new()
    );
}

/// `records` linked again after their entries changed.
fn relink(records: Vec<Chained>) -> Vec<Chained> {
    let instance = records[0].instance.clone();
    link(&instance, 1, GENESIS, records.into_iter().map(|r| r.entry))
}
