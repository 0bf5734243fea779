//! Access requests on a running gateway: a one-stop system's administrator asks for access;
//! the owning agency approves it narrower than asked, which creates the grant and opens the
//! lookups, or refuses it with a reason and a legal ground, which stays on record and can be
//! listed; a pending request past its deadline in working days is listed as overdue.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OPERATOR: &str = "demo-operator-token";
const AUDITOR: &str = "demo-auditor-token";
const LAND: &str = "demo-land-provider-token";
const ONESTOP_ADMIN: &str = "test-onestop-admin-token";

async fn start() -> Harness {
    let extra = format!(
        "\n[[admin.token]]\nname = \"onestop-admin\"\nsha256 = \"{}\"\nrole = \"consumer_admin\"\nconsumer = \"demo-onestop\"\n\n[access_requests]\ndeadline_working_days = 2\nholidays = [\"2026-09-02\"]\n",
        hex::encode(Sha256::digest(ONESTOP_ADMIN.as_bytes()))
    );
    Harness::start_with(move |name, text| match name {
        "gateway.toml" => text.replace("\n[audit]", &format!("{extra}\n[audit]")),
        _ => text,
    })
    .await
}

fn land_request() -> Value {
    json!({
        "dataset": "land.parcel",
        "fields": ["parcel_id", "area_m2", "land_use_purposes"],
        "procedures": ["1.*"],
        "legal_basis": "Luật Đất đai 2024, Điều 58",
        "purpose": "Xác minh thửa đất khi giải quyết thủ tục cấp giấy chứng nhận",
    })
}

/// A land lookup by the demo one-stop system, asking for `fields`: (status, body).
async fn land_lookup(h: &Harness, fields: &str) -> (u16, Value) {
    let parcel = h.sample("land.parcel");
    let r = h
        .get(&format!("/v1/land-parcels/{parcel}?fields={fields}"))
        .await;
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_request_is_approved_narrower_than_asked_or_refused_on_a_legal_ground() {
    let h = start().await;
    // The demo one-stop system starts without land access.
    let grants = h.admin_json(OPERATOR, "/admin/v1/grants").await;
    let land_grant = grants["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["grant"]["dataset"] == "land.parcel")
        .expect("a land grant")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = h
        .admin_call(
            Method::DELETE,
            &format!("/admin/v1/grants/{land_grant}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(land_lookup(&h, "parcel_id").await.0, 403);

    // Its administrator asks; the request is pending, due in two working days.
    let (status, asked) = h
        .admin_call(
            Method::POST,
            "/admin/v1/access-requests",
            ONESTOP_ADMIN,
            Some(land_request()),
        )
        .await;
    assert_eq!(status, 200, "{asked}");
    let request = &asked["request"];
    assert_eq!(request["state"], "pending");
    assert_eq!(request["consumer"], "demo-onestop");
    assert_eq!(request["requested_by"], "onestop-admin");
    assert_eq!(request["overdue"], false);
    let deadline = request["deadline"].as_str().expect("deadline");
    assert!(
        deadline > lienthong::domain::date::Date::today().to_string().as_str(),
        "{deadline}"
    );
    let id = request["id"].as_str().expect("id").to_owned();

    // What may not be asked: another consumer's access, a field the dataset lacks, no ground.
    for (body, word) in [
        (json!({"consumer": "demo-portal"}), "demo-portal"),
        (json!({"fields": ["shoe_size"]}), "shoe_size"),
        (json!({"legal_basis": "  "}), "legal_basis"),
    ] {
        let mut wrong = land_request();
        for (k, v) in body.as_object().expect("object") {
            wrong[k] = v.clone();
        }
        let (status, refused) = h
            .admin_call(
                Method::POST,
                "/admin/v1/access-requests",
                ONESTOP_ADMIN,
                Some(wrong),
            )
            .await;
        assert!(status == 400 || status == 403, "{refused}");
        assert!(
            refused["detail"].as_str().unwrap_or("").contains(word),
            "{refused}"
        );
    }

    // The land agency sees it; an approval may narrow what was asked, never widen it.
    let theirs = h
        .admin_json(LAND, "/admin/v1/access-requests?state=pending")
        .await;
    assert_eq!(
        theirs["requests"].as_array().map(Vec::len),
        Some(1),
        "{theirs}"
    );
    for (body, word) in [
        (json!({"fields": ["land_users"]}), "land_users"),
        (json!({"procedures": ["2.*"]}), "2.*"),
    ] {
        let (status, refused) = h
            .admin_call(
                Method::POST,
                &format!("/admin/v1/access-requests/{id}/approve"),
                LAND,
                Some(body),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        assert!(
            refused["detail"].as_str().unwrap_or("").contains(word),
            "{refused}"
        );
    }
    let (status, approved) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/access-requests/{id}/approve"),
            LAND,
            Some(json!({"fields": ["parcel_id", "area_m2"], "procedures": ["1.001612"], "note": "no land-use purpose"})),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["request"]["state"], "approved");
    let grant = approved["grant"]["id"]
        .as_str()
        .expect("grant id")
        .to_owned();
    assert_eq!(approved["request"]["grant"], grant.as_str());
    assert_eq!(
        approved["grant"]["grant"]["fields"],
        json!(["parcel_id", "area_m2"])
    );
    assert_eq!(
        approved["grant"]["grant"]["legal_basis"],
        "Luật Đất đai 2024, Điều 58"
    );
    // The grant is in force at once, as narrow as approved.
    let (status, record) = land_lookup(&h, "parcel_id,area_m2").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(land_lookup(&h, "land_use_purposes").await.0, 403);
    let (status, again) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/access-requests/{id}/approve"),
            LAND,
            None,
        )
        .await;
    assert_eq!(status, 409, "{again}");

    // A refusal needs a reason and a legal ground, and both stay on record.
    let (_, asked) = h
        .admin_call(
            Method::POST,
            "/admin/v1/access-requests",
            ONESTOP_ADMIN,
            Some(json!({
                "dataset": "land.parcel", "fields": ["*"], "procedures": ["2.*"],
                "legal_basis": "Luật Đất đai 2024", "purpose": "Tra cứu chủ sử dụng",
            })),
        )
        .await;
    let second = asked["request"]["id"].as_str().expect("id").to_owned();
    let (status, _) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/access-requests/{second}/refuse"),
            LAND,
            Some(json!({"reason": "too broad"})),
        )
        .await;
    assert_eq!(status, 400);
    let ground = "Nghị định 13/2023/NĐ-CP, Điều 3: chỉ xử lý dữ liệu cần thiết cho mục đích";
    let (status, refused) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/access-requests/{second}/refuse"),
            LAND,
            Some(json!({"reason": "every field for any procedure is more than the purpose needs", "legal_ground": ground})),
        )
        .await;
    assert_eq!(status, 200, "{refused}");
    let listed = h
        .admin_json(
            AUDITOR,
            "/admin/v1/access-requests?state=refused&dataset=land.parcel",
        )
        .await;
    let refusals = listed["requests"].as_array().expect("requests");
    assert_eq!(refusals.len(), 1, "{listed}");
    assert_eq!(refusals[0]["legal_ground"], ground);
    assert_eq!(refusals[0]["decided_by"], "demo-land-registry");

    // The asker may withdraw a pending request of its own, nothing else.
    let (_, third) = h
        .admin_call(
            Method::POST,
            "/admin/v1/access-requests",
            ONESTOP_ADMIN,
            Some(land_request()),
        )
        .await;
    let third = third["request"]["id"].as_str().expect("id").to_owned();
    let (status, _) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/access-requests/{third}/withdraw"),
            LAND,
            None,
        )
        .await;
    assert_eq!(status, 403, "a provider does not withdraw");
    let (status, withdrawn) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/access-requests/{third}/withdraw"),
            ONESTOP_ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 200, "{withdrawn}");
    assert_eq!(withdrawn["request"]["state"], "withdrawn");

    // Every step is audited under the dataset, with who and what.
    let trail = h
        .admin_json(
            AUDITOR,
            "/admin/v1/audit/records?dataset=land.parcel&limit=200",
        )
        .await;
    let actions: Vec<(&str, &str)> = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| Some((r["action"].as_str()?, r["consumer"].as_str()?)))
        .collect();
    for step in [
        ("access_requested", "onestop-admin"),
        ("access_approved", "demo-land-registry"),
        ("access_refused", "demo-land-registry"),
        ("access_withdrawn", "onestop-admin"),
    ] {
        assert!(actions.contains(&step), "{step:?} in {actions:?}");
    }

    // A reload keeps the decisions (the approved grant goes with the grants file on disk).
    let (status, _) = h
        .admin_call(Method::POST, "/admin/v1/reload", OPERATOR, None)
        .await;
    assert_eq!(status, 200);
    let after = h
        .admin_json(OPERATOR, &format!("/admin/v1/access-requests/{second}"))
        .await;
    assert_eq!(after["state"], "refused", "{after}");
}

