//! Micro-benchmarks of the request path's hot spots: key validation, a cache hit with
//! projection to the caller's grant, audit record hashing, and the grant check.
//!
//! `cargo bench --bench hot_paths` (figures and method in docs/BENCHMARKS.md).

use criterion::{Criterion, criterion_group, criterion_main};
use lienthong::audit::record::{AuditEntry, GENESIS, chain_hash};
use lienthong::config::Source;
use lienthong::domain::context::CallContext;
use lienthong::domain::dataset::{KeyKind, KeyRule};
use lienthong::domain::record::Record;
use lienthong::layers::cache::{CacheSettings, RecordCache};
use lienthong::layers::policy::Mode;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

fn key_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("key_validation");
    g.bench_function("personal_id", |b| {
        b.iter(|| KeyKind::PersonalId.normalize(black_box("001094000001"), 2026))
    });
    g.bench_function("enterprise_code", |b| {
        b.iter(|| KeyKind::EnterpriseCode.normalize(black_box("0100109106"), 2026))
    });
    g.bench_function("parcel_id", |b| {
        b.iter(|| KeyKind::ParcelId.normalize(black_box("00004-12-345"), 2026))
    });
    let pattern = KeyRule::pattern("[0-9]{10}(-[0-9]{3})?").expect("valid");
    g.bench_function("pattern", |b| {
        b.iter(|| pattern.normalize(black_box("0100109106-001"), 2026))
    });
    g.finish();
}

/// A citizen record as the population connector maps it (about 1.5 KB of JSON).
fn citizen() -> Record {
    let v = serde_json::json!({
        "personal_id": "001094000001",
        "old_id_number": "012345678",
        "full_name": "Nguyễn Văn An",
        "date_of_birth": "1994-03-12",
        "sex": "male",
        "birth_registration_place": {"province_code": "01", "province_name": "Thành phố Hà Nội", "commune_code": "00004", "commune_name": "Phường Ba Đình", "detail": "", "country": "VN"},
        "home_town": {"province_code": "01", "province_name": "Thành phố Hà Nội", "commune_code": "00004", "commune_name": "Phường Ba Đình", "detail": "", "country": "VN"},
        "ethnicity_code": "01",
        "ethnicity": "Kinh",
        "religion": "Không",
        "nationality": "VN",
        "permanent_residence": {"province_code": "01", "province_name": "Thành phố Hà Nội", "commune_code": "00004", "commune_name": "Phường Ba Đình", "detail": "Số 12 phố Đội Cấn", "country": "VN"},
        "current_residence": {"province_code": "01", "province_name": "Thành phố Hà Nội", "commune_code": "00004", "commune_name": "Phường Ba Đình", "detail": "Số 12 phố Đội Cấn", "country": "VN"},
        "marital_status": "married",
        "household_head_id": "001094000001",
        "relation_to_head": "Chủ hộ",
        "father": {"full_name": "Nguyễn Văn Bình", "personal_id": "001064000002", "nationality": "VN"},
        "mother": {"full_name": "Trần Thị Cúc", "personal_id": "001166000003", "nationality": "VN"}
    });
    Record(v.as_object().cloned().expect("object"))
}

fn cache_hit_with_projection(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = RecordCache::new(CacheSettings::default());
    let record = citizen();
    rt.block_on(async {
        cache
            .get_or_fetch("001094000001", false, || async {
                Ok(Some(lienthong::upstream::connector::Provided {
                    record: record.clone(),
                    data_time_ms: None,
                }))
            })
            .await
            .expect("filled");
    });
    let fields: Vec<String> = ["full_name", "date_of_birth", "permanent_residence"]
        .map(str::to_owned)
        .to_vec();
    c.bench_function("cache_hit_with_projection", |b| {
        b.iter(|| {
            rt.block_on(async {
                let served = cache
                    .get_or_fetch(black_box("001094000001"), false, || async {
                        unreachable!("a hit")
                    })
                    .await
                    .expect("hit");
                let (record, _) = served;
                record.map(|r| r.project(&fields).to_json())
            })
        })
    });
}

