//! The pipeline over a fake provider and an audit store in memory, with paused time: each
//! step stops a call before the next one sees it, so a refused caller spends no quota and
//! calls no provider, and a throttled caller reaches neither the cache nor the provider.

use super::*;
use crate::audit::memory::MemoryStore;
use crate::audit::writer::WriterSettings;
use crate::config::{Errors, Settings, Source};
use crate::core::request::{Caller, LookupRequest};
use crate::domain::dataset;
use crate::domain::ids::EnterpriseCode;
use crate::layers::cache::RecordCache;
use crate::layers::policy;
use crate::upstream::connector::Connector;
use crate::upstream::spec;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const BUSINESS: &str = "business.enterprise";
const API_KEY: &str = "demo-onestop-key";

/// The demo's model, its business grant limited to `quota`, and a gateway over it whose
/// business provider is fake and counts its calls.
async fn gateway(quota: &str) -> (Arc<Gateway>, Arc<MemoryStore>, Arc<AtomicUsize>) {
    let (settings, sections, mut all) =
        Settings::read(&Source::demo(), &BTreeMap::new()).expect("demo settings");
    let mut e = Errors {
        file: "demo".into(),
        all: &mut all,
    };
    let audit = crate::audit::settings::from_settings(
        &Source::demo(),
        &sections.gateway.audit,
        &BTreeMap::new(),
        &mut e,
    );
    let datasets: Vec<Arc<dataset::Dataset>> = dataset::from_settings(sections.datasets.1, &mut e)
        .into_iter()
        .map(Arc::new)
        .collect();
    let connectors = spec::connectors(
        sections.connectors.1,
        &datasets,
        &Source::demo(),
        &BTreeMap::new(),
        None,
        &mut e,
    );
    let consumers = policy::consumers(sections.consumers.1, false, &mut e);
    let mut grants = policy::grants(sections.grants.1, &consumers, &datasets, &mut e);
    assert!(all.is_empty(), "{all:?}");
    for g in grants.iter_mut().filter(|g| g.dataset == BUSINESS) {
        g.quota = Some(crate::shared::limiter::QuotaSpec::parse(quota).expect("quota"));
    }
    let model = Model {
        settings,
        context_rules: Default::default(),
        admin_credentials: Vec::new(),
        secrets_key: None,
        audit,
        datasets,
        connectors,
        consumers,
        grants,
        dossiers: crate::dossiers::DossierSettings::default(),
        procedures: Default::default(),
        certificates: Vec::new(),
        access: crate::domain::calendar::from_settings(
            &Default::default(),
            &Default::default(),
            &mut Errors {
                file: "test".into(),
                all: &mut Vec::new(),
            },
        ),
        // Detection has tests of its own; off here, so each step's effect stands alone.
        misuse: crate::layers::misuse::from_settings(
            &crate::config::raw::RawMisuse {
                enabled: false,
                ..Default::default()
            },
            &mut Errors {
                file: "test".into(),
                all: &mut Vec::new(),
            },
        ),
    };
    let store = Arc::new(MemoryStore::default());
    let (log, _writer) = AuditLog::start(
        store.clone(),
        "test",
        model.audit.subjects(),
        model.audit.signer(),
        WriterSettings::default(),
    )
    .await
    .expect("audit log");
    // SQLite answers on its own thread: with the clock paused, the pool's wait for it would
    // time out at once, so the register opens on the real clock.
    tokio::time::resume();
    let register = crate::dossiers::Register::in_memory(model.dossiers.clone())
        .await
        .expect("register");
    tokio::time::pause();
    let mut gateway = Gateway::new(Arc::new(model), log, Arc::new(register)).expect("gateway");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let real = gateway.routes[BUSINESS].clone();
    let fake = Connector::fake(
        real.connector.config.clone(),
        real.dataset.clone(),
        Arc::new(move |key: &str| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Some(json!({"Data": {"MainInformation": {
                "ENTERPRISE_CODE": key,
                "NAME": "Công ty TNHH Hoa Sen",
            }}})))
        }),
    );
    gateway.routes.insert(
        BUSINESS.into(),
        Arc::new(Route {
            fingerprint: real.fingerprint.clone(),
            dataset: real.dataset.clone(),
            connector: fake,
            cache: RecordCache::new(real.connector.config.cache),
            guard: crate::upstream::guard::Guard::new(
                real.connector.config.guard.clone(),
                real.connector.config.timeout,
            ),
            probe: Default::default(),
        }),
    );
    (Arc::new(gateway), store, calls)
}

/// Enterprise codes with a valid check digit.
fn codes() -> Vec<String> {
    (0..100)
        .map(|n| format!("01002334{n:02}"))
        .filter(|c| EnterpriseCode::parse(c).is_ok())
        .collect()
}

fn caller(key: Option<&str>) -> Caller {
    Caller {
        api_key: key.map(str::to_owned),
        transport: "rest",
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Caller::default()
    }
}

fn request(key: &str, procedure: &str) -> LookupRequest {
    LookupRequest {
        dataset: BUSINESS.into(),
        key: key.into(),
        context: RawContext {
            procedure_code: Some(procedure.into()),
            dossier_id: Some("000.00.53.H48-251128-0001".into()),
            officer_id: Some("canbo01".into()),
            ..RawContext::default()
        },
        ..LookupRequest::default()
    }
}

