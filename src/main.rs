//! The `lienthong` command: CLI parsing, then hand-off to the library.

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
    /// The admin listener, e.g. http://127.0.0.1:9090 (else listen.admin of the config).
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
    /// The grants in force, with the index to remove one by.
    Grants,
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

async fn admin(args: AdminArgs) -> Result<(), String> {
    lienthong::app::install_crypto();
    let base = match args.admin {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => format!("http://{}", load(args.config)?.admin_addr),
    };
    let token = args
        .token
        .ok_or("an admin token is needed: --token or LIENTHONG_ADMIN_TOKEN")?;
    let http = reqwest::Client::new();
    let request = match &args.command {
        AdminCommand::Breakers => http.get(format!("{base}/admin/v1/breakers")),
        AdminCommand::Purge { dataset, key } => http
            .post(format!("{base}/admin/v1/cache/purge"))
            .json(&serde_json::json!({ "dataset": dataset, "key": key })),
        AdminCommand::Reload => http.post(format!("{base}/admin/v1/reload")),
        AdminCommand::Versions => http.get(format!("{base}/admin/v1/registry/versions")),
        AdminCommand::Rollback { version } => http
            .post(format!("{base}/admin/v1/registry/rollback"))
            .json(&serde_json::json!({ "version": version })),
        AdminCommand::Grants => http.get(format!("{base}/admin/v1/grants")),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("{base}: {e}"))?;
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
    match args.command {
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
                    c["connector"].as_str().unwrap_or(""),
                    c["dataset"].as_str().unwrap_or(""),
                    c["breaker"].as_str().unwrap_or(""),
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
            for v in body["versions"].as_array().into_iter().flatten() {
                let running = if v["version"] == body["running"] {
                    " (running)"
                } else {
                    ""
                };
                println!(
                    "{:>4}  {}  {:<24} {}{running}",
                    v["version"],
                    v["time"].as_str().unwrap_or(""),
                    v["actor"].as_str().unwrap_or(""),
                    v["change"].as_str().unwrap_or("")
                );
            }
        }
        AdminCommand::Grants => {
            for g in body["grants"].as_array().into_iter().flatten() {
                let grant = &g["grant"];
                println!(
                    "{:>3}  {:<16} {:<22} procedures {}  fields {}",
                    g["index"],
                    grant["consumer"].as_str().unwrap_or(""),
                    grant["dataset"].as_str().unwrap_or(""),
                    grant["procedures"],
                    grant["fields"]
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
    Ok(())
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