fn audit_hashing(c: &mut Criterion) {
    let entry = AuditEntry {
        time_ms: 1_764_300_000_000,
        request_id: "0193f1a2-7c3e-7b21-9d44-1a2b3c4d5e6f".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        transport: "rest".into(),
        actor: "demo-onestop".into(),
        credential: "api_key".into(),
        officer_id: "canbo01".into(),
        agency_code: "000.00.53.H48".into(),
        procedure_code: "1.001612".into(),
        dossier_id: "000.00.53.H48-251128-0001".into(),
        dataset: "population.citizen".into(),
        subject: "k1:6f1c2a…".into(),
        action: "lookup".into(),
        fields: vec!["full_name".into(), "date_of_birth".into()],
        outcome: "served".into(),
        cache: "hit".into(),
        upstream_ms: -1,
        ..AuditEntry::default()
    };
    c.bench_function("audit_chain_hash", |b| {
        b.iter(|| chain_hash(black_box(&GENESIS), "vm", black_box(42), black_box(&entry)))
    });
}

fn grant_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let config = lienthong::app::build(&Source::demo(), &BTreeMap::new())
        .expect("demo config")
        .model;
    let gateway = rt.block_on(async {
        let store = lienthong::audit::sqlite::SqliteStore::open(&dir.path().join("a.db"), false)
            .await
            .expect("store");
        let (log, _writer) = lienthong::audit::writer::AuditLog::start(
            Arc::new(store),
            "bench",
            config.audit.subjects(),
            config.audit.signer(),
            config.audit.writer.clone(),
        )
        .await
        .expect("audit");
        let register = lienthong::dossiers::Register::in_memory(config.dossiers.clone())
            .await
            .expect("register");
        lienthong::core::gateway::Gateway::new(Arc::new(config), log, Arc::new(register))
            .expect("gateway")
    });
    let consumer = gateway.config().consumers[0].clone();
    let context = CallContext::for_tests("1.001612", "000.00.53.H48-251128-0001", "canbo01");
    let asked = vec!["full_name".to_owned(), "date_of_birth".to_owned()];
    c.bench_function("grant_check", |b| {
        b.iter(|| {
            lienthong::layers::authorize::authorize(
                &gateway.config().grants,
                black_box(&consumer),
                "population.citizen",
                Mode::Fetch,
                &context,
                &asked,
            )
            .map(|(i, _, f)| (i, f.len()))
        })
    });
}

