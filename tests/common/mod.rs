//! Test harness: the real simulators and the real gateway on ephemeral loopback ports, with
//! the demo's config files rewritten to point at them.

#![allow(dead_code, unreachable_pub)]

use lienthong::app::{Running, build, start};
use lienthong::config::Source;
use lienthong::sim::{self, RunningSims, SimOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const API_KEY: &str = "demo-onestop-key";
pub const PROCEDURE: &str = "1.001612";
pub const DOSSIER: &str = "000.00.53.H48-251128-0001";
pub const OFFICER: &str = "canbo01";

pub const GATEWAY_TOML: &str = include_str!("../../config/demo/gateway.toml");
pub const CONNECTORS_TOML: &str = include_str!("../../config/demo/connectors.toml");
pub const CONSUMERS_TOML: &str = include_str!("../../config/demo/consumers.toml");
pub const GRANTS_TOML: &str = include_str!("../../config/demo/grants.toml");
pub const PROCEDURES_TOML: &str = include_str!("../../config/demo/procedures.toml");

pub struct Harness {
    pub sims: RunningSims,
    pub gateway: Running,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Harness {
    /// Starts with the demo config, each file's text passed through `edit(file name, text)`
    /// (connectors.toml after its endpoints point at the simulators, gateway.toml after its
    /// listeners moved to ephemeral ports).
    pub async fn start_with(edit: impl Fn(&str, String) -> String) -> Harness {
        let sims = sim::spawn(SimOptions::ephemeral())
            .await
            .expect("simulators start");
        let dir = tempfile::tempdir().expect("temp dir");
        let main = write_config(dir.path(), &sims, edit);
        let built = build(&Source::File(main), &BTreeMap::new()).expect("config is valid");
        let running = start(built).await.expect("gateway starts");
        let base = format!("http://{}", running.lookup_addr);
        Harness {
            sims,
            gateway: running,
            base,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub async fn start() -> Harness {
        Harness::start_with(|_, text| text).await
    }

    /// A REST GET with the demo credentials and a valid context.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        with_context(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .expect("request sent")
    }

    /// A REST GET as `get`, answering only the status (for many at once).
    pub async fn get_owned(&self, path: String) -> u16 {
        self.get(&path).await.status().as_u16()
    }

    /// An admin API call with `token`: (status, JSON answer).
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut r = self
            .http
            .request(method, format!("http://{}{path}", self.gateway.admin_addr))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("sent");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    /// Grants every field of `dataset` to the demo one-stop system for the test procedure,
    /// as the operator: (status, JSON answer).
    pub async fn grant_all(&self, dataset: &str) -> (u16, serde_json::Value) {
        let grant = serde_json::json!({
            "consumer": "demo-onestop", "dataset": dataset, "procedures": [PROCEDURE],
            "fields": ["*"], "legal_basis": "Thỏa thuận chia sẻ dữ liệu số 7/2026",
        });
        self.admin_call(
            reqwest::Method::POST,
            "/admin/v1/grants",
            "demo-operator-token",
            Some(grant),
        )
        .await
    }

    /// A GET on the admin listener with an admin token, answered as JSON.
    pub async fn admin_json(&self, token: &str, path: &str) -> serde_json::Value {
        self.http
            .get(format!("http://{}{path}", self.gateway.admin_addr))
            .bearer_auth(token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json")
    }

    pub async fn grpc(
        &self,
    ) -> lienthong::proto::lienthong::lookup_service_client::LookupServiceClient<
        tonic::transport::Channel,
    > {
        lienthong::proto::lienthong::lookup_service_client::LookupServiceClient::connect(
            self.base.clone(),
        )
        .await
        .expect("grpc connects")
    }

    pub fn sample(&self, dataset: &str) -> String {
        self.sims.data.samples(dataset, 3).expect("samples")[1].clone()
    }
}

/// Writes the demo config into `dir`, pointed at `sims`, listeners on ephemeral ports and
/// logs at warn, each file's text passed through `edit(file name, text)`; returns the main
/// file.
pub fn write_config(
    dir: &std::path::Path,
    sims: &RunningSims,
    edit: impl Fn(&str, String) -> String,
) -> std::path::PathBuf {
    let connectors = CONNECTORS_TOML
        .replace("127.0.0.1:7081", &sims.population_addr.to_string())
        .replace("127.0.0.1:7082", &sims.business_addr.to_string())
        .replace("127.0.0.1:7083", &sims.land_addr.to_string());
    let connectors = edit("connectors.toml", connectors);
    let consumers = edit("consumers.toml", CONSUMERS_TOML.to_owned());
    // The demo's quotas are for people trying it, and its population grant binds to
    // declared dossiers; tests of quotas and of binding set their own.
    let demo_grants: String = GRANTS_TOML
        .lines()
        .filter(|l| !l.starts_with("quota = ") && !l.starts_with("binding = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let grants = edit("grants.toml", demo_grants);
    let gateway = GATEWAY_TOML
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("level = \"info\"", "level = \"warn\"");
    let mut gateway = edit("gateway.toml", gateway);
    if !gateway.contains("[misuse]") {
        // Tests count audit records; detection's alerts (off hours, at any hour a test
        // runs) are for the tests of detection.
        gateway.push_str("\n[misuse]\nenabled = false\n");
    }
    if !gateway.contains("[door]") {
        // Load tests send thousands of calls a second from one address; tests of the
        // door's budgets set their own [door].
        gateway.push_str("\n[door]\nsource_rate = \"1000000/s\"\n");
    }
    for (name, text) in [
        ("gateway.toml", gateway.as_str()),
        ("connectors.toml", connectors.as_str()),
        ("consumers.toml", consumers.as_str()),
        ("grants.toml", grants.as_str()),
        ("procedures.toml", PROCEDURES_TOML),
    ] {
        std::fs::write(dir.join(name), text).expect("write config");
    }
    dir.join("gateway.toml")
}

/// `rb` with the demo API key and a valid call context.
pub fn with_context(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
}

pub fn context() -> Option<lienthong::proto::lienthong::RequestContext> {
    Some(lienthong::proto::lienthong::RequestContext {
        procedure_code: PROCEDURE.into(),
        dossier_id: DOSSIER.into(),
        officer_id: OFFICER.into(),
        agency_code: "000.00.53.H48".into(),
        purpose: String::new(),
        evidence: false,
    })
}

/// A gRPC request with the demo API key.
pub fn authed<T>(message: T) -> tonic::Request<T> {
    authed_as(API_KEY, message)
}

/// A gRPC request with `key` (an API key or an admin token) as its bearer credential.
pub fn authed_as<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("metadata"),
    );
    r
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lienthong serve --config main` as a process, JSON logs at `level` into `log`; returns it
/// once it logged "gateway listening", with its lookup and admin addresses.
pub fn spawn_serve(
    main: &std::path::Path,
    log: &std::path::Path,
    level: &str,
) -> (KillOnDrop, String, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["serve", "--config"])
        .arg(main)
        .env("LIENTHONG_LOG__FORMAT", "json")
        .env("LIENTHONG_LOG__LEVEL", level)
        .env_remove("LIENTHONG_LOG")
        .stdout(std::process::Stdio::from(
            std::fs::File::create(log).expect("log file"),
        ))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let child = KillOnDrop(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "gateway listening").then(|| {
                let field = |k: &str| v["fields"][k].as_str().unwrap_or_default().to_owned();
                (field("lookup"), field("admin"))
            })
        });
        if let Some((lookup, admin)) = found {
            return (child, lookup, admin);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not start:\n{text}"
        );
        // A synchronous helper polling a child process's log, outside any runtime's work.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A TCP proxy the test controls, to cut a shared service off from a gateway (and restore
/// it) without touching the service itself.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    /// Forwards connections on an ephemeral loopback port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let up2 = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    // Cut off: the connection is closed at once.
                    drop(inbound);
                    continue;
                }
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, up, cut }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The test PostgreSQL (`LIENTHONG_TEST_POSTGRES_URL`), or `None` with the reason printed;
/// under `LIENTHONG_CI=1` a missing database fails the test.
pub fn postgres_url() -> Option<String> {
    shared_service("LIENTHONG_TEST_POSTGRES_URL", "PostgreSQL")
}

/// The test Redis (`LIENTHONG_TEST_REDIS_URL`), as [`postgres_url`].
pub fn redis_url() -> Option<String> {
    shared_service("LIENTHONG_TEST_REDIS_URL", "Redis")
}

fn shared_service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("LIENTHONG_CI").is_err(),
                "{var} is not set: {what} is needed under LIENTHONG_CI"
            );
            eprintln!("skipped: {var} is not set (no {what} to test against)");
            None
        }
    }
}

/// A name no other test uses (a schema, a key prefix).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The host:port of a URL like scheme://user@host:port/db.
pub fn url_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split("://").nth(1).expect("a URL");
    let host = rest.rsplit('@').next().expect("host");
    let host = host.split(['/', '?']).next().expect("host:port");
    std::net::ToSocketAddrs::to_socket_addrs(host)
        .expect("resolves")
        .next()
        .expect("an address")
}

/// A replica's config directory under `root`: the demo config pointed at `sims`, with its
/// own instance id and `extra` appended to the main file, each file also passed through
/// `edit`; returns the main file.
pub fn replica_dir(
    root: &std::path::Path,
    name: &str,
    sims: &RunningSims,
    extra: &str,
    edit: impl Fn(&str, String) -> String,
) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    write_config(&dir, sims, |file, text| match file {
        "gateway.toml" => format!("instance_id = \"{name}\"\n{}\n{extra}", edit(file, text)),
        _ => edit(file, text),
    })
}

/// Replicas in this process, one per name, each from [`replica_dir`].
pub async fn start_replicas(
    root: &std::path::Path,
    sims: &RunningSims,
    names: &[&str],
    extra: &str,
    edit: impl Fn(&str, String) -> String,
) -> Vec<Running> {
    let mut replicas = Vec::new();
    for name in names {
        let main = replica_dir(root, name, sims, extra, &edit);
        let built = build(&Source::File(main), &BTreeMap::new()).expect("valid");
        replicas.push(start(built).await.expect("starts"));
    }
    replicas
}

/// Drops a test's schema (what a test leaves when it fails stays for a look).
pub async fn drop_schema(url: &str, schema: &str) {
    let pool = sqlx::PgPool::connect(url).await.expect("connects");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .expect("dropped");
}

/// Waits, if the hour is about to turn, until it has: misuse detection counts per hour of
/// Vietnam's clock (whole hours in UTC too), and a test's burst of lookups must fall in
/// one hour to add up.
pub async fn clear_of_the_hour_turning(burst: std::time::Duration) {
    let now_ms = lienthong::audit::record::now_ms();
    let into_hour = now_ms.rem_euclid(3_600_000) as u64;
    let left = 3_600_000 - into_hour;
    if left < burst.as_millis() as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(left + 100)).await;
    }
}

/// The `X-Data-Time` of an answer: the provider's own time of the data, as passed on.
pub fn data_time_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("x-data-time")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The time a simulator states for its record of `key`, as the gateway passes it on.
pub fn stated_time(key: &str) -> Option<String> {
    lienthong::domain::date::parse_rfc3339_ms(&lienthong::sim::stated_time(key))
        .map(lienthong::domain::date::iso_ms)
}

/// A copy of a finished trail's store, rewritten as someone with the files could: every
/// segment decoded, changed by `tamper`, written back as one log, indexes rebuilt at open.
pub async fn tampered(
    data: &std::path::Path,
    tamper: impl FnOnce(
        &mut Vec<lienthong::audit::record::Chained>,
        &mut Vec<lienthong::audit::record::Checkpoint>,
    ),
) -> (
    std::sync::Arc<lienthong::audit::journal::JournaledStore>,
    tempfile::TempDir,
) {
    let copy = tempfile::tempdir().expect("dir");
    for f in ["audit.db", "audit.db-wal", "audit.db-shm"] {
        let from = data.join(f);
        if from.exists() {
            std::fs::copy(&from, copy.path().join(f)).expect("copy");
        }
    }
    let (mut records, mut checkpoints) = (Vec::new(), Vec::new());
    let mut logs: Vec<_> = std::fs::read_dir(data.join("audit.db.segments"))
        .expect("segments")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for log in logs {
        for (r, cp) in lienthong::audit::segments::format::read_log(&log).expect("reads") {
            records.extend(r);
            checkpoints.extend(cp);
        }
    }
    tamper(&mut records, &mut checkpoints);
    let segments = copy.path().join("audit.db.segments");
    std::fs::create_dir(&segments).expect("dir");
    let mut frames: Vec<lienthong::audit::segments::format::Decoded> =
        records.into_iter().map(|r| (vec![r], None)).collect();
    frames.extend(checkpoints.into_iter().map(|c| (Vec::new(), Some(c))));
    lienthong::audit::segments::format::write_log(
        &segments.join(format!("{:016}.log", 1)),
        &frames,
    )
    .expect("write");
    let store = lienthong::audit::journal::JournaledStore::open(
        &copy.path().join("audit.db"),
        false,
        false,
    )
    .await
    .expect("open");
    (store, copy)
}
