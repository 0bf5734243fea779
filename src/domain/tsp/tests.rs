use super::*;

fn hash(text: &str) -> [u8; 32] {
    let mut h = [0; 32];
    h.copy_from_slice(digest(&SHA256, text.as_bytes()).as_ref());
    h
}

#[test]
fn a_token_checks_against_its_authority_and_its_digest_only() {
    let tsa = Authority::generate("test TSA").expect("authority");
    let h = hash("checkpoint 1");
    let reply = tsa
        .reply(&request(&h, 42), "20261201031500Z")
        .expect("reply");
    let token = token_of_reply(&reply).expect("granted");
    let stamped = check_token(&token, &tsa.certificate, &h).expect("checks");
    assert_eq!(stamped.gen_time, "20261201031500Z");

    // Another digest, another authority, one flipped byte: each refused.
    assert!(check_token(&token, &tsa.certificate, &hash("checkpoint 2")).is_err());
    let other = Authority::generate("another TSA").expect("authority");
    let err = check_token(&token, &other.certificate, &h).unwrap_err();
    assert!(err.contains("signature"), "{err}");
    // A byte of the stamped time (in the signed content), and of the signature.
    let time_at = token
        .windows(15)
        .position(|w| w == b"20261201031500Z")
        .expect("the time in the token");
    for at in [time_at + 11, token.len() - 5] {
        let mut bad = token.clone();
        bad[at] ^= 0x01;
        assert!(
            check_token(&bad, &tsa.certificate, &h).is_err(),
            "byte {at}"
        );
    }
    assert!(token_of_reply(&[0x30, 0x03, 0x02, 0x01]).is_err());
}

#[test]
fn a_refusal_is_named() {
    // PKIStatus 2: rejection.
    let reply = seq(&[&seq(&[&uint(2)])]);
    let err = token_of_reply(&reply).unwrap_err();
    assert!(err.contains("refused"), "{err}");
}
