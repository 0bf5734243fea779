//! The embedded audit store alone: how many records a second it takes with sync group
//! commits, its indexing included, and what each record costs in CPU, against the design
//! before segments (a JSON commit-file line per group, then SQLite rows and five indexes in
//! batches of 8,192), measured on the same records in the same run.
//!
//! `cargo run --release --example storebench -- [--records N] [--writers W] [--no-fsync]`
//!
//! Each design runs on one current-thread runtime, so the figures are one core's worth
//! (plus the sealing thread, counted in the process's CPU time). Prints one JSON object.

use lienthong::audit::journal::JournaledStore;
use lienthong::audit::record::{
    AuditEntry, Chained, Disclosure, GENESIS, Signer, SubjectKey, link,
};
use lienthong::audit::sqlite::SqliteStore;
use lienthong::audit::store::AuditStore;
use lienthong::audit::writer::{AuditLog, Durability, WriterSettings};
use std::sync::Arc;
use std::time::Instant;

/// CPU time of this process so far (every thread), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime
    // the 13th, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A lookup's record as the gateway writes it: a served citizen, two people named.
fn entry(n: u64, subjects: &SubjectKey) -> AuditEntry {
    let id = format!("0010{:08}", n % 50_000);
    AuditEntry {
        time_ms: lienthong::audit::record::now_ms(),
        request_id: format!("01JDQ3X8K4{n:016}"),
        trace_id: format!("{n:032x}"),
        transport: "rest".into(),
        actor: format!("onestop-{}", n % 7),
        credential: "api_key".into(),
        officer_id: format!("canbo{:03}", n % 97),
        agency_code: "000.00.53.H48".into(),
        procedure_code: "1.001612".into(),
        dossier_id: format!("000.00.53.H48-251128-{:04}", n % 5000),
        purpose: "procedure".into(),
        dataset: "population.citizen".into(),
        subject: subjects.reference("population.citizen", &id),
        action: "fetch".into(),
        fields: vec![
            "full_name".into(),
            "date_of_birth".into(),
            "permanent_address".into(),
        ],
        outcome: "served".into(),
        cache: "hit".into(),
        upstream_status: String::new(),
        upstream_ms: -1,
        detail: String::new(),
        disclosure: Some(Disclosure {
            legal_basis: "Luật Căn cước 2023, Điều 10".into(),
            withheld: false,
            mentions: vec![
                (
                    "father".into(),
                    subjects.reference("population.citizen", &format!("0011{:08}", n % 40_000)),
                ),
                (
                    "mother".into(),
                    subjects.reference("population.citizen", &format!("0012{:08}", n % 40_000)),
                ),
            ],
        }),
    }
}

struct Args {
    records: u64,
    writers: u64,
    fsync: bool,
}

