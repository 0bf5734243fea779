//! `lienthong admin …`: a client of the admin listener's REST API, with a readable
//! printout of each answer (or `--json`).

use super::CliError;
use super::load;
use clap::Subcommand;
use std::path::PathBuf;

mod print;
use print::print_admin;

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
    /// A backup of the embedded store, taken while the gateway serves, into DIR (new or
    /// empty) on the gateway's host; `lienthong backup` comes here when a gateway runs.
    Backup {
        #[arg(long)]
        to: PathBuf,
    },
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
    /// Access requests: list (default), show, create, approve, refuse, withdraw.
    Requests {
        #[command(subcommand)]
        action: Option<RequestAction>,
    },
}

#[derive(Subcommand)]
pub(crate) enum RequestAction {
    /// Requests the caller may see, newest first.
    List {
        /// pending, approved, refused or withdrawn.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        consumer: Option<String>,
        /// Only pending requests past their deadline.
        #[arg(long)]
        overdue: bool,
    },
    Show {
        id: String,
    },
    /// Ask for access, from a JSON file ("-" for stdin): dataset, fields, procedures,
    /// modes, legal_basis, purpose.
    Create {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Approve, creating the grant; narrowed or completed by a JSON file ("-" for stdin):
    /// fields, procedures, modes, valid_from, valid_until, quota, binding, note.
    Approve {
        id: String,
        #[arg(long = "file", short = 'f')]
        file: Option<PathBuf>,
    },
    /// Refuse, with the reason and the legal ground.
    Refuse {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        legal_ground: String,
    },
    Withdraw {
        id: String,
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
        AdminCommand::Backup { to } => (
            Method::POST,
            url("backup"),
            Some(json!({ "to": std::path::absolute(to).unwrap_or_else(|_| to.clone()) })),
        ),
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
        AdminCommand::Requests { action } => match action {
            None => (Method::GET, url("access-requests"), None),
            Some(RequestAction::List {
                state,
                dataset,
                consumer,
                overdue,
            }) => {
                let mut query: Vec<String> = [
                    ("state", state),
                    ("dataset", dataset),
                    ("consumer", consumer),
                ]
                .into_iter()
                .filter_map(|(k, v)| {
                    v.as_ref()
                        .map(|v| format!("{k}={}", crate::domain::urlencode(v)))
                })
                .collect();
                if *overdue {
                    query.push("overdue=true".into());
                }
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", query.join("&"))
                };
                (Method::GET, url("access-requests") + &query, None)
            }
            Some(RequestAction::Show { id }) => {
                (Method::GET, url(&format!("access-requests/{id}")), None)
            }
            Some(RequestAction::Create { file }) => {
                (Method::POST, url("access-requests"), Some(json_file(file)?))
            }
            Some(RequestAction::Approve { id, file }) => (
                Method::POST,
                url(&format!("access-requests/{id}/approve")),
                Some(match file {
                    Some(f) => json_file(f)?,
                    None => json!({}),
                }),
            ),
            Some(RequestAction::Refuse {
                id,
                reason,
                legal_ground,
            }) => (
                Method::POST,
                url(&format!("access-requests/{id}/refuse")),
                Some(json!({ "reason": reason, "legal_ground": legal_ground })),
            ),
            Some(RequestAction::Withdraw { id }) => (
                Method::POST,
                url(&format!("access-requests/{id}/withdraw")),
                None,
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
