//! Building a whole configuration: the demo's is valid, environment overrides apply, TLS
//! is checked, and every mistake is named with its file and key.

use super::*;
use crate::config::DEMO_FILES;
use crate::transport::tls::ClientAuth;
use sha2::Digest;
use std::path::PathBuf;

fn write(dir: &std::path::Path, files: &[(&str, &str)]) -> PathBuf {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
    dir.join(files[0].0)
}

fn demo_files() -> Vec<(&'static str, String)> {
    DEMO_FILES
        .iter()
        .map(|(n, t)| (n.rsplit('/').next().unwrap_or(n), (*t).to_owned()))
        .collect()
}

#[test]
fn the_embedded_demo_config_is_valid() {
    let config = build(&Source::demo(), &BTreeMap::new()).expect("demo config");
    assert_eq!(config.model.connectors.len(), 3);
    assert_eq!(config.model.settings.lookup_addr.port(), 8080);
    assert_eq!(config.model.settings.admin_addr.port(), 9090);
    let demo = config
        .model
        .consumers
        .iter()
        .find(|c| c.id == "demo-onestop")
        .expect("the demo's one-stop system");
    assert_eq!(
        demo.key_hashes[0],
        <[u8; 32]>::from(sha2::Sha256::digest(b"demo-onestop-key"))
    );
}

#[test]
fn env_overrides_apply_and_unknown_ones_are_named() {
    let env: BTreeMap<String, String> = [
        ("LIENTHONG_LISTEN__LOOKUP", "127.0.0.1:18080"),
        ("LIENTHONG_LIMITS__MAX_BATCH_ITEMS", "7"),
        ("LIENTHONG_CONFIG", "ignored.toml"),
        ("LIENTHONG_TEST_POSTGRES_URL", "ignored"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = build(&Source::demo(), &env).expect("valid");
    assert_eq!(config.model.settings.lookup_addr.port(), 18080);
    assert_eq!(config.model.settings.max_batch_items, 7);

    let bad: BTreeMap<String, String> = [("LIENTHONG_LISTEN__LOOKPU".to_owned(), "x".to_owned())]
        .into_iter()
        .collect();
    let errors = build(&Source::demo(), &bad).expect_err("unknown key");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].key, "listen.lookpu");
    assert!(
        errors.0[0].message.contains("LIENTHONG_LISTEN__LOOKPU"),
        "{}",
        errors
    );
}

#[test]
fn tls_settings_are_checked_and_plaintext_stays_on_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let mut files = demo_files();
    files[0].1 = files[0].1.replace("127.0.0.1:8080", "0.0.0.0:8080");
    files[2].1 += "certificate_names = [\"motcua-hanoi\", \"CN=motcua-hanoi\"]\n";
    let main = write(
        dir.path(),
        &files
            .iter()
            .map(|(n, t)| (*n, t.as_str()))
            .collect::<Vec<_>>(),
    );
    let errors = build(&Source::File(main.clone()), &BTreeMap::new())
        .expect_err("plaintext on 0.0.0.0, bad names");
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listen.lookup",
            "consumer[1].certificate_names[0]",
            "consumer[1].certificate_names[1]"
        ],
        "{errors}"
    );
    assert!(errors.0[0].message.contains("[tls]"), "{errors}");
    assert!(errors.0[2].message.contains("client_ca"), "{errors}");

    // With TLS the same address is fine; files are read relative to the main file.
    let ca = crate::certs::Authority::new("test", 1).expect("ca");
    let server = ca.server(&["localhost".into()], 1).expect("server");
    std::fs::create_dir(dir.path().join("tls")).expect("dir");
    for (name, text) in [
        ("tls/ca.pem", &ca.pem().cert_pem),
        ("tls/server.pem", &server.cert_pem),
        ("tls/server-key.pem", &server.key_pem),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let with_tls = |tls: &str| {
        let mut f = files.clone();
        f[0].1 += tls;
        f[2].1 = f[2].1.replace("\"motcua-hanoi\", ", "");
        let main = write(
            dir.path(),
            &f.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>(),
        );
        build(&Source::File(main), &BTreeMap::new())
    };
    let config = with_tls(
        "[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server-key.pem\"\nclient_ca = \"tls/ca.pem\"\n",
    )
    .expect("valid");
    let tls = config.tls.expect("tls");
    assert_eq!(tls.client_auth, Some(ClientAuth::Optional));
    assert_eq!(
        config.model.consumers[1].certificate_names,
        ["CN=motcua-hanoi"]
    );

    // The key of another certificate, a missing file, an unknown client_auth.
    let other = ca.server(&["other".into()], 1).expect("server");
    std::fs::write(dir.path().join("tls/other-key.pem"), &other.key_pem).expect("write");
    let errors = with_tls(
        "[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/other-key.pem\"\nclient_ca = \"tls/ca.pem\"\n",
    )
    .expect_err("mismatched key");
    assert_eq!(errors.0[0].key, "tls", "{errors}");
    let errors = with_tls(
        "[tls]\ncert = \"tls/missing.pem\"\nkey = \"tls/server-key.pem\"\nclient_ca = \"tls/ca.pem\"\nclient_auth = \"always\"\n",
    )
    .expect_err("missing file");
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys.contains(&"tls.cert") && keys.contains(&"tls.client_auth"),
        "{errors}"
    );
}