fn args() -> Args {
    let mut a = Args {
        records: 300_000,
        writers: 256,
        fsync: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--records" => a.records = it.next().and_then(|v| v.parse().ok()).expect("--records N"),
            "--writers" => a.writers = it.next().and_then(|v| v.parse().ok()).expect("--writers W"),
            "--no-fsync" => a.fsync = false,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Segments, through the gateway's own writer: sync group commits from `writers` callers.
async fn segments(a: &Args, dir: &std::path::Path) -> serde_json::Value {
    let store = JournaledStore::open(&dir.join("audit.db"), a.fsync, true)
        .await
        .expect("store");
    let (log, writer) = AuditLog::start(
        store.clone(),
        "bench",
        lienthong::audit::record::SubjectKeys::new(vec![subjects()]),
        Signer::from_seed("s1", &[7; 32]).expect("seed"),
        WriterSettings {
            durability: Durability::Sync,
            queue_capacity: 65_536,
            max_batch: 512,
            ..WriterSettings::default()
        },
    )
    .await
    .expect("writer");
    let entries: Vec<AuditEntry> = (0..a.records)
        .map(|n| entry(n, log.subjects().current()))
        .collect();
    let log = Arc::new(log);
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let per = a.records / a.writers;
    let mut tasks = Vec::new();
    let entries = Arc::new(entries);
    for w in 0..a.writers {
        let (log, entries) = (log.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            for i in w * per..(w + 1) * per {
                log.record(entries[i as usize].clone())
                    .await
                    .expect("committed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let committed = wall.elapsed().as_secs_f64();
    // Index what is left, as a stop would: indexing is part of the cost.
    store.flush().await.expect("sealed");
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let n = (per * a.writers) as f64;
    let stats = log.stats();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed) as f64;
    drop(log);
    writer.await.ok();
    let bytes: u64 = std::fs::read_dir(dir.join("audit.db.segments"))
        .expect("segments")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    figures(
        "segments",
        n,
        (wall, cpu),
        serde_json::json!({
            "records_per_s_committed": (n / committed).round(),
            "records_per_commit": (n / commits * 10.0).round() / 10.0,
            "bytes_per_record": (bytes as f64 / n).round(),
        }),
    )
}

/// What every design reports (records a second, CPU per record), and its own `extra`.
fn figures(
    design: &str,
    n: f64,
    (wall, cpu): (f64, f64),
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut out = serde_json::json!({
        "design": design,
        "records": n,
        "records_per_s": (n / wall).round(),
        "cpu_us_per_record": (cpu * 1e6 / n * 100.0).round() / 100.0,
    });
    if let (Some(out), serde_json::Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
    out
}

/// The benchmark's subject key (the same in every design).
fn subjects() -> SubjectKey {
    SubjectKey::new("k1", b"0123456789abcdef0123456789abcdef")
}

/// The same records, chained beforehand.
fn chained(a: &Args) -> Vec<Chained> {
    let key = subjects();
    link("bench", 1, GENESIS, (0..a.records).map(|n| entry(n, &key)))
}

/// A commit line as the design before segments wrote it (its own serialisation, borrowed).
#[derive(serde::Serialize)]
struct Line<'a> {
    records: Vec<LineRecord<'a>>,
}

#[derive(serde::Serialize)]
struct LineRecord<'a> {
    instance: &'a str,
    seq: i64,
    prev_hash: String,
    hash: String,
    entry: &'a AuditEntry,
}

/// Segments appended to directly, in groups of `group`, sealed at the end: the store's
/// work alone, as [`before`] measures the earlier design's.
async fn segments_direct(a: &Args, dir: &std::path::Path, group: usize) -> serde_json::Value {
    let records = chained(a);
    let store = JournaledStore::open(&dir.join("direct.db"), a.fsync, true)
        .await
        .expect("store");
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for chunk in records.chunks(group) {
        store.append(chunk.to_vec(), None).await.expect("append");
    }
    store.flush().await.expect("sealed");
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let n = records.len() as f64;
    figures(
        "segments, appended directly",
        n,
        (wall, cpu),
        serde_json::json!({ "records_per_commit": group }),
    )
}

/// The design before segments, its work alone: one JSON line per group of `group` records
/// appended and synced, then the rows into SQLite in batches of 8,192.
async fn before(a: &Args, dir: &std::path::Path, group: usize) -> serde_json::Value {
    use std::io::Write;
    let records = chained(a);
    let sqlite = SqliteStore::open(&dir.join("before.db"), a.fsync)
        .await
        .expect("sqlite");
    let mut file = std::fs::File::create(dir.join("before.commits")).expect("file");
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for chunk in records.chunks(group) {
        let line = Line {
            records: chunk
                .iter()
                .map(|r| LineRecord {
                    instance: &r.instance,
                    seq: r.seq,
                    prev_hash: hex::encode(r.prev_hash),
                    hash: hex::encode(r.hash),
                    entry: &r.entry,
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec(&line).expect("json");
        bytes.push(b'\n');
        file.write_all(&bytes).expect("write");
        if a.fsync {
            file.sync_data().expect("sync");
        }
    }
    for batch in records.chunks(8192) {
        sqlite.append_all(batch, &[]).await.expect("rows");
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let n = records.len() as f64;
    figures(
        "before: JSON commit line + SQLite batches",
        n,
        (wall, cpu),
        serde_json::json!({ "records_per_commit": group }),
    )
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let seg = rt.block_on(segments(&a, dir.path()));
    let group = seg["records_per_commit"]
        .as_f64()
        .unwrap_or(32.0)
        .round()
        .max(1.0) as usize;
    let direct = rt.block_on(segments_direct(&a, dir.path(), group));
    let old = rt.block_on(before(&a, dir.path(), group));
    println!(
        "{}",
        serde_json::json!({ "fsync": a.fsync, "runs": [seg, direct, old] })
    );
}
