//! `lienthong demo` as a newcomer runs it: every curl command it prints returns what it says.
//! `--ephemeral-ports` puts every listener on a free port, so the test runs beside a demo.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Stops the demo if the test fails half-way, so no process outlives it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
    // The demo keeps its audit trail under ./data: run it in a directory of its own.
    let workdir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .current_dir(workdir.path())
        .args(["demo", "--ephemeral-ports"])
        .env("LIENTHONG_LOG__LEVEL", "warn")
        .env_remove("LIENTHONG_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut child = KillOnDrop(Some(child));
    let mut commands: Vec<String> = Vec::new();
    let mut grpcurl = String::new();
    let mut grpcurl_open = false;
    let mut current = String::new();
    let mut burst = String::new();
    // The evidence recipe: its two curl commands and the check, run in the demo's folder.
    let mut evidence: Vec<String> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.starts_with("Press Ctrl-C") {
            break;
        }
        let trimmed = line.trim();
        if (trimmed.starts_with("curl ") && trimmed.contains("X-Evidence: bundle"))
            || trimmed.contains("/v1/keys >")
            || trimmed.contains(" evidence verify ")
        {
            evidence.push(trimmed.to_owned());
            continue;
        }
        if trimmed.starts_with("seq ") {
            burst = trimmed.to_owned();
            continue;
        }
        if trimmed.starts_with("grpcurl ") || grpcurl_open {
            grpcurl.push_str(trimmed.trim_end_matches('\\'));
            grpcurl.push(' ');
            grpcurl_open = trimmed.ends_with('\\');
            continue;
        }
        if trimmed.starts_with("curl ") || !current.is_empty() {
            current.push_str(trimmed.trim_end_matches('\\'));
            current.push(' ');
            if !trimmed.ends_with('\\') {
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    // Keep reading what the demo still prints: were its stdout closed, its next write
    // would fail and end it (as a CLI whose reader went away does), with the commands
    // below still to run.
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(commands.len(), 9, "{commands:#?}");
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
    // The dossier is declared, naming the citizen; he is served, another citizen refused.
    let dossier = run(&commands[0]);
    assert_eq!(dossier["status"], "open", "{dossier}");
    let citizen = run(&commands[1]);
    assert_eq!(
        citizen["personal_id"].as_str().map(str::len),
        Some(12),
        "{citizen}"
    );
    assert!(citizen["full_name"].is_string());
    let refused = run(&commands[2]);
    assert_eq!(refused["code"], "purpose_not_bound", "{refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    let enterprise = run(&commands[3]);
    assert_eq!(
        enterprise["enterprise_code"].as_str().map(str::len),
        Some(10),
        "{enterprise}"
    );
    let parcel = run(&commands[4]);
    let keys: Vec<&String> = parcel.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["area_m2", "land_use_purposes", "parcel_id"]);
    let batch = run(&commands[5]);
    assert_eq!(batch["items"][0]["outcome"], "ok");
    assert_eq!(batch["items"][1]["outcome"], "invalid_key");

    // Evidence: asked for, saved, and checked offline; one changed byte fails the check.
    assert_eq!(evidence.len(), 3, "{evidence:#?}");
    let in_demo_dir = |cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(workdir.path())
            .output()
            .expect("runs")
    };
    for cmd in &evidence[..2] {
        assert!(in_demo_dir(cmd).status.success(), "{cmd}");
    }
    let checked = in_demo_dir(&evidence[2]);
    assert!(
        checked.status.success()
            && String::from_utf8_lossy(&checked.stdout).contains("the evidence holds"),
        "{}: {}",
        evidence[2],
        String::from_utf8_lossy(&checked.stderr)
    );
    let saved = workdir.path().join("answer.json");
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("answer.json")).expect("json");
    let name = bundle["answer"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    bundle["answer"]["name"] = serde_json::json!(format!("{name}."));
    std::fs::write(&saved, bundle.to_string()).expect("write");
    let checked = in_demo_dir(&evidence[2]);
    assert!(
        !checked.status.success(),
        "a changed answer must fail the check"
    );

    grpc_command_works(&grpcurl);

    // Every answer carries the grant's quota; the printed burst gets 429s beyond it.
    let headers = Command::new("sh")
        .arg("-c")
        .arg(commands[1].replacen("curl -s", "curl -s -D - -o /dev/null", 1))
        .output()
        .expect("curl runs");
    let headers = String::from_utf8_lossy(&headers.stdout).to_lowercase();
    assert!(headers.contains("ratelimit-limit: 600"), "{headers}");
    assert!(headers.contains("ratelimit-remaining:"), "{headers}");
    let started = std::time::Instant::now();
    let counted = Command::new("sh")
        .arg("-c")
        .arg(&burst)
        .output()
        .expect("the burst runs");
    let took = started.elapsed().as_secs_f64();
    let counted = String::from_utf8_lossy(&counted.stdout);
    let count_of = |status: &str| -> u32 {
        counted
            .lines()
            .filter_map(|l| l.split_once(status).filter(|(_, rest)| rest.is_empty()))
            .filter_map(|(n, _)| n.trim().parse::<u32>().ok())
            .sum()
    };
    // 599 fit what is left of the quota (the enterprise curl above took one), a few more as
    // it refills (10 a second) during the burst, however long it took on a busy machine;
    // the rest are refused.
    let (served, refused) = (count_of(" 200"), count_of(" 429"));
    assert_eq!(served + refused, 650, "{burst}\n{counted}");
    let refilled = (10.0 * took).ceil() as u32 + 1;
    assert!(
        (599..=599 + refilled).contains(&served),
        "{counted} in {took:.1} s"
    );
    // Refusals are certain unless the burst was slow enough for the refill to cover it.
    assert!(
        refused > 0 || 599 + refilled >= 650,
        "{counted} in {took:.1} s"
    );

    // The printed alerts command answers the list (an off-hours alert or none, by the hour).
    let alerts = run(&commands[6]);
    assert!(alerts["alerts"].is_array(), "{alerts}");

    // The portal's printed command: the citizen's own report, on a fresh assertion.
    let mine = run(&commands[7]);
    let entries = mine["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["consumer"] == "demo-onestop" && e["role"] == "subject"),
        "{mine}"
    );
    assert_eq!(mine["withheld_count"], 0, "{mine}");

    // The printed audit report lists the lookups of that citizen just made.
    let report = run(&commands[8]);
    let rows = report["records"].as_array().expect("records");
    assert!(rows.len() >= 2, "{report}");
    assert!(
        rows.iter().all(|r| r["consumer"] == "demo-onestop"),
        "{report}"
    );

    // SIGTERM: the demo shuts down gracefully and exits 0.
    let mut child = child.0.take().expect("child");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "{status:?}");

    // Where the demo ran, its trail verifies, every record signed by the shutdown checkpoint.
    let verified = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .current_dir(workdir.path())
        .args(["audit", "verify"])
        .env_remove("LIENTHONG_CONFIG")
        .output()
        .expect("audit verify runs");
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        out.contains("the audit trail verifies") && out.contains("0 records after it"),
        "{out}"
    );
}