#[test]
fn every_error_is_named_with_its_file_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let mut files = demo_files();
    files[0].1 = files[0]
        .1
        .replace("[listen]", "colour = \"blue\"\n[listen]")
        .replace("lookup = \"127.0.0.1:8080\"", "lookup = \"localhost\"");
    files[1].1 = files[1]
        .1
        .replace(
            "timeout_ms = 3000\nrecord_path = \"Data\"",
            "timeout_ms = 3000\nrecord_path = \"Data\"\ntimeuot_ms = 1",
        )
        .replace(
            "short_name = \"MainInformation.SHORT_NAME\"",
            "short_nam = \"MainInformation.SHORT_NAME\"",
        )
        .replace("kind = \"grpc\"", "kind = \"corba\"");
    files[3].1 = files[3]
        .1
        .replacen(
            "fields = [\"*\"]",
            "fields = [\"full_name\", \"shoe_size\"]",
            1,
        )
        .replacen(
            "legal_basis",
            "valid_until = \"2024-02-30\"\nlegal_basis",
            1,
        );
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let main = write(dir.path(), &refs);
    let errors = build(&Source::File(main), &BTreeMap::new()).expect_err("invalid");
    let text = errors.to_string();
    for (file, key) in [
        ("gateway.toml", "colour"),
        ("gateway.toml", "listen.lookup"),
        ("connectors.toml", "connector[1].timeuot_ms"),
        ("connectors.toml", "connector[1].mapping.short_nam"),
        ("connectors.toml", "connector[2].kind"),
        ("grants.toml", "grant[0].fields"),
        ("grants.toml", "grant[0].valid_until"),
    ] {
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.file.ends_with(file) && e.key == key),
            "missing {file}: {key} in\n{text}"
        );
    }
}

#[test]
fn a_datasets_file_registers_datasets_and_names_each_mistake() {
    let dir = tempfile::tempdir().expect("dir");
    let mut files = demo_files();
    files[0].1 = files[0]
        .1
        .replace("grants = ", "datasets = \"datasets.toml\"\ngrants = ");
    let good = r#"
[[dataset]]
name = "tax.status"
key = { pattern = "[0-9]{10}" }
key_field = "tax_code"
[[dataset.field]]
name = "tax_code"
type = "string"
[[dataset.field]]
name = "debts"
type = "int64"
repeated = true

[[dataset]]
name = "land.parcel"
disabled = true
"#;
    let connector = r#"
[[connector]]
name = "tax"
dataset = "tax.status"
kind = "rest-json"
endpoint = "http://127.0.0.1:7099/tax"
[connector.mapping]
tax_code = "code"
debts = "debts"
"#;
    files[1].1.push_str(connector);
    files.push(("datasets.toml", good.to_owned()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let main = write(dir.path(), &refs);
    let config = build(&Source::File(main.clone()), &BTreeMap::new()).expect("valid");
    let tax = config.model.dataset("tax.status").expect("registered");
    assert_eq!((tax.owner.as_str(), tax.builtin), ("tax", false));
    assert!(tax.key.normalize("0101234567", 2026).is_ok());
    assert!(tax.key.normalize("01012345", 2026).is_err());
    assert!(
        config
            .model
            .dataset("land.parcel")
            .expect("built in")
            .disabled
    );
    assert!(
        config
            .model
            .settings
            .files
            .iter()
            .any(|(role, _)| role == "datasets")
    );

    let bad = r#"
[[dataset]]
name = "Tax Status"
key = { pattern = "[0-9]{10}" }
key_field = "tax_code"
[[dataset.field]]
name = "tax_code"
type = "string"

[[dataset]]
name = "tax.status"
key = { pattern = "(" }
key_field = "debts"
[[dataset.field]]
name = "tax_code"
type = "text"
[[dataset.field]]
name = "debts"
type = "int64"

[[dataset]]
name = "land.parcel"
key_field = "parcel_id"

[[dataset]]
name = "tax.other"
key_field = "code"
[[dataset.field]]
name = "code"
type = "string"
"#;
    std::fs::write(dir.path().join("datasets.toml"), bad).expect("write");
    let errors = build(&Source::File(main), &BTreeMap::new()).expect_err("invalid");
    let text = errors.to_string();
    for key in [
        "dataset[0].name",
        "dataset[1].key.pattern",
        "dataset[1].field[0].type",
        "dataset[1].key_field",
        "dataset[2]",
        "dataset[3].key",
    ] {
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.file.ends_with("datasets.toml") && e.key == key),
            "missing datasets.toml: {key} in\n{text}"
        );
    }
}