/// Steps 4b and 4c on a call: the binding check against a cached declared dossier, and
/// misuse detection in memory (the sequential rule's three keyed buckets included).
fn bind_and_detect(c: &mut Criterion) {
    use lienthong::dossiers::{DossierSettings, NewDossier, Register};
    use lienthong::layers::misuse::{Attempt, Detector, MisuseSettings, Overrides, serial};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let subjects = lienthong::audit::record::SubjectKey::new("k1", b"bench secret");
    let key = "001090012345";
    let subject = subjects.reference("population.citizen", key);
    let now = lienthong::audit::record::now_ms();
    let register = rt.block_on(async {
        let r = Register::in_memory(DossierSettings::default())
            .await
            .expect("register");
        r.declare(
            NewDossier {
                consumer: "onestop".into(),
                dossier_id: "000.00.53.H48-251128-0001".into(),
                procedure_code: "1.001612".into(),
                officer_id: String::new(),
                received_ms: now,
                subjects: vec![("population.citizen".into(), subject.clone())],
            },
            now,
        )
        .await
        .expect("declared");
        r
    });
    let mut grant = lienthong::app::build(&Source::demo(), &BTreeMap::new())
        .expect("demo config")
        .model
        .grants[0]
        .clone();
    grant.binding = lienthong::layers::policy::Binding::Declared;
    let context = CallContext::for_tests("1.001612", "000.00.53.H48-251128-0001", "canbo01");
    c.bench_function("bind_declared_cached", |b| {
        b.iter(|| {
            rt.block_on(lienthong::layers::bind::bind(
                &register,
                &grant,
                "onestop",
                &context,
                (black_box(subject.as_str()), Vec::new),
                now,
            ))
            .expect("bound")
        })
    });
    let settings = MisuseSettings::default();
    let detector = Detector::default();
    let none = Overrides::default();
    // 150 officers' worth of distinct citizens, far apart; their references are made by the
    // lookup anyway (the audit record's subject), so they are made here beforehand.
    let keys: Vec<(String, String)> = (0..150u64)
        .map(|n| {
            let key = format!("{:012}", 1_090_000_000 + n * 1_000);
            let subject = subjects.reference("population.citizen", &key);
            (key, subject)
        })
        .collect();
    let mut n = 0usize;
    c.bench_function("misuse_detect_memory", |b| {
        b.iter(|| {
            n += 1;
            let (key, subject) = &keys[n % keys.len()];
            let buckets = serial("population.citizen", key).map(|(prefix, s)| {
                let b = s / settings.sequential_step;
                [b, b.saturating_sub(1), b + 1].map(|b| {
                    subjects.short(&[
                        b"misuse:sequential",
                        b"population.citizen",
                        prefix.as_bytes(),
                        &b.to_le_bytes(),
                    ])
                })
            });
            let attempt = Attempt {
                consumer: "onestop",
                officer: "canbo01",
                dossier: "000.00.53.H48-251128-0001",
                subject,
                declared: Some(false),
                buckets,
                now_ms: now,
            };
            rt.block_on(detector.check(&settings, (&none, &none), black_box(&attempt), None))
                .alerts
                .len()
        })
    });
}

/// The embedded store's append path: a group of 32 chained records encoded into one segment
/// frame and appended (no fsync: criterion measures CPU, not the disk), and a sealed
/// segment's index built, per record.
fn audit_append(c: &mut Criterion) {
    use lienthong::audit::segments::{Segments, format, index};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let subjects = lienthong::audit::record::SubjectKey::new("k1", b"bench secret");
    let entries = (1..=4096).map(|seq| AuditEntry {
        time_ms: 1_764_300_000_000 + seq,
        request_id: format!("0193f1a2-7c3e-7b21-9d44-{seq:012}"),
        trace_id: format!("{seq:032x}"),
        transport: "rest".into(),
        actor: "demo-onestop".into(),
        credential: "api_key".into(),
        officer_id: format!("canbo{:02}", seq % 40),
        agency_code: "000.00.53.H48".into(),
        procedure_code: "1.001612".into(),
        dossier_id: format!("000.00.53.H48-251128-{:04}", seq % 900),
        dataset: "population.citizen".into(),
        subject: subjects.reference("population.citizen", &format!("0010{:08}", seq)),
        action: "fetch".into(),
        fields: vec!["full_name".into(), "date_of_birth".into()],
        outcome: "served".into(),
        cache: "hit".into(),
        upstream_ms: -1,
        ..AuditEntry::default()
    });
    let records = lienthong::audit::record::link("vm", 1, GENESIS, entries);
    let store = Segments::open(dir.path(), false, true, false).expect("segments");
    let group = &records[..32];
    c.bench_function("audit_segment_append_32", |b| {
        b.iter(|| {
            rt.block_on(store.append(black_box(group), None))
                .expect("append")
        })
    });
    let mut log = format::LOG_MAGIC.to_vec();
    for chunk in records.chunks(32) {
        format::encode_frame(&mut log, chunk, None);
    }
    c.bench_function("audit_segment_index_4096", |b| {
        b.iter(|| index::build(black_box(&log)).expect("index").0.len())
    });
}

criterion_group!(
    hot_paths,
    audit_append,
    key_validation,
    cache_hit_with_projection,
    audit_hashing,
    grant_check,
    bind_and_detect
);
criterion_main!(hot_paths);
