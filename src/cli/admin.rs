//! `lienthong admin …`: a client of the admin listener's REST API, with a readable
//! printout of each answer (or `--json`).

use super::CliError;
use super::load;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct AdminArgs {
    /// The admin listener, e.g. http://127.0.0.1:9090 or https://… (else listen.admin of
    /// the config).
    #[arg(long, global = true)]
    pub(crate) admin: Option<String>,
    /// An admin token (else LIENTHONG_ADMIN_TOKEN).
    #[arg(
        long,
        global = true,
        env = "LIENTHONG_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// For an https admin listener: the CA that signed its certificate (PEM).
    #[arg(long, global = true)]
    pub(crate) ca: Option<PathBuf>,
    /// An admin client certificate (PEM) instead of a token, with --key.
    #[arg(long, global = true, requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    #[arg(long, global = true, requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Check a change and report every problem; apply nothing.
    #[arg(long, global = true)]
    pub(crate) dry_run: bool,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Apply a change only if the object is still at this version (its `etag`, as shown):
    /// sent as If-Match; a changed object refuses it (412 precondition_failed).
    #[arg(long, global = true)]
    pub(crate) if_match: Option<String>,
    #[arg(long, global = true, env = "LIENTHONG_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
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
    /// Grants: list (default), show, add, update, disable, enable, remove (by id).
    Grants {
        #[command(subcommand)]
        action: Option<GrantAction>,
    },
    /// Consumers: list (default), show, create, update, disable, enable.
    Consumers {
        #[command(subcommand)]
        action: Option<ConsumerAction>,
    },
    /// A consumer's API keys: issue, rotate, revoke.
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConsumerAction {
    List,
    /// One consumer: settings, keys (never the keys themselves), version.
    Show {
        id: String,
    },
    /// Create the consumer in a JSON file ("-" for stdin): id, name, …
    Create {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Merge the settings in a JSON file ("-" for stdin) into consumer ID.
    Update {
        id: String,
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Switch a consumer off: its credentials are refused, its grants stay.
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyAction {
    /// Issue a key to CONSUMER; it is printed once.
    Issue {
        consumer: String,
        #[arg(long, default_value = "")]
        label: String,
        /// When it stops working (RFC 3339, e.g. 2027-06-30T17:00:00+07:00).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Issue a new key in place of KEY_ID, which keeps working until --old-valid-until
    /// (24 hours when unset).
    Rotate {
        consumer: String,
        /// The key's id (k-… or f-…).
        key_id: String,
        #[arg(long)]
        old_valid_until: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke KEY_ID at once.
    Revoke { consumer: String, key_id: String },
}

#[derive(Subcommand)]
pub(crate) enum DatasetAction {
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
pub(crate) enum ConnectorAction {
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
pub(crate) enum GrantAction {
    List,
    /// Add the grant in a JSON file ("-" for stdin).
    Add {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// One grant, with its version.
    Show {
        id: String,
    },
    /// Merge the settings in a JSON file ("-" for stdin) into grant ID.
    Update {
        id: String,
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Switch grant ID off: it admits nothing until switched on.
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
    Remove {
        id: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct PageArgs {
    /// From this day or instant (yyyy-mm-dd or yyyy-mm-ddThh:mm:ssZ), inclusive.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Up to this day or instant, inclusive.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Records per page (at most 500).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
    /// The token a previous page printed.
    #[arg(long)]
    pub(crate) page_token: Option<String>,
    /// JSON instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A JSON document from a file, or stdin for "-".
pub(crate) fn json_file(path: &std::path::Path) -> Result<serde_json::Value, CliError> {
    let text = if path == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|source| {
            CliError::Read {
                path: path.to_owned(),
                source,
            }
        })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.to_owned(),
            source,
        })?
    };
    serde_json::from_str(&text).map_err(|source| CliError::Json {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

pub(crate) async fn admin(args: AdminArgs) -> Result<(), CliError> {
    use serde_json::json;
    crate::certs::install_crypto();
    let base = match &args.admin {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => {
            let config = load(args.config.clone())?.model;
            let scheme = if config.settings.admin_tls {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.settings.admin_addr)
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
        http = http.tls_backend_preconfigured(
            crate::transport::tls::client_config(&read_pem(ca)?, identity)
                .map_err(|e| format!("--ca/--cert/--key: {e}"))?,
        );
    } else if args.cert.is_some() {
        return Err("--cert needs --ca (the CA of the admin listener's certificate)".into());
    }
    let http = http.build().map_err(|e| e.to_string())?;
    let dry = if args.dry_run { "?dry_run=true" } else { "" };
    let with_probe = |probe: &Option<String>| match (args.dry_run, probe) {
        (d, Some(k)) => format!(
            "?probe_key={}{}",
            crate::domain::urlencode(k),
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
            Some(GrantAction::Show { id }) => (Method::GET, url(&format!("grants/{id}")), None),
            Some(GrantAction::Update { id, file }) => (
                Method::PUT,
                url(&format!("grants/{id}")) + dry,
                Some(json_file(file)?),
            ),
            Some(GrantAction::Disable { id }) => (
                Method::PUT,
                url(&format!("grants/{id}")) + dry,
                Some(json!({ "disabled": true })),
            ),
            Some(GrantAction::Enable { id }) => (
                Method::PUT,
                url(&format!("grants/{id}")) + dry,
                Some(json!({ "disabled": false })),
            ),
            Some(GrantAction::Remove { id }) => {
                (Method::DELETE, url(&format!("grants/{id}")) + dry, None)
            }
        },
        AdminCommand::Consumers { action } => match action {
            None | Some(ConsumerAction::List) => (Method::GET, url("consumers"), None),
            Some(ConsumerAction::Show { id }) => {
                (Method::GET, url(&format!("consumers/{id}")), None)
            }
            Some(ConsumerAction::Create { file }) => {
                (Method::POST, url("consumers") + dry, Some(json_file(file)?))
            }
            Some(ConsumerAction::Update { id, file }) => (
                Method::PUT,
                url(&format!("consumers/{id}")) + dry,
                Some(json_file(file)?),
            ),
            Some(ConsumerAction::Disable { id }) => (
                Method::PUT,
                url(&format!("consumers/{id}")) + dry,
                Some(json!({ "disabled": true })),
            ),
            Some(ConsumerAction::Enable { id }) => (
                Method::PUT,
                url(&format!("consumers/{id}")) + dry,
                Some(json!({ "disabled": false })),
            ),
        },
        AdminCommand::Keys { action } => match action {
            KeyAction::Issue {
                consumer,
                label,
                expires,
            } => (
                Method::POST,
                url(&format!("consumers/{consumer}/keys")),
                Some(json!({ "label": label, "expires": expires })),
            ),
            KeyAction::Rotate {
                consumer,
                key_id,
                old_valid_until,
                label,
                expires,
            } => (
                Method::POST,
                url(&format!("consumers/{consumer}/keys/{key_id}/rotate")),
                Some(
                    json!({ "label": label, "expires": expires, "old_valid_until": old_valid_until }),
                ),
            ),
            KeyAction::Revoke { consumer, key_id } => (
                Method::DELETE,
                url(&format!("consumers/{consumer}/keys/{key_id}")),
                None,
            ),
        },
    };
    let mut request = http.request(method, &path);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &body {
        request = request.json(body);
    }
    if let Some(version) = &args.if_match {
        request = request.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
    }
    let response = request.send().await.map_err(|e| format!("{base}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{base}: not a JSON answer: {e}"))?;
    if !status.is_success() {
        return Err(CliError::Failed(format!(
            "{status}: {}",
            body["detail"].as_str().unwrap_or("refused")
        )));
    }
    if args.json {
        out!("{body:#}");
        return Ok(());
    }
    print_admin(&args.command, &body)?;
    Ok(())
}

/// An admin answer for people (`--json` prints it whole).
pub(crate) fn print_admin(
    command: &AdminCommand,
    body: &serde_json::Value,
) -> Result<(), CliError> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    if body["dry_run"] == true {
        out!("valid, nothing applied: {}", s(&body["change"]));
        return Ok(());
    }
    if let Some(key) = body["key"].as_str() {
        out!("version {}: {}", body["version"], s(&body["change"]));
        out!(
            "key {} for {} (shown this once; the gateway keeps only its hash):",
            s(&body["issued"]["id"]),
            s(&body["issued"]["consumer"])
        );
        out!("{key}");
        return Ok(());
    }
    if body.get("change").is_some() && body.get("version").is_some() {
        let etag = body["etag"]
            .as_str()
            .map(|t| format!(" (etag {t})"))
            .unwrap_or_default();
        out!("version {}: {}{etag}", body["version"], s(&body["change"]));
        return Ok(());
    }
    match command {
        AdminCommand::Breakers => {
            out!(
                "{:<14} {:<20} {:<10} {:>8} {:>8} {:>9} {:>8}  probe",
                "connector",
                "dataset",
                "breaker",
                "calls",
                "retries",
                "in flight",
                "refused"
            );
            for c in body["connectors"].as_array().into_iter().flatten() {
                let n = |k: &str| c[k].as_u64().unwrap_or(0);
                let probe = match c["health_probe"]["up"].as_bool() {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "-",
                };
                out!(
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
            out!(
                "running version {}; connectors rebuilt: {}",
                body["version"],
                body["connectors_rebuilt"]
            );
            if let Some(later) = body["needs_restart"].as_array().filter(|a| !a.is_empty()) {
                out!("take effect at the next start: {later:?}");
            }
        }
        AdminCommand::Versions => {
            if body["versions"].as_array().is_none_or(|v| v.is_empty()) {
                out!(
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
                out!(
                    "{:>4}  {}  {:<24} {}{running}",
                    v["version"],
                    s(&v["time"]),
                    s(&v["actor"]),
                    s(&v["change"])
                );
            }
        }
        AdminCommand::Grants {
            action: Some(GrantAction::Show { .. }),
        }
        | AdminCommand::Consumers {
            action: Some(ConsumerAction::Show { .. }),
        } => out!("{body:#}"),
        AdminCommand::Consumers { .. } => {
            for c in body["consumers"].as_array().into_iter().flatten() {
                let keys = c["keys"]
                    .as_array()
                    .map_or(0, |k| k.iter().filter(|k| k["state"] == "active").count());
                let off = if c["disabled"] == true { "  (off)" } else { "" };
                out!(
                    "{:<22} {:<5} {:>2} active keys  {}  {}{off}",
                    s(&c["id"]),
                    s(&c["source"]),
                    keys,
                    s(&c["etag"]),
                    s(&c["name"])
                );
            }
        }
        AdminCommand::Keys { .. } => out!("{body:#}"),
        AdminCommand::Grants { .. } => {
            for g in body["grants"].as_array().into_iter().flatten() {
                let grant = &g["grant"];
                let off = if grant["disabled"] == true {
                    "  (off)"
                } else {
                    ""
                };
                out!(
                    "{:<14} {:<16} {:<24} procedures {}  fields {}{off}",
                    s(&g["id"]),
                    s(&grant["consumer"]),
                    s(&grant["dataset"]),
                    grant["procedures"],
                    grant["fields"]
                );
            }
        }
        AdminCommand::Datasets { action } => match action {
            Some(DatasetAction::Show { .. }) => out!("{body:#}"),
            _ => {
                for d in body["datasets"].as_array().into_iter().flatten() {
                    let state = if d["disabled"] == true { "off" } else { "on" };
                    let fields: Vec<String> = d["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| s(&f["name"]))
                        .collect();
                    out!(
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
                out!(
                    "{:<20} {:<26} {:<10} {}",
                    s(&c["name"]),
                    s(&c["dataset"]),
                    s(&c["kind"]),
                    s(&c["endpoint"])
                );
            }
        }
        AdminCommand::Purge { dataset, key } => match key {
            Some(_) => out!("purged one key of {dataset}"),
            None => out!(
                "purged {dataset} ({} records were held)",
                body["records_held_before"]
            ),
        },
    }
    Ok(())
}
