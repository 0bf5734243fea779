//! `lienthong demo` as a newcomer runs it: every curl command it prints returns what it says.
//! The gateway's ports come from the environment (ephemeral); the simulators use their fixed
//! demo ports, as the printed commands do not name them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_printed_curl_command_works() {
    if !curl_available() {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "curl is required under LIENTHONG_CI"
        );
        eprintln!("skipped: curl is not installed");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .arg("demo")
        .env("LIENTHONG_LISTEN__LOOKUP", "127.0.0.1:0")
        .env("LIENTHONG_LISTEN__ADMIN", "127.0.0.1:0")
        .env("LIENTHONG_LOG__LEVEL", "warn")
        .env_remove("LIENTHONG_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut commands: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.starts_with("Press Ctrl-C") {
            break;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("curl ") || !current.is_empty() {
            current.push_str(trimmed.trim_end_matches('\\'));
            current.push(' ');
            if !trimmed.ends_with('\\') {
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    assert_eq!(commands.len(), 4, "{commands:#?}");
    let run = |cmd: &str| -> serde_json::Value {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{cmd}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{cmd}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let citizen = run(&commands[0]);
    assert_eq!(
        citizen["personal_id"].as_str().map(str::len),
        Some(12),
        "{citizen}"
    );
    assert!(citizen["full_name"].is_string());
    let enterprise = run(&commands[1]);
    assert_eq!(
        enterprise["enterprise_code"].as_str().map(str::len),
        Some(10),
        "{enterprise}"
    );
    let parcel = run(&commands[2]);
    let keys: Vec<&String> = parcel.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["area_m2", "land_use_purposes", "parcel_id"]);
    let batch = run(&commands[3]);
    assert_eq!(batch["items"][0]["outcome"], "ok");
    assert_eq!(batch["items"][1]["outcome"], "invalid_key");

    // SIGTERM: the demo shuts down gracefully and exits 0.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "{status:?}");
}
