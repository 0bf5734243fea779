use super::*;

#[test]
fn canonical_bytes_read_back_as_the_entry_and_damage_is_refused() {
    let entry = AuditEntry {
        time_ms: 1_764_300_000_123,
        request_id: "r-1".into(),
        actor: "một-cửa".into(),
        fields: vec!["full_name".into(), "date_of_birth".into()],
        upstream_ms: -1,
        detail: "from=2025".into(),
        ..AuditEntry::default()
    };
    let bytes = entry.canonical();
    assert_eq!(AuditEntry::from_canonical(&bytes), Ok(entry.clone()));
    let empty = AuditEntry::default();
    assert_eq!(AuditEntry::from_canonical(&empty.canonical()), Ok(empty));
    assert!(AuditEntry::from_canonical(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(AuditEntry::from_canonical(&longer).is_err());
    // A field count no body could hold is refused before anything is allocated for it.
    let mut huge = AuditEntry::default().canonical();
    let at = 8 + 13 * 4;
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(AuditEntry::from_canonical(&huge).is_err());
}

#[test]
fn version_2_carries_a_disclosure_and_version_1_bytes_are_unchanged() {
    let v1 = AuditEntry {
        time_ms: 1_764_300_000_123,
        actor: "một-cửa".into(),
        fields: vec!["full_name".into()],
        upstream_ms: -1,
        ..AuditEntry::default()
    };
    // Version 1's form is what it always was: a record written before version 2
    // keeps its bytes, so its hash still holds.
    assert_eq!(v1.version(), 1);
    assert_eq!(v1.canonical()[..8], 1_764_300_000_123_i64.to_be_bytes());
    let v2 = AuditEntry {
        disclosure: Some(Disclosure {
            legal_basis: "Luật Căn cước 2023".into(),
            withheld: true,
            mentions: vec![("father".into(), "k1:ab".into())],
        }),
        ..v1.clone()
    };
    let bytes = v2.canonical();
    assert_eq!((v2.version(), &bytes[..2]), (2, &[0xFF, 2][..]));
    assert_eq!(bytes[2..2 + v1.canonical().len()], v1.canonical()[..]);
    assert_eq!(AuditEntry::from_canonical(&bytes), Ok(v2.clone()));
    assert_ne!(
        chain_hash(&GENESIS, "gw", 1, &v1),
        chain_hash(&GENESIS, "gw", 1, &v2)
    );
    // A disclosure's facts are covered by the hash: a mention removed shows.
    let mut stripped = v2.clone();
    if let Some(d) = stripped.disclosure.as_mut() {
        d.mentions.clear();
    }
    assert_ne!(
        chain_hash(&GENESIS, "gw", 1, &stripped),
        chain_hash(&GENESIS, "gw", 1, &v2)
    );
    let mut unknown = bytes.clone();
    unknown[1] = 9;
    assert_eq!(
        AuditEntry::from_canonical(&unknown),
        Err(DecodeError::Version(9))
    );
    assert!(AuditEntry::from_canonical(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn any_change_to_a_record_changes_its_hash() {
    let entry = AuditEntry {
        time_ms: 1,
        fields: vec!["full_name".into()],
        outcome: "served".into(),
        ..AuditEntry::default()
    };
    let h = chain_hash(&GENESIS, "gw1", 1, &entry);
    let mut moved = entry.clone();
    moved.fields = vec!["full_name".into(), "date_of_birth".into()];
    assert_ne!(chain_hash(&GENESIS, "gw1", 1, &moved), h);
    // Field boundaries are part of the form: "ab","c" is not "a","bc".
    let a = AuditEntry {
        actor: "ab".into(),
        credential: "c".into(),
        ..entry.clone()
    };
    let b = AuditEntry {
        actor: "a".into(),
        credential: "bc".into(),
        ..entry.clone()
    };
    assert_ne!(a.canonical(), b.canonical());
    assert_ne!(
        chain_hash(&GENESIS, "gw1", 2, &entry),
        h,
        "the position counts"
    );
    assert_ne!(
        chain_hash(&GENESIS, "gw2", 1, &entry),
        h,
        "the chain counts"
    );
}

#[test]
fn subject_references_hide_the_key_and_depend_on_the_audit_key() {
    let k = SubjectKey::new("k1", b"audit secret");
    let r = k.reference("population.citizen", "001090012345");
    assert!(r.starts_with("k1:") && !r.contains("001090012345"));
    assert_eq!(r, k.reference("population.citizen", "001090012345"));
    assert_ne!(r, k.reference("business.enterprise", "001090012345"));
    assert_ne!(
        r,
        SubjectKey::new("k1", b"another").reference("population.citizen", "001090012345")
    );
}

#[test]
fn checkpoints_verify_with_the_signers_public_key_only() {
    let signer = Signer::from_seed("s1", &[7; 32]).expect("seed");
    let cp = signer.sign("gw1", 10, &[1; 32], 5);
    assert!(checkpoint_signed_by(&cp, &signer.public_key()));
    let other = Signer::from_seed("s2", &[8; 32]).expect("seed");
    assert!(!checkpoint_signed_by(&cp, &other.public_key()));
    let moved = Checkpoint { seq: 11, ..cp };
    assert!(!checkpoint_signed_by(&moved, &signer.public_key()));
}

#[test]
fn a_view_reads_the_filtered_fields_in_place_and_refuses_what_decoding_refuses() {
    let entry = AuditEntry {
        time_ms: 1_764_300_000_123,
        actor: "một-cửa".into(),
        officer_id: "canbo01".into(),
        dossier_id: "000.00.53.H48-251128-0001".into(),
        dataset: "population".into(),
        subject: "k1:aa".into(),
        outcome: "served".into(),
        fields: vec!["full_name".into(), "father".into()],
        upstream_ms: 12,
        detail: "d".into(),
        disclosure: Some(Disclosure {
            legal_basis: "basis".into(),
            withheld: false,
            mentions: vec![
                ("father".into(), "k1:bb".into()),
                ("mother".into(), "k1:cc".into()),
            ],
        }),
        ..AuditEntry::default()
    };
    let bytes = entry.canonical();
    let view = EntryView::parse(&bytes).expect("a view");
    assert_eq!(view.time_ms, entry.time_ms);
    assert_eq!(view.actor, entry.actor.as_bytes());
    assert_eq!(view.officer_id, b"canbo01");
    assert_eq!(view.dossier_id, entry.dossier_id.as_bytes());
    assert_eq!(
        (view.dataset, view.subject),
        (&b"population"[..], &b"k1:aa"[..])
    );
    assert_eq!(view.outcome, b"served");
    assert_eq!(
        view.mentions().collect::<Vec<_>>(),
        vec![&b"k1:bb"[..], &b"k1:cc"[..]]
    );
    let v1 = AuditEntry {
        disclosure: None,
        ..entry.clone()
    };
    let v1_bytes = v1.canonical();
    assert_eq!(
        EntryView::parse(&v1_bytes).expect("v1").mentions().count(),
        0
    );
    for cut in [1, 9, bytes.len() / 2, bytes.len() - 1] {
        assert!(EntryView::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(EntryView::parse(&longer).is_err());
    assert!(EntryView::parse(&[0xFF, 3, 0, 0]).is_err());
}

#[test]
fn short_references_depend_on_the_key_and_on_where_parts_divide() {
    let a = SubjectKey::new("k1", b"0123456789abcdef");
    let b = SubjectKey::new("k1", b"0123456789abcdeg");
    let parts: &[&[u8]] = &[
        b"misuse:sequential",
        b"land.parcel",
        b"00004-12-",
        &34u64.to_le_bytes(),
    ];
    assert_eq!(a.short(parts), a.short(parts));
    assert_ne!(
        a.short(parts),
        b.short(parts),
        "another audit key, another reference"
    );
    assert_ne!(
        a.short(&[b"ab", b"c"]),
        a.short(&[b"a", b"bc"]),
        "parts are length-prefixed"
    );
    let neighbours: Vec<u64> = (33..36u64)
        .map(|n| a.short(&[b"s", &n.to_le_bytes()]))
        .collect();
    assert!(neighbours[0] != neighbours[1] && neighbours[1] != neighbours[2]);
}