/// The outcomes the audit store holds, in order.
async fn outcomes(store: &MemoryStore, n: usize) -> Vec<String> {
    // The writer commits behind the answers in the background; wait for it (paused time
    // advances while every task waits).
    for _ in 0..1000 {
        if store.records.lock().expect("records").len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    store
        .records
        .lock()
        .expect("records")
        .iter()
        .map(|r| r.entry.outcome.clone())
        .collect()
}

fn misses(g: &Gateway) -> u64 {
    g.metrics
        .cache
        .with(&[BUSINESS, "miss"])
        .load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn refused_callers_reach_neither_the_quota_nor_the_provider() {
    let (g, store, calls) = gateway("2/min").await;
    let codes = codes();
    // No credentials, a wrong key, a malformed key, a procedure not granted: each stops at
    // its own step.
    let refusals = [
        (
            caller(None),
            request(&codes[0], "1.001612"),
            "unauthenticated",
        ),
        (
            caller(Some("guess")),
            request(&codes[0], "1.001612"),
            "unauthenticated",
        ),
        (
            caller(Some(API_KEY)),
            request("0100233489", "1.001612"),
            "invalid_key",
        ),
        (
            caller(Some(API_KEY)),
            request(&codes[0], "3.000001"),
            "permission_denied",
        ),
    ];
    for (who, asked, code) in refusals {
        let e = g.lookup(&who, asked).await.expect_err("refused");
        assert_eq!(e.code.as_str(), code, "{e}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no provider call for a refusal"
    );
    assert_eq!(misses(&g), 0, "no cache lookup for a refusal");
    // The quota is whole: its first admitted call leaves one of two.
    let served = g
        .lookup(&caller(Some(API_KEY)), request(&codes[0], "1.001612"))
        .await
        .expect("served");
    assert_eq!(served.quota.expect("quota state").remaining, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        outcomes(&store, 3).await,
        ["invalid_key", "permission_denied", "served"],
        "one record per identified caller's call, refusals included, in order; callers \
         never identified are summed at the door instead"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttled_caller_reaches_neither_the_cache_nor_the_provider() {
    let (g, store, calls) = gateway("2/min").await;
    let codes = codes();
    let who = caller(Some(API_KEY));
    g.lookup(&who, request(&codes[0], "1.001612"))
        .await
        .expect("first");
    let hit = g
        .lookup(&who, request(&codes[0], "1.001612"))
        .await
        .expect("second");
    assert_eq!(
        hit.cache,
        CacheStatus::Hit,
        "the quota counts cached answers too"
    );
    assert_eq!((calls.load(Ordering::SeqCst), misses(&g)), (1, 1));
    // Over the quota with a key never asked: had the call reached the cache, it would have
    // missed and called the provider.
    let e = g
        .lookup(&who, request(&codes[1], "1.001612"))
        .await
        .expect_err("throttled");
    assert_eq!(e.code.as_str(), "rate_limited");
    assert!(
        e.retry_after.is_some(),
        "a throttled caller is told when to retry"
    );
    assert_eq!(
        (calls.load(Ordering::SeqCst), misses(&g)),
        (1, 1),
        "neither the cache nor the provider saw the throttled call"
    );
    assert_eq!(
        outcomes(&store, 3).await,
        ["served", "served", "rate_limited"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_checked_whole_before_any_item_runs() {
    let (g, store, calls) = gateway("100/min").await;
    let codes = codes();
    let items = |n: usize| -> Vec<BatchItem> {
        (0..n)
            .map(|i| BatchItem {
                dataset: BUSINESS.into(),
                key: codes[i % codes.len()].clone(),
                fields: Vec::new(),
            })
            .collect()
    };
    let context = request(&codes[0], "1.001612").context;
    // Too many items: one refusal, one record, no item looked up. An unknown caller hears
    // only that it is unknown, even with too many items, and leaves no record of its own.
    let too_many = g.settings_max_batch() + 1;
    let e = match g
        .clone()
        .batch(
            caller(Some(API_KEY)),
            context.clone(),
            items(too_many),
            false,
        )
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("an oversized batch is refused"),
    };
    assert_eq!(e.code.as_str(), "invalid_request");
    let e = match g
        .clone()
        .batch(caller(None), context.clone(), items(too_many), false)
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("an unknown caller's batch is refused"),
    };
    assert_eq!(e.code.as_str(), "unauthenticated");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A good batch: each item its own lookup, in request order.
    let outcomes_seen: Vec<BatchOutcome> = g
        .clone()
        .batch(caller(Some(API_KEY)), context, items(3), false)
        .await
        .expect("admitted")
        .collect()
        .await;
    let order: Vec<usize> = outcomes_seen.iter().map(|o| o.index).collect();
    assert_eq!(order, [0, 1, 2]);
    assert!(outcomes_seen.iter().all(|o| o.result.is_ok()));
    assert_eq!(
        outcomes(&store, 4).await,
        ["invalid_request", "served", "served", "served"]
    );
}

impl Gateway {
    fn settings_max_batch(&self) -> usize {
        self.config.settings.max_batch_items
    }
}

/// A call's future is moved into a box once per request: it stays small because the
/// futures of rare paths (a provider call, a Redis count, a register read) are boxed where
/// they are awaited, instead of sizing every call's future. It was 13 KB with them inline.
#[tokio::test(start_paused = true)]
async fn a_lookups_future_stays_small() {
    let (g, _, _) = gateway("100/min").await;
    let c = caller(Some(API_KEY));
    let f = g.lookup(&c, request(&codes()[0], "1.001612"));
    let size = std::mem::size_of_val(&f);
    assert!(size <= 6 * 1024, "a lookup's future is {size} bytes");
}
