//! The simulated national public-service portal: it signs the assertions of a citizen's
//! identity that the gateway's `GET /v1/me/access-report` takes, with the demo portal's
//! Ed25519 key. The demo registers the public half on its `demo-portal` consumer. Demo
//! only, like the demo's tokens: a real portal keeps its private key to itself.

/// The demo portal's private key (PKCS#8 PEM). Its public key is in
/// `config/demo/consumers.toml`.
pub const DEMO_PORTAL_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMpFKwY+vh2nckfUIEd1ERMCNFy8UXtxCDlV0Hgk5kZr
-----END PRIVATE KEY-----
";
/// The key's id, as registered.
pub const DEMO_PORTAL_KID: &str = "demo-portal-1";
/// The portal's `iss`.
pub const DEMO_PORTAL_ISSUER: &str = "https://dichvucong.gov.vn";

/// An assertion that `personal_id` is the citizen, valid for `lifetime_s` from `now_s`,
/// with a fresh `jti`. The caller installs the JWT crypto provider first.
pub fn assertion(personal_id: &str, now_s: i64, lifetime_s: i64) -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(DEMO_PORTAL_KID.into());
    let key = jsonwebtoken::EncodingKey::from_ed_pem(DEMO_PORTAL_KEY_PEM.as_bytes())
        .map_err(|e| e.to_string())?;
    let claims = serde_json::json!({
        "sub": personal_id,
        "iss": DEMO_PORTAL_ISSUER,
        "aud": "lienthong",
        "iat": now_s,
        "exp": now_s + lifetime_s,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}
