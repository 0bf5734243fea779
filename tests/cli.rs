//! The `lienthong` binary as a user runs it.

use std::process::Command;

fn lienthong() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lienthong"));
    c.env_remove("LIENTHONG_CONFIG");
    c
}

#[test]
fn check_config_accepts_the_example_and_names_every_error() {
    let ok = lienthong()
        .args(["check-config", "--config", "config/demo/gateway.toml"])
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok (3 connectors"));

    let dir = tempfile::tempdir().expect("dir");
    for name in [
        "connectors.toml",
        "consumers.toml",
        "grants.toml",
        "procedures.toml",
    ] {
        std::fs::copy(format!("config/demo/{name}"), dir.path().join(name)).expect("copy");
    }
    let gateway = std::fs::read_to_string("config/demo/gateway.toml")
        .expect("read")
        .replace("format = \"text\"", "format = \"xml\"\nlevle = \"info\"");
    std::fs::write(dir.path().join("gateway.toml"), gateway).expect("write");
    let bad = lienthong()
        .args(["check-config", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("gateway.toml: log.format: \"xml\" is not"),
        "{err}"
    );
    assert!(
        err.contains("gateway.toml: log.levle: unknown key"),
        "{err}"
    );
}

#[test]
fn sim_samples_prints_keys_that_exist() {
    let out = lienthong()
        .args([
            "sim",
            "samples",
            "--dataset",
            "business.enterprise",
            "--count",
            "5",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(keys.len(), 5);
    let data = lienthong::sim::data::SimData::new(
        lienthong::sim::data::DEFAULT_SEED,
        lienthong::sim::data::DEFAULT_CITIZENS,
        lienthong::sim::data::DEFAULT_ENTERPRISES,
        lienthong::sim::data::DEFAULT_PARCELS,
    );
    for key in keys {
        let code = lienthong::domain::ids::EnterpriseCode::parse(&key).expect("valid code");
        assert!(data.enterprise(&code).is_some(), "{key} exists");
    }
    let bad = lienthong()
        .args(["sim", "samples", "--dataset", "tax.nothing"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown dataset"));
}

#[test]
fn check_config_shows_the_doors_limits_with_environment_overrides_and_errors() {
    let shown = lienthong()
        .args(["check-config", "--config", "config/demo/gateway.toml"])
        .env("LIENTHONG_DOOR__SOURCE_RATE", "\"50/s\"")
        .env("LIENTHONG_DOOR__EXEMPT", "[\"10.20.0.0/16\"]")
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    for line in [
        "source_rate            50/s",
        "exempt                 10.20.0.0/16",
        "header_read_timeout    10000 ms",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    let bad = lienthong()
        .args(["check-config", "--config", "config/demo/gateway.toml"])
        .env("LIENTHONG_DOOR__TRUSTED_PROXIES", "[\"proxy.example\"]")
        .env("LIENTHONG_DOOR__MAX_IN_FLIGHT", "0")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("door.trusted_proxies[0]: \"proxy.example\" is not an address block"),
        "{err}"
    );
    assert!(
        err.contains("door.max_in_flight: must be at least 1"),
        "{err}"
    );
}

/// A deployment that serves only population configures only its connector: the other
/// built-in datasets are not served, which `check-config` reports as warnings, not errors;
/// a lookup of one answers `unknown_dataset`, saying why.
#[test]
fn a_built_in_dataset_without_a_connector_is_a_warning_and_is_not_served() {
    let dir = tempfile::tempdir().expect("dir");
    for name in [
        "consumers.toml",
        "grants.toml",
        "procedures.toml",
        "gateway.toml",
    ] {
        std::fs::copy(format!("config/demo/{name}"), dir.path().join(name)).expect("copy");
    }
    let connectors = std::fs::read_to_string("config/demo/connectors.toml").expect("read");
    let only_population = &connectors[..connectors.find("# --- business").expect("marker")];
    std::fs::write(dir.path().join("connectors.toml"), only_population).expect("write");
    let out = lienthong()
        .args(["check-config", "--config"])
        .arg(dir.path().join("gateway.toml"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (1 connectors"), "{stdout}");
    for dataset in ["business.enterprise", "land.parcel"] {
        assert!(
            stdout.contains(&format!(
                "warning: dataset {dataset} is not served: no connector is configured for it"
            )),
            "{stdout}"
        );
    }
    assert!(
        !stdout.contains("population.citizen is not served"),
        "{stdout}"
    );
}
