//! The live dashboard, loaded in headless Chromium while traffic flows: the figures it shows
//! move, and agree with `/metrics`.

mod common;

use common::*;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The page after its script ran for a few (virtual) refreshes.
fn dump_dom(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=7000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-value` of the element with this id.
fn shown(dom: &str, id: &str) -> f64 {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in {dom}"));
    let rest = &dom[at..];
    let v = rest.split("data-value=\"").nth(1).expect("data-value");
    v[..v.find('"').expect("quote")]
        .parse()
        .unwrap_or_else(|_| panic!("#{id} holds a number"))
}

async fn total_requests(h: &Harness) -> f64 {
    let text = h
        .http
        .get(format!("http://{}/metrics", h.gateway.admin_addr))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("lienthong_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_figures_that_agree_with_metrics() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "chromium is required under LIENTHONG_CI"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    // Detection on, all day, with a low threshold: the traffic below (one officer, 50
    // citizens) raises a misuse alert, which the page shows.
    common::clear_of_the_hour_turning(std::time::Duration::from_secs(30)).await;
    let h = Arc::new(
        Harness::start_with(|file, text| match file {
            "gateway.toml" => format!(
                "{}\n[misuse]\noffice_hours = \"00:00-24:00\"\n\
                 office_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n",
                text.replace(
                    "officer_subjects_hour = { threshold = 99 }",
                    "officer_subjects_hour = { threshold = 10 }"
                )
            ),
            _ => text,
        })
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move {
            let ids = h
                .sims
                .data
                .samples("population.citizen", 50)
                .expect("samples");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                h.get(&format!("/v1/citizens/{}", ids[n % ids.len()])).await;
                n += 1;
            }
        })
    };
    let url = format!("http://{}/dashboard", h.gateway.admin_addr);
    // A few callers with no credentials: refused at the door, which the page shows.
    for _ in 0..3 {
        let r = h
            .http
            .get(format!("{}/v1/capabilities", h.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 401);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let before = total_requests(&h).await;
    let first = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || dump_dom(browser, &url))
            .await
            .expect("dump")
    };
    let after = total_requests(&h).await;
    let shown_first = shown(&first, "total-requests");
    assert!(
        before <= shown_first && shown_first <= after,
        "the page shows {shown_first} calls; /metrics said {before} before and {after} after"
    );
    assert!(
        first.contains("data-refreshes=\""),
        "the page refreshed itself"
    );
    assert!(
        first.contains("data-breaker=\"population\""),
        "providers are listed"
    );
    assert!(
        first.contains("<td>population.citizen</td>"),
        "datasets are listed"
    );
    assert_eq!(
        shown(&first, "door-total"),
        3.0,
        "refusals at the door are shown"
    );
    assert!(
        first.contains("<td>lookup</td><td>unauthenticated</td>"),
        "by listener and reason"
    );
    // This one, and the dossier's (50 undeclared subjects under one dossier, past 20).
    assert!(
        shown(&first, "misuse-total") >= 2.0,
        "the misuse alerts are shown"
    );
    assert!(
        first.contains("<td>officer_subjects_hour</td><td>demo-onestop</td>"),
        "by rule and consumer"
    );
    assert!(first.contains("<td>dossier_undeclared_subjects</td><td>demo-onestop</td>"));

    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = tokio::task::spawn_blocking(move || dump_dom(browser, &url))
        .await
        .expect("dump");
    let shown_second = shown(&second, "total-requests");
    assert!(
        shown_second > shown_first,
        "the figures move: {shown_first} then {shown_second}"
    );
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic");
}
