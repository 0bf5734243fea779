//! The `lienthong` command line: each subcommand in its own file, `main.rs` only calls
//! [`run`].

/// Writes a line to stdout; a closed stdout (`lienthong audit records --json | head`) ends
/// the command quietly instead of panicking as `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))?
    };
}

mod admin;
mod audit;
mod backup;
mod demo;
mod evidence;
mod sim;

use crate::app::Built;
use crate::config::Source;
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// lienthong — a data-sharing gateway between one-stop systems and national databases.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
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
    Sim(sim::SimArgs),
    /// The audit trail: verify it, a subject's access report, records by consumer, dossier,
    /// officer and time.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// A backup of the embedded store (audit trail and indexes, archives, registry, dossier
    /// register) into DIR, new or empty; taken while serving, through the admin listener
    /// when a gateway holds the store. Keys are not in it.
    Backup {
        #[arg(long)]
        to: PathBuf,
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        /// The running gateway's admin listener (else listen.admin of the config).
        #[arg(long)]
        admin: Option<String>,
        /// An operator token (else LIENTHONG_ADMIN_TOKEN).
        #[arg(long, env = "LIENTHONG_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Put a backup in the places the configuration names. Refuses while a gateway serves
    /// from them, and refuses data already there unless --replace (which moves it aside).
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        replace: bool,
    },
    /// Evidence given with answers: check a saved answer offline, make a new key.
    Evidence {
        #[command(subcommand)]
        command: evidence::EvidenceCommand,
    },
    /// Operate a running gateway through its admin listener.
    Admin(admin::AdminArgs),
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
        /// Revoke the client certificate of this name (repeatable): writes ca.crl anew,
        /// naming it and every one revoked before, for tls.crl_files.
        #[arg(long)]
        revoke: Vec<String>,
        /// Days the server and client certificates are valid (the CA: at least ten years;
        /// a revocation list: until it is due again, at most 30).
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Why a command did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Whoever reads stdout stopped reading: not a failure of the command.
    #[error("stdout closed")]
    Closed,
    #[error("{0}")]
    Failed(String),
    /// The configuration does not build: every error, with its file and key.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no audit trail at {} (audit.path): run the gateway (or the demo) here first", .0.display())]
    NoTrail(PathBuf),
    #[error(transparent)]
    Sim(#[from] crate::sim::data::UnknownDataset),
}

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::Failed(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> CliError {
        CliError::Failed(message.to_owned())
    }
}

pub(crate) fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::Closed,
            _ => CliError::Failed(format!("stdout: {e}")),
        })
}

pub(crate) fn env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

pub(crate) fn load(config: Option<PathBuf>) -> Result<Built, CliError> {
    let source = config.map(Source::File).unwrap_or_else(Source::demo);
    Ok(crate::app::build(&source, &env())?)
}

/// Parses the command line and runs the command; the exit code says whether it worked.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { ephemeral_ports } => demo::demo(ephemeral_ports).await,
        Command::Serve { config } => serve(config).await,
        Command::CheckConfig { config } => check_config(config),
        Command::Sim(args) => sim::run_sim(args).await,
        Command::Audit { command } => audit::audit(command).await,
        Command::Evidence { command } => evidence::evidence(command).await,
        Command::Backup {
            to,
            config,
            admin,
            token,
        } => backup::backup(to, config, admin, token).await,
        Command::Restore {
            from,
            config,
            replace,
        } => backup::restore(from, config, replace),
        Command::Admin(args) => admin::admin(args).await,
        Command::Ready { admin } => ready(&admin).await,
        Command::Certs {
            out,
            server_names,
            clients,
            revoke,
            days,
        } => certs(crate::certs::Plan {
            out,
            server_names,
            clients,
            revoke,
            days,
        }),
    };
    match result {
        Ok(()) | Err(CliError::Closed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn ready(admin: &str) -> Result<(), CliError> {
    crate::certs::install_crypto();
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
    out!("{body}");
    if ok {
        Ok(())
    } else {
        Err(format!("{url}: not ready").into())
    }
}

fn certs(plan: crate::certs::Plan) -> Result<(), CliError> {
    let report = crate::certs::make(&plan).map_err(|e| e.to_string())?;
    for p in &report.written {
        out!("wrote {}", p.display());
    }
    for p in &report.kept {
        out!("kept  {} (exists)", p.display());
    }
    let dir = plan.out.display();
    if !plan.revoke.is_empty() {
        out!(
            r#"
Refuse the revoked certificates: name the list in [tls] (the gateway loads it within a
second, and again whenever it is written anew):

  crl_files = ["{dir}/ca.crl"]"#
        );
        return Ok(());
    }
    out!(
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
        out!("  certificate_names = [\"CN={client}\"]");
    }
    if let Some(client) = plan.clients.first() {
        out!(
            r#"
Then, for example:
  curl --cacert {dir}/ca.pem --cert {dir}/client-{client}.pem --key {dir}/client-{client}-key.pem \
    https://localhost:8080/v1/capabilities"#
        );
    }
    Ok(())
}

/// `check-config`: every error with its file and key, or a summary.
fn check_config(config: Option<PathBuf>) -> Result<(), CliError> {
    let built = load(config)?;
    let c = &built.model;
    out!(
        "{}: ok ({} connectors, {} consumers, {} grants)",
        c.settings.source,
        c.connectors.len(),
        c.consumers.len(),
        c.grants.len()
    );
    for warning in c.warnings() {
        out!("warning: {warning}");
    }
    out!("door (read at start; see docs/operations.md):");
    for (setting, value) in built.door.describe() {
        out!("  {setting:<22} {value}");
    }
    Ok(())
}

async fn serve(config: Option<PathBuf>) -> Result<(), CliError> {
    let built = load(config)?;
    let s = &built.model.settings;
    let telemetry = crate::telemetry::init(s.log_json, &s.log_level, s.otel.as_ref());
    for warning in built.model.warnings() {
        tracing::warn!("{warning}");
    }
    let running = crate::app::start(built)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    running.run_until_signal().await;
    telemetry.shutdown();
    Ok(())
}