#[tokio::test]
async fn a_pending_request_past_its_deadline_is_listed_as_overdue() {
    let h = start().await;
    let (status, fresh) = h
        .admin_call(
            Method::POST,
            "/admin/v1/access-requests",
            ONESTOP_ADMIN,
            Some(land_request()),
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    // Days pass: a request made on 31 August 2026 (a Monday) was due two working days later,
    // 2 September being a holiday: on Thursday 3 September. It is written as the gateway
    // would have written it then.
    let live = &h.gateway.live;
    let mut files = live.current().config().settings.files.clone();
    let accounts = files
        .iter_mut()
        .find(|(role, _)| role == "accounts")
        .expect("the accounts file");
    accounts.1.push_str(
        r#"
[[request]]
id = "ar-0000000001"
consumer = "demo-onestop"
dataset = "business.enterprise"
fields = ["*"]
procedures = ["1.*"]
modes = ["fetch"]
legal_basis = "Luật Doanh nghiệp 2020"
purpose = "Tra cứu doanh nghiệp"
state = "pending"
requested_by = "onestop-admin"
requested = "2026-08-31T02:00:00.000Z"
deadline = "2026-09-03"
"#,
    );
    live.apply("test", "a request from August", files, false, None)
        .await
        .expect("applied");
    let overdue = h
        .admin_json(OPERATOR, "/admin/v1/access-requests?overdue=true")
        .await;
    let ids: Vec<&str> = overdue["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["ar-0000000001"], "{overdue}");
    let all = h.admin_json(OPERATOR, "/admin/v1/access-requests").await;
    assert_eq!(all["requests"].as_array().map(Vec::len), Some(2));
    // Deciding it late is still deciding it: it leaves the overdue list.
    let (status, _) = h
        .admin_call(
            Method::POST,
            "/admin/v1/access-requests/ar-0000000001/refuse",
            OPERATOR,
            Some(json!({"reason": "late, and the purpose is vague", "legal_ground": "Nghị định 47/2024/NĐ-CP"})),
        )
        .await;
    assert_eq!(status, 200);
    let overdue = h
        .admin_json(OPERATOR, "/admin/v1/access-requests?overdue=true")
        .await;
    assert_eq!(overdue["requests"], json!([]), "{overdue}");
}