#[test]
fn evidence_keys_are_checked_and_named() {
    let dir = tempfile::tempdir().expect("dir");
    let mut files = demo_files();
    // The demo's one key, inline in [audit] (its last section), replaced by tables.
    let start = files[0].1.find("evidence_keys = [").expect("demo key");
    files[0].1.truncate(start);
    files[0].1.push_str(
        r#"[[audit.evidence_keys]]
id = "retired-first"
public = "1E04tK62gI3VWJZ67gh8Mdut+kxDoQyC4/tUFRm9oW8="

[[audit.evidence_keys]]
id = "e2"
seed = "c2hvcnQ="

[[audit.evidence_keys]]
id = "e3"
seed = "UY9QXYHBldHgPbPc0grhfkr9zfDbaSSWtFkY+aIqEKQ="
valid_from = "yesterday"

[[audit.evidence_keys]]
id = "e3"
public = "1E04tK62gI3VWJZ67gh8Mdut+kxDoQyC4/tUFRm9oW8="

[[audit.evidence_keys]]
id = "e4"
"#,
    );
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let main = write(dir.path(), &refs);
    let errors = build(&Source::File(main), &BTreeMap::new()).expect_err("invalid");
    let text = errors.to_string();
    for (key, says) in [
        ("audit.evidence_keys[0].seed", "first evidence key signs"),
        ("audit.evidence_keys[1].seed", "32 bytes"),
        ("audit.evidence_keys[2].valid_from", "RFC 3339"),
        ("audit.evidence_keys[3].id", "listed twice"),
        ("audit.evidence_keys[4]", "needs seed"),
    ] {
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.key == key && e.message.contains(says)),
            "missing {key} ({says}) in\n{text}"
        );
    }
}

#[test]
fn a_secret_sealed_under_the_previous_secrets_key_still_opens_after_a_rotation() {
    use crate::config::sealed::SealKey;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (old, new) = (b64.encode([7u8; 32]), b64.encode([9u8; 32]));
    let sealed = SealKey::from_base64(&old)
        .unwrap()
        .seal("token", "demo-business-token");
    let dir = tempfile::tempdir().expect("dir");
    let mut files = demo_files();
    let start = files[0].1.find("secrets_key = ").expect("the demo's key");
    let end = start + files[0].1[start..].find('\n').unwrap();
    files[0].1.replace_range(
        start..end,
        &format!("secrets_key = \"{new}\"\nprevious_secrets_keys_env = [\"OLD_SECRETS_KEY\"]"),
    );
    files[1].1 = files[1].1.replace(
        "token = \"demo-business-token\"",
        &format!("token = \"{sealed}\""),
    );
    let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let main = write(dir.path(), &refs);
    let env = BTreeMap::from([("OLD_SECRETS_KEY".to_owned(), old)]);
    let built = build(&Source::File(main.clone()), &env).expect("opens under the previous key");
    // New seals are made under the new key.
    let resealed = built.model.secrets_key.as_ref().unwrap().seal("token", "x");
    assert!(
        SealKey::from_base64(&new)
            .unwrap()
            .open("token", &resealed)
            .is_ok()
    );
    // Without the previous key, the secret it sealed does not open, and the error says so.
    let errors = build(&Source::File(main), &BTreeMap::new()).expect_err("no previous key");
    let text = errors.to_string();
    assert!(text.contains("OLD_SECRETS_KEY is not set"), "{text}");
}
