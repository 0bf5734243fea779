use super::*;
use crate::config::ConfigError;

fn read(raw: &RawDoor) -> (DoorConfig, Vec<ConfigError>) {
    let mut all = Vec::new();
    let mut e = Errors {
        file: "gateway.toml".into(),
        all: &mut all,
    };
    let c = from_settings(raw, &mut e);
    (c, all)
}

#[test]
fn defaults_are_sensible_and_described() {
    let (c, errors) = read(&RawDoor::default());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(c.source_rate.to_string(), "600/s");
    assert!(c.auth_failures.count.get() < c.source_rate.count.get());
    assert!(c.lookup.max_connections_per_source < c.lookup.max_connections);
    let shown = c.describe();
    for key in [
        "source_rate",
        "auth_failures",
        "exempt",
        "header_read_timeout",
        "http2",
    ] {
        assert!(shown.iter().any(|(k, _)| *k == key), "{key} is shown");
    }
}

#[test]
fn mistakes_are_named_by_key() {
    let raw = RawDoor {
        source_rate: "lots".into(),
        exempt: vec!["10.0.0.0/8".into(), "10.0.0.0/40".into()],
        trusted_proxies: vec!["proxy.example".into()],
        max_in_flight: 0,
        auth_backoff_max_ms: 10,
        auth_backoff_ms: 100,
        ..RawDoor::default()
    };
    let (c, errors) = read(&raw);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "door.source_rate",
            "door.exempt[1]",
            "door.trusted_proxies[0]",
            "door.max_in_flight",
            "door.auth_backoff_max_ms"
        ]
    );
    assert_eq!(c.exempt.len(), 1, "the good block is kept");
}

#[test]
fn connection_caps_fit_under_the_descriptor_limit() {
    let (c, _) = read(&RawDoor::default());
    assert_eq!(
        Descriptors { limit: None }.caps(&c),
        [c.lookup.max_connections, c.admin.max_connections]
    );
    let [lookup, admin] = Descriptors { limit: Some(2_000) }.caps(&c);
    assert!(lookup + admin + c.descriptor_reserve as usize <= 2_000);
    assert_eq!(admin, c.admin.max_connections);
    assert!(lookup >= 1);
}
