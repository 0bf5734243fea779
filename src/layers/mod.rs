//! The steps of the request path, one concern per file, in the order the core calls them:
//! [`authenticate`] → [`validate`] → [`authorize`] (on [`policy`]) → [`bind`] → [`quota`] →
//! [`fetch`] (the [`cache`], then the upstream guard and connector); [`claims`] answers
//! verify calls. Each is a plain function or a small type; the core's `Gateway::lookup`
//! holds the order and says why each step sits where it does.

pub mod accounts;
pub mod assertion;
pub mod authenticate;
pub mod authorize;
pub mod bind;
pub mod cache;
pub mod claims;
pub mod fetch;
pub mod misuse;
pub mod policy;
pub mod quota;
pub mod validate;
