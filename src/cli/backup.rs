//! `lienthong backup` and `lienthong restore`: copies of the embedded store (audit trail
//! and its indexes, archives, registry, dossier register), taken while it serves.

use super::admin::{AdminArgs, AdminCommand};
use super::{CliError, load};
use serde_json::{Value, json};
use std::path::PathBuf;

/// `lienthong backup --to DIR`: through the running gateway's admin listener when one
/// holds the store (it alone may read it consistently), else straight from the files.
pub(crate) async fn backup(
    to: PathBuf,
    config: Option<PathBuf>,
    admin: Option<String>,
    token: Option<String>,
) -> Result<(), CliError> {
    let model = load(config.clone())?.model;
    let Some(layout) = model.backup_layout() else {
        return Err(
            "the state is in PostgreSQL ([storage] postgres_url): back it up with pg_dump, as docs/operations.md#backup-and-restore says"
                .into(),
        );
    };
    let to = std::path::absolute(&to).unwrap_or(to);
    if crate::audit::backup::is_live(&layout) {
        return super::admin::admin(AdminArgs {
            admin,
            token,
            ca: None,
            cert: None,
            key: None,
            dry_run: false,
            json: false,
            if_match: None,
            config,
            command: AdminCommand::Backup { to },
        })
        .await;
    }
    // No gateway: open the store (a crash's torn tail is cut, as at a start) and copy.
    let (store, _) = crate::app::open_store(&model)
        .await
        .map_err(|e| e.to_string())?;
    let mut heads = std::collections::BTreeMap::new();
    for instance in store.instances().await.map_err(|e| e.to_string())? {
        if let Some((seq, _)) = store.head(&instance).await.map_err(|e| e.to_string())? {
            heads.insert(instance, seq);
        }
    }
    let manifest = crate::audit::backup::take(&layout, &to, heads)
        .await
        .map_err(|e| e.to_string())?;
    drop(store);
    print_taken(&json!({
        "to": to,
        "taken_at": manifest.taken_at,
        "heads": manifest.heads,
        "files": manifest.files.len(),
        "bytes": manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
    }))
}

pub(crate) fn print_taken(body: &Value) -> Result<(), CliError> {
    out!(
        "backup in {}: {} files, {} bytes, taken at {}",
        body["to"].as_str().unwrap_or_default(),
        body["files"],
        body["bytes"],
        body["taken_at"].as_str().unwrap_or_default()
    );
    if let Some(heads) = body["heads"].as_object() {
        for (instance, seq) in heads {
            out!("  chain {instance}: every record through #{seq} (acknowledged when it started)");
        }
    }
    Ok(())
}

/// `lienthong restore --from DIR`: checks every file against the manifest, then puts them
/// where the configuration says; never over a live store.
pub(crate) fn restore(
    from: PathBuf,
    config: Option<PathBuf>,
    replace: bool,
) -> Result<(), CliError> {
    let model = load(config)?.model;
    let Some(layout) = model.backup_layout() else {
        return Err(
            "the state is in PostgreSQL: restore it with pg_restore, as docs/operations.md#backup-and-restore says"
                .into(),
        );
    };
    let restored =
        crate::audit::backup::restore(&layout, &from, replace).map_err(|e| e.to_string())?;
    out!(
        "restored {} files from {} (taken at {})",
        restored.manifest.files.len(),
        from.display(),
        restored.manifest.taken_at
    );
    for aside in &restored.moved_aside {
        out!("  moved aside: {}", aside.display());
    }
    out!("Check it: lienthong audit verify");
    Ok(())
}
