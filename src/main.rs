//! The `lienthong` command: CLI parsing, then hand-off to the library.

/// mimalloc: the request path allocates many small, short-lived objects (JSON values,
/// headers, audit entries), where it beats glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use lienthong::config::{Config, Source};
use lienthong::sim::{self, SimOptions, data};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// lienthong — a data-sharing gateway between one-stop systems and national databases.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulated national databases plus the gateway on embedded defaults: nothing to install.
    Demo {
        /// Bind every listener (gateway and simulators) on a free port instead of the
        /// defaults, e.g. to run beside another demo; the printed commands use the real ports.
        #[arg(long)]
        ephemeral_ports: bool,
    },
    /// Run the gateway.
    Serve {
        /// Main config file (else LIENTHONG_CONFIG, else the embedded demo defaults).
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration; names every error with its file and key.
    CheckConfig {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The simulated national databases alone.
    Sim(SimArgs),
    /// The audit trail: verify it, a subject's access report, records by consumer, dossier,
    /// officer and time.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Operate a running gateway through its admin listener.
    Admin(AdminArgs),
    /// Whether a running gateway is ready (its /readyz): exit 0 if so, 1 if not; for
    /// container health checks, where there is no curl.
    Ready {
        /// The admin listener, e.g. http://127.0.0.1:9090.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// Make a private CA, a server certificate and client certificates for mTLS (a pilot
    /// or a test). Existing files are kept: run it again to add clients under the same CA.
    Certs {
        /// Directory to write into.
        #[arg(long, default_value = "tls")]
        out: PathBuf,
        /// A DNS name or IP address the server certificate is valid for (repeatable).
        #[arg(long = "server-name", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])]
        server_names: Vec<String>,
        /// A client certificate with this subject CN (repeatable), written as
        /// client-NAME.pem and client-NAME-key.pem.
        #[arg(long = "client")]
        clients: Vec<String>,
        /// Days the server and client certificates are valid (the CA: at least ten years).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every chain and check every checkpoint signature; exits non-zero naming the
    /// first bad record.
    Verify {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Who looked at one subject's data: agency system, procedure, dossier, officer, when,
    /// which fields (disclosures only).
    Report {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        /// e.g. population.citizen
        #[arg(long)]
        dataset: String,
        /// The subject's key, e.g. a personal identification number.
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Move records older than the retention period to signed archive files now (the
    /// gateway also does it hourly when audit.retention_days is set).
    Archive {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        /// Instead of audit.retention_days.
        #[arg(long)]
        older_than_days: Option<u64>,
    },
    /// Records by consumer, dossier, officer, dataset and time (every outcome).
    Records {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        consumer: Option<String>,
        #[arg(long)]
        dossier: Option<String>,
        #[arg(long)]
        officer: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener, e.g. http://127.0.0.1:9090 or https://… (else listen.admin of
    /// the config).
    #[arg(long, global = true)]
    admin: Option<String>,
    /// An admin token (else LIENTHONG_ADMIN_TOKEN).
    #[arg(
        long,
        global = true,
        env = "LIENTHONG_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// For an https admin listener: the CA that signed its certificate (PEM).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// An admin client certificate (PEM) instead of a token, with --key.
    #[arg(long, global = true, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// Check a change and report every problem; apply nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[arg(long, global = true, env = "LIENTHONG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Each provider's circuit breaker, load and health probe.
    Breakers,
    /// Forget cached records of a dataset, or of one key.
    Purge {
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        key: Option<String>,
    },
    /// Read the config files again and run them, if they validate (a new version).
    Reload,
    /// Every configuration version the gateway ran, newest first.
    Versions,
    /// Run an earlier configuration version again (as a new version).
    Rollback {
        #[arg(long)]
        version: i64,
    },
    /// Datasets: list (default), show, create, update, disable, enable.
    Datasets {
        #[command(subcommand)]
        action: Option<DatasetAction>,
    },
    /// Connectors: list (default), update.
    Connectors {
        #[command(subcommand)]
        action: Option<ConnectorAction>,
    },
    /// Grants: list (default), add, update, disable, enable, remove.
    Grants {
        #[command(subcommand)]
        action: Option<GrantAction>,
    },
}

#[derive(Subcommand)]
enum DatasetAction {
    List,
    /// One dataset: schema, key rule, connector, grants, health.
    Show {
        name: String,
    },
    /// Register a dataset with its connector, from a JSON file ("-" for stdin).
    Create {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
        /// Try the new connector with one lookup of this key before it goes live.
        #[arg(long)]
        probe_key: Option<String>,
    },
    /// Change a dataset with the settings in a JSON file ("-" for stdin).
    Update {
        name: String,
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Switch a dataset off: lookups are refused, nothing is deleted.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
}

#[derive(Subcommand)]
enum ConnectorAction {
    List,
    /// Merge the settings in a JSON file ("-" for stdin) into a connector.
    Update {
        name: String,
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
        /// Try the changed connector with one lookup of this key before it goes live.
        #[arg(long)]
        probe_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum GrantAction {
    List,
    /// Add the grant in a JSON file ("-" for stdin).
    Add {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Merge the settings in a JSON file ("-" for stdin) into grant INDEX.
    Update {
        index: usize,
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Switch grant INDEX off: it admits nothing until switched on.
    Disable {
        index: usize,
    },
    Enable {
        index: usize,
    },
    Remove {
        index: usize,
    },
}

#[derive(clap::Args)]
struct PageArgs {
    /// From this day or instant (yyyy-mm-dd or yyyy-mm-ddThh:mm:ssZ), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Up to this day or instant, inclusive.
    #[arg(long)]
    to: Option<String>,
    /// Records per page (at most 500).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// The token a previous page printed.
    #[arg(long)]
    page_token: Option<String>,
    /// JSON instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SimArgs {
    #[command(subcommand)]
    command: Option<SimCommand>,
    #[command(flatten)]
    data: DataArgs,
    /// Population database (SOAP/XML) address.
    #[arg(long, default_value = sim::DEFAULT_POPULATION_ADDR)]
    population_addr: SocketAddr,
    /// Business registration (REST/JSON) address.
    #[arg(long, default_value = sim::DEFAULT_BUSINESS_ADDR)]
    business_addr: SocketAddr,
    /// Land registry (gRPC) address.
    #[arg(long, default_value = sim::DEFAULT_LAND_ADDR)]
    land_addr: SocketAddr,
}

#[derive(clap::Args, Clone)]
struct DataArgs {
    #[arg(long, default_value_t = data::DEFAULT_SEED)]
    seed: u64,
    /// Citizens to generate (at most 1,000,000).
    #[arg(long, default_value_t = data::DEFAULT_CITIZENS)]
    citizens: u32,
    #[arg(long, default_value_t = data::DEFAULT_ENTERPRISES)]
    enterprises: u32,
    #[arg(long, default_value_t = data::DEFAULT_PARCELS)]
    parcels: u32,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Print keys that exist, one per line.
    Samples {
        /// population.citizen, business.enterprise or land.parcel.
        #[arg(long)]
        dataset: String,
        #[arg(long, default_value_t = 10)]
        count: u32,
        #[command(flatten)]
        data: DataArgs,
    },
}

fn env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn load(config: Option<PathBuf>) -> Result<Config, String> {
    let source = config.map(Source::File).unwrap_or_else(Source::demo);
    Config::load(&source, &env()).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { ephemeral_ports } => demo(ephemeral_ports).await,
        Command::Serve { config } => serve(config).await,
        Command::CheckConfig { config } => match load(config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} connectors, {} consumers, {} grants)",
                    c.source,
                    c.connectors.len(),
                    c.consumers.len(),
                    c.grants.len()
                );
                Ok(())
            }
            Err(e) => Err(e),
        },
        Command::Sim(args) => run_sim(args).await,
        Command::Audit { command } => audit(command).await,
        Command::Admin(args) => admin(args).await,
        Command::Ready { admin } => ready(&admin).await,
        Command::Certs {
            out,
            server_names,
            clients,
            days,
        } => certs(lienthong::certs::Plan {
            out,
            server_names,
            clients,
            days,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn ready(admin: &str) -> Result<(), String> {
    lienthong::app::install_crypto();
    let url = format!("{}/readyz", admin.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let ok = response.status().is_success();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if ok {
        Ok(())
    } else {
        Err(format!("{url}: not ready"))
    }
}

/// A JSON document from a file, or stdin for "-".
fn json_file(path: &std::path::Path) -> Result<serde_json::Value, String> {
    let text = if path == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

async fn admin(args: AdminArgs) -> Result<(), String> {
    use serde_json::json;
    lienthong::app::install_crypto();
    let base = match &args.admin {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => {
            let config = load(args.config.clone())?;
            let scheme = if config.admin_tls { "https" } else { "http" };
            format!("{scheme}://{}", config.admin_addr)
        }
    };
    if args.token.is_none() && args.cert.is_none() {
        return Err(
            "an admin credential is needed: --token (or LIENTHONG_ADMIN_TOKEN), or --cert and --key"
                .into(),
        );
    }
    let mut http = reqwest::Client::builder();
    if let Some(ca) = &args.ca {
        let (cert, key) = match (&args.cert, &args.key) {
            (Some(c), Some(k)) => (Some(read_pem(c)?), Some(read_pem(k)?)),
            _ => (None, None),
        };
        let identity = cert.as_deref().zip(key.as_deref());
        http = http.tls_backend_preconfigured(lienthong::transport::tls::client_config(
            &read_pem(ca)?,
            identity,
        )?);
    } else if args.cert.is_some() {
        return Err("--cert needs --ca (the CA of the admin listener's certificate)".into());
    }
    let http = http.build().map_err(|e| e.to_string())?;
    let dry = if args.dry_run { "?dry_run=true" } else { "" };
    let with_probe = |probe: &Option<String>| match (args.dry_run, probe) {
        (d, Some(k)) => format!(
            "?probe_key={}{}",
            urlencode(k),
            if d { "&dry_run=true" } else { "" }
        ),
        (_, None) => dry.to_owned(),
    };
    let url = |path: &str| format!("{base}/admin/v1/{path}");
    use reqwest::Method;
    let (method, path, body): (Method, String, Option<serde_json::Value>) = match &args.command {
        AdminCommand::Breakers => (Method::GET, url("breakers"), None),
        AdminCommand::Purge { dataset, key } => (
            Method::POST,
            url("cache/purge"),
            Some(json!({ "dataset": dataset, "key": key })),
        ),
        AdminCommand::Reload => (Method::POST, url("reload"), None),
        AdminCommand::Versions => (Method::GET, url("registry/versions"), None),
        AdminCommand::Rollback { version } => (
            Method::POST,
            url("registry/rollback"),
            Some(json!({ "version": version })),
        ),
        AdminCommand::Datasets { action } => match action {
            None | Some(DatasetAction::List) => (Method::GET, url("datasets"), None),
            Some(DatasetAction::Show { name }) => {
                (Method::GET, url(&format!("datasets/{name}")), None)
            }
            Some(DatasetAction::Create { file, probe_key }) => (
                Method::POST,
                url("datasets") + &with_probe(probe_key),
                Some(json_file(file)?),
            ),
            Some(DatasetAction::Update { name, file }) => (
                Method::PUT,
                url(&format!("datasets/{name}")) + dry,
                Some(json_file(file)?),
            ),
            Some(DatasetAction::Disable { name }) => (
                Method::PUT,
                url(&format!("datasets/{name}")) + dry,
                Some(json!({ "disabled": true })),
            ),
            Some(DatasetAction::Enable { name }) => (
                Method::PUT,
                url(&format!("datasets/{name}")) + dry,
                Some(json!({ "disabled": false })),
            ),
        },
        AdminCommand::Connectors { action } => match action {
            None | Some(ConnectorAction::List) => (Method::GET, url("connectors"), None),
            Some(ConnectorAction::Update {
                name,
                file,
                probe_key,
            }) => (
                Method::PUT,
                url(&format!("connectors/{name}")) + &with_probe(probe_key),
                Some(json_file(file)?),
            ),
        },
        AdminCommand::Grants { action } => match action {
            None | Some(GrantAction::List) => (Method::GET, url("grants"), None),
            Some(GrantAction::Add { file }) => {
                (Method::POST, url("grants") + dry, Some(json_file(file)?))
            }
            Some(GrantAction::Update { index, file }) => (
                Method::PUT,
                url(&format!("grants/{index}")) + dry,
                Some(json_file(file)?),
            ),
            Some(GrantAction::Disable { index }) => (
                Method::PUT,
                url(&format!("grants/{index}")) + dry,
                Some(json!({ "disabled": true })),
            ),
            Some(GrantAction::Enable { index }) => (
                Method::PUT,
                url(&format!("grants/{index}")) + dry,
                Some(json!({ "disabled": false })),
            ),
            Some(GrantAction::Remove { index }) => {
                (Method::DELETE, url(&format!("grants/{index}")) + dry, None)
            }
        },
    };
    let mut request = http.request(method, &path);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &body {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| format!("{base}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{base}: not a JSON answer: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            body["detail"].as_str().unwrap_or("refused")
        ));
    }
    if args.json {
        println!("{body:#}");
        return Ok(());
    }
    print_admin(&args.command, &body);
    Ok(())
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An admin answer for people (`--json` prints it whole).
fn print_admin(command: &AdminCommand, body: &serde_json::Value) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    if body["dry_run"] == true {
        println!("valid, nothing applied: {}", s(&body["change"]));
        return;
    }
    if body.get("change").is_some() && body.get("version").is_some() {
        println!("version {}: {}", body["version"], s(&body["change"]));
        return;
    }
    match command {
        AdminCommand::Breakers => {
            println!(
                "{:<14} {:<20} {:<10} {:>8} {:>8} {:>9} {:>8}  probe",
                "connector", "dataset", "breaker", "calls", "retries", "in flight", "refused"
            );
            for c in body["connectors"].as_array().into_iter().flatten() {
                let n = |k: &str| c[k].as_u64().unwrap_or(0);
                let probe = match c["health_probe"]["up"].as_bool() {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "-",
                };
                println!(
                    "{:<14} {:<20} {:<10} {:>8} {:>8} {:>9} {:>8}  {probe}",
                    s(&c["connector"]),
                    s(&c["dataset"]),
                    s(&c["breaker"]),
                    n("calls"),
                    n("retries"),
                    n("in_flight"),
                    n("rejected_breaker_open") + n("rejected_capacity"),
                );
            }
        }
        AdminCommand::Reload | AdminCommand::Rollback { .. } => {
            println!(
                "running version {}; connectors rebuilt: {}",
                body["version"], body["connectors_rebuilt"]
            );
            if let Some(later) = body["needs_restart"].as_array().filter(|a| !a.is_empty()) {
                println!("take effect at the next start: {later:?}");
            }
        }
        AdminCommand::Versions => {
            if body["versions"].as_array().is_none_or(|v| v.is_empty()) {
                println!(
                    "running version {}; this gateway keeps no history (the embedded demo has no registry)",
                    body["running"]
                );
            }
            for v in body["versions"].as_array().into_iter().flatten() {
                let running = if v["version"] == body["running"] {
                    " (running)"
                } else {
                    ""
                };
                println!(
                    "{:>4}  {}  {:<24} {}{running}",
                    v["version"],
                    s(&v["time"]),
                    s(&v["actor"]),
                    s(&v["change"])
                );
            }
        }
        AdminCommand::Grants { .. } => {
            for g in body["grants"].as_array().into_iter().flatten() {
                let grant = &g["grant"];
                let off = if grant["disabled"] == true {
                    "  (off)"
                } else {
                    ""
                };
                println!(
                    "{:>3}  {:<16} {:<24} procedures {}  fields {}{off}",
                    g["index"],
                    s(&grant["consumer"]),
                    s(&grant["dataset"]),
                    grant["procedures"],
                    grant["fields"]
                );
            }
        }
        AdminCommand::Datasets { action } => match action {
            Some(DatasetAction::Show { .. }) => println!("{body:#}"),
            _ => {
                for d in body["datasets"].as_array().into_iter().flatten() {
                    let state = if d["disabled"] == true { "off" } else { "on" };
                    let fields: Vec<String> = d["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| s(&f["name"]))
                        .collect();
                    println!(
                        "{:<26} {:<12} {:<4} key {:<18} fields {}",
                        s(&d["name"]),
                        s(&d["owner"]),
                        state,
                        s(&d["key_field"]),
                        fields.join(",")
                    );
                }
            }
        },
        AdminCommand::Connectors { .. } => {
            for c in body["connectors"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<26} {:<10} {}",
                    s(&c["name"]),
                    s(&c["dataset"]),
                    s(&c["kind"]),
                    s(&c["endpoint"])
                );
            }
        }
        AdminCommand::Purge { dataset, key } => match key {
            Some(_) => println!("purged one key of {dataset}"),
            None => println!(
                "purged {dataset} ({} records were held)",
                body["records_held_before"]
            ),
        },
    }
}

async fn audit(command: AuditCommand) -> Result<(), String> {
    use lienthong::audit::{commands, query::Filters};
    let filters = |page: PageArgs| {
        (
            Filters {
                from: page.from,
                to: page.to,
                limit: Some(page.limit),
                page_token: page.page_token,
                ..Filters::default()
            },
            page.json,
        )
    };
    match command {
        AuditCommand::Verify { config } => commands::run_verify(&load(config)?).await,
        AuditCommand::Archive {
            config,
            older_than_days,
        } => commands::run_archive(&load(config)?, older_than_days).await,
        AuditCommand::Report {
            config,
            dataset,
            subject,
            page,
        } => {
            let (f, json) = filters(page);
            let f = Filters {
                dataset: Some(dataset),
                subject: Some(subject),
                ..f
            };
            commands::run_query(&load(config)?, f, json, true).await
        }
        AuditCommand::Records {
            config,
            dataset,
            consumer,
            dossier,
            officer,
            page,
        } => {
            let (f, json) = filters(page);
            let f = Filters {
                dataset,
                consumer,
                dossier,
                officer,
                ..f
            };
            commands::run_query(&load(config)?, f, json, false).await
        }
    }
}

fn certs(plan: lienthong::certs::Plan) -> Result<(), String> {
    let report = lienthong::certs::make(&plan)?;
    for p in &report.written {
        println!("wrote {}", p.display());
    }
    for p in &report.kept {
        println!("kept  {} (exists)", p.display());
    }
    let dir = plan.out.display();
    println!(
        r#"
Turn on TLS with client certificates in the main config (paths are relative to it):

  [tls]
  cert = "{dir}/server.pem"
  key = "{dir}/server-key.pem"
  client_ca = "{dir}/ca.pem"
  client_auth = "optional"   # "required": no API keys, certificates only

and name each client certificate on its consumer (consumers file):
"#
    );
    for client in &plan.clients {
        println!("  certificate_names = [\"CN={client}\"]");
    }
    if let Some(client) = plan.clients.first() {
        println!(
            r#"
Then, for example:
  curl --cacert {dir}/ca.pem --cert {dir}/client-{client}.pem --key {dir}/client-{client}-key.pem \
    https://localhost:8080/v1/capabilities"#
        );
    }
    Ok(())
}

async fn serve(config: Option<PathBuf>) -> Result<(), String> {
    let config = load(config)?;
    let telemetry =
        lienthong::telemetry::init(config.log_json, &config.log_level, config.otel.as_ref());
    let running = lienthong::app::start(Arc::new(config)).await?;
    running.run_until_signal().await;
    telemetry.shutdown();
    Ok(())
}

async fn run_sim(args: SimArgs) -> Result<(), String> {
    if let Some(SimCommand::Samples {
        dataset,
        count,
        data,
    }) = args.command
    {
        let d = data::SimData::new(data.seed, data.citizens, data.enterprises, data.parcels);
        for key in d.samples(&dataset, count)? {
            println!("{key}");
        }
        return Ok(());
    }
    let _telemetry = lienthong::telemetry::init(false, "info", None);
    let mut options = SimOptions::on(args.population_addr, args.business_addr, args.land_addr);
    options.seed = args.data.seed;
    options.citizens = args.data.citizens;
    options.enterprises = args.data.enterprises;
    options.parcels = args.data.parcels;
    let sims = sim::spawn(options).await.map_err(|e| e.to_string())?;
    println!(
        "population (SOAP/XML)        http://{}{}",
        sims.population_addr,
        sim::population::PATH
    );
    println!(
        "business registration (REST) http://{}{}",
        sims.business_addr,
        sim::business::PATH
    );
    println!("land registry (gRPC)         http://{}", sims.land_addr);
    println!("control: GET /_sim/stats, PUT /_sim/faults, POST /_sim/reset on each address");
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

async fn demo(ephemeral_ports: bool) -> Result<(), String> {
    let addr = |s: &str| s.parse::<SocketAddr>().map_err(|e| e.to_string());
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let options = if ephemeral_ports {
        SimOptions::on(any, any, any)
    } else {
        SimOptions::on(
            addr(sim::DEFAULT_POPULATION_ADDR)?,
            addr(sim::DEFAULT_BUSINESS_ADDR)?,
            addr(sim::DEFAULT_LAND_ADDR)?,
        )
    };
    let sims = sim::spawn(options).await.map_err(|e| e.to_string())?;
    // The embedded config points at the simulators' default addresses; follow where they are.
    let source = Source::demo_with(|text| {
        let text = text
            .replace(
                sim::DEFAULT_POPULATION_ADDR,
                &sims.population_addr.to_string(),
            )
            .replace(sim::DEFAULT_BUSINESS_ADDR, &sims.business_addr.to_string())
            .replace(sim::DEFAULT_LAND_ADDR, &sims.land_addr.to_string());
        if ephemeral_ports {
            text.replace(":8080\"", ":0\"").replace(":9090\"", ":0\"")
        } else {
            text
        }
    });
    let config = Config::load(&source, &env()).map_err(|e| e.to_string())?;
    let telemetry =
        lienthong::telemetry::init(config.log_json, &config.log_level, config.otel.as_ref());
    let running = lienthong::app::start(Arc::new(config)).await?;
    let sample = |dataset: &str| {
        sims.data
            .samples(dataset, 1)
            .ok()
            .and_then(|k| k.into_iter().next())
            .unwrap_or_default()
    };
    let (citizen, enterprise, parcel) = (
        sample("population.citizen"),
        sample("business.enterprise"),
        sample("land.parcel"),
    );
    let lookup = running.lookup_addr;
    let ctx = "-H 'X-Procedure-Code: 1.001612' -H 'X-Dossier-Id: 000.00.53.H48-251128-0001' -H 'X-Officer-Id: canbo01'";
    println!(
        r#"
lienthong demo is running.
  lookup API (REST + gRPC)  http://{lookup}
  admin                     http://{admin}/dashboard (live), /metrics, /healthz, /readyz
  simulators                population {pop}, business {bus}, land {land} (GET /_sim/stats on each)
  consumer demo-onestop, API key demo-onestop-key

Look up a citizen, an enterprise and a land parcel over REST:
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} http://{lookup}/v1/citizens/{citizen}
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} http://{lookup}/v1/enterprises/{enterprise}
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} 'http://{lookup}/v1/land-parcels/{parcel}?fields=parcel_id,area_m2,land_use_purposes'

Several at once, one outcome per item (the second key is malformed):
  curl -s -H 'Authorization: Bearer demo-onestop-key' {ctx} -H 'Content-Type: application/json' \
    -d '{{"items":[{{"dataset":"population.citizen","key":"{citizen}"}},{{"dataset":"business.enterprise","key":"0100233489"}}]}}' http://{lookup}/v1/batch

Over gRPC (server reflection is on, no proto file needed):
  grpcurl -plaintext -H 'authorization: Bearer demo-onestop-key' \
    -d '{{"context":{{"procedure_code":"1.001612","dossier_id":"000.00.53.H48-251128-0001","officer_id":"canbo01"}},"personal_id":"{citizen}"}}' \
    {lookup} lienthong.v1.LookupService/GetCitizen

Every call above left an audit record (in ./data/audit.db). Who looked at this citizen:
  curl -s -H 'Authorization: Bearer demo-operator-token' 'http://{admin}/admin/v1/audit/report?dataset=population.citizen&subject={citizen}'
After stopping: lienthong audit verify, and lienthong audit report --dataset population.citizen --subject {citizen}

More keys that exist:  lienthong sim samples --dataset population.citizen --count 5
Press Ctrl-C to stop.
"#,
        admin = running.admin_addr,
        pop = sims.population_addr,
        bus = sims.business_addr,
        land = sims.land_addr,
    );
    running.run_until_signal().await;
    telemetry.shutdown();
    drop(sims);
    Ok(())
}