/// grpcurl is not packaged for Debian; the printed command's request (its `-d` JSON, its
/// `authorization` header and its address) is sent instead through a Python client that,
/// like grpcurl, knows the service only from server reflection.
fn grpc_command_works(command: &str) {
    let has_client = Command::new("python3")
        .args(["-c", "import grpc_requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_client {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "python3 with grpc-requests is required under LIENTHONG_CI"
        );
        eprintln!("skipped the grpcurl command: pip install grpc-requests to check it");
        return;
    }
    let quoted: Vec<&str> = command.split('\'').collect();
    let header = quoted
        .iter()
        .find(|q| q.starts_with("authorization:"))
        .expect("authorization header");
    let body = quoted
        .iter()
        .find(|q| q.starts_with('{'))
        .expect("request body");
    let words: Vec<&str> = command.split_whitespace().collect();
    let method = words.last().expect("method");
    let address = words[words.len() - 2];
    let (service, rpc) = method.rsplit_once('/').expect("service/method");
    let script = format!(
        "import json, sys\nfrom grpc_requests import Client\nc = Client.get_by_endpoint({address:?})\n\
         r = c.service({service:?}).{rpc}(json.loads(sys.argv[1]), metadata=[(\"authorization\", {token:?})])\n\
         print(json.dumps(r))",
        token = header.trim_start_matches("authorization:").trim(),
    );
    let out = Command::new("python3")
        .args(["-c", &script, body])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        reply["record"]["personal_id"].as_str().map(str::len),
        Some(12),
        "{reply}"
    );
    // The curl command looked the same citizen up first: the gRPC call is served from the cache.
    assert_eq!(reply["info"]["cache"], "hit");
}
