//! The register over a real SQLite database (in memory); the PostgreSQL store is driven by
//! the replica tests in `tests/dossiers.rs`.

use super::*;

const DAY_MS: i64 = 86_400_000;

fn declaration(id: &str, subjects: &[&str]) -> NewDossier {
    NewDossier {
        consumer: "onestop-hn".into(),
        dossier_id: id.into(),
        procedure_code: "1.001612".into(),
        officer_id: "canbo01".into(),
        received_ms: 1_000 * DAY_MS,
        subjects: subjects
            .iter()
            .map(|r| ("population.citizen".to_owned(), (*r).to_owned()))
            .collect(),
    }
}

async fn register(max_subjects: usize) -> Register {
    Register::in_memory(DossierSettings {
        max_subjects,
        expire_after: std::time::Duration::from_secs(10 * 86_400),
        ..DossierSettings::default()
    })
    .await
    .expect("register")
}

#[tokio::test]
async fn a_dossier_is_declared_once_changed_while_open_and_closed_once() {
    let r = register(3).await;
    let now = 1_001 * DAY_MS;
    let Declared::Created(d) = r
        .declare(declaration("H48-1", &["k1:aa", "k1:bb"]), now)
        .await
        .expect("declared")
    else {
        panic!("a new dossier is created");
    };
    assert!(d.open_at(now) && d.holds("k1:aa") && d.holds("k1:bb") && !d.holds("k1:cc"));
    assert_eq!(d.expires_ms, 1_010 * DAY_MS, "received + expire_after");
    // The same declaration again (a retry) changes nothing; a different one is refused.
    assert!(matches!(
        r.declare(declaration("H48-1", &["k1:aa", "k1:bb"]), now)
            .await,
        Ok(Declared::Unchanged(_))
    ));
    assert!(matches!(
        r.declare(declaration("H48-1", &["k1:aa"]), now).await,
        Err(RegisterError::Declared(_))
    ));
    // Another consumer's dossier of the same id is another dossier.
    let mut other = declaration("H48-1", &["k1:zz"]);
    other.consumer = "onestop-hcm".into();
    assert!(matches!(
        r.declare(other, now).await,
        Ok(Declared::Created(_))
    ));
    let d = r
        .add_subject(
            "onestop-hn",
            "H48-1",
            ("population.citizen", "k1:cc"),
            "spouse",
            now,
        )
        .await
        .expect("added");
    assert!(d.holds("k1:cc"));
    assert!(matches!(
        r.add_subject(
            "onestop-hn",
            "H48-1",
            ("population.citizen", "k1:cc"),
            "again",
            now
        )
        .await,
        Err(RegisterError::AlreadySubject(_))
    ));
    assert!(matches!(
        r.add_subject(
            "onestop-hn",
            "H48-1",
            ("population.citizen", "k1:dd"),
            "x",
            now
        )
        .await,
        Err(RegisterError::TooManySubjects { max: 3, .. })
    ));
    let d = r
        .remove_subject("onestop-hn", "H48-1", "k1:bb", "typo", now)
        .await
        .expect("removed");
    assert!(!d.holds("k1:bb"));
    let removed = d
        .subjects
        .iter()
        .find(|s| s.reference == "k1:bb")
        .expect("kept");
    assert_eq!(
        (removed.removed_ms, removed.removed_reason.as_str()),
        (Some(now), "typo")
    );
    assert!(matches!(
        r.remove_subject("onestop-hn", "H48-1", "k1:bb", "twice", now)
            .await,
        Err(RegisterError::NotSubject(_))
    ));
    let closed = r
        .close("onestop-hn", "H48-1", "approved", now + 5)
        .await
        .expect("closed");
    assert_eq!(
        (closed.status, closed.result.as_str()),
        (Status::Closed, "approved")
    );
    assert!(!closed.open_at(now + 6));
    for e in [
        r.close("onestop-hn", "H48-1", "refused", now + 7)
            .await
            .err(),
        r.add_subject(
            "onestop-hn",
            "H48-1",
            ("population.citizen", "k1:ee"),
            "x",
            now + 7,
        )
        .await
        .err(),
    ] {
        assert!(
            matches!(
                e,
                Some(RegisterError::Ended {
                    status: "closed",
                    ..
                })
            ),
            "{e:?}"
        );
    }
    assert!(matches!(
        r.close("onestop-hn", "H48-404", "approved", now).await,
        Err(RegisterError::Unknown(_))
    ));
    // The read-back keeps the history: the removed subject, the closure.
    let back = r
        .get("onestop-hn", "H48-1")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(back, closed);
    assert_eq!(back.subjects.len(), 3);
}

#[tokio::test]
async fn dossiers_past_their_expiry_are_not_open_and_are_expired_once_then_purged() {
    let r = register(5).await;
    r.declare(declaration("H48-old", &["k1:aa"]), 1_001 * DAY_MS)
        .await
        .expect("declared");
    r.declare(
        NewDossier {
            received_ms: 1_005 * DAY_MS,
            ..declaration("H48-new", &["k1:aa"])
        },
        1_005 * DAY_MS,
    )
    .await
    .expect("declared");
    let later = 1_012 * DAY_MS;
    let old = r
        .cached("onestop-hn", "H48-old")
        .await
        .expect("read")
        .expect("found");
    // Past expiry it is no longer open, even before the sweep marks it.
    assert!(!old.open_at(later));
    assert_eq!(old.status_at(later), Status::Expired);
    assert!(matches!(
        r.add_subject(
            "onestop-hn",
            "H48-old",
            ("population.citizen", "k1:bb"),
            "x",
            later
        )
        .await,
        Err(RegisterError::Ended {
            status: "expired",
            ..
        })
    ));
    let expired = r.expire_due(later).await.expect("swept");
    assert_eq!(
        expired
            .iter()
            .map(|d| d.dossier_id.as_str())
            .collect::<Vec<_>>(),
        ["H48-old"]
    );
    assert!(r.expire_due(later).await.expect("swept").is_empty(), "once");
    let stored = r
        .get("onestop-hn", "H48-old")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        (stored.status, stored.result.as_str()),
        (Status::Expired, "expired")
    );
    // Purged only once past the retention cut-off; open ones are never purged.
    assert_eq!(r.purge_ended_before(later).await.expect("purged"), 0);
    assert_eq!(r.purge_ended_before(later + 1).await.expect("purged"), 1);
    assert!(
        r.get("onestop-hn", "H48-old")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        r.get("onestop-hn", "H48-new")
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test]
async fn the_cache_serves_a_dossier_until_it_changes_here() {
    let r = register(5).await;
    let now = 1_001 * DAY_MS;
    assert!(
        r.cached("onestop-hn", "H48-2")
            .await
            .expect("read")
            .is_none()
    );
    // The absence was cached, and the declaration here forgets it.
    r.declare(declaration("H48-2", &["k1:aa"]), now)
        .await
        .expect("declared");
    let d = r
        .cached("onestop-hn", "H48-2")
        .await
        .expect("read")
        .expect("found");
    assert!(d.open_at(now));
    r.close("onestop-hn", "H48-2", "withdrawn", now)
        .await
        .expect("closed");
    let d = r
        .cached("onestop-hn", "H48-2")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(d.status, Status::Closed);
}
