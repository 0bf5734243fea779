//! Purpose binding: under a grant with `binding = "declared"`, a call must name an open
//! dossier that its consumer declared, for the call's procedure, with the key among its
//! subjects. Checked right after authorization and before the quota, so a refused call
//! reaches neither the cache nor the provider. The refusal names the dossier, or says the
//! key is not among its subjects; it never echoes the key.

use super::policy::{Binding, Grant};
use crate::domain::context::CallContext;
use crate::domain::error::{ErrorCode, LookupError};
use crate::dossiers::Register;

/// Whether the call is bound to its purpose as the grant requires. `subject` is the key's
/// keyed reference (the audit record's subject), compared with the dossier's references;
/// `older` gives its references under the older subject keys still held, for a dossier
/// declared before a rotation.
pub async fn bind(
    register: &Register,
    grant: &Grant,
    consumer: &str,
    context: &CallContext,
    (subject, older): (&str, impl FnOnce() -> Vec<String>),
    now_ms: i64,
) -> Result<(), LookupError> {
    if grant.binding == Binding::Pattern {
        return Ok(());
    }
    let id = context.dossier_id();
    let refused = |message: String| Err(LookupError::new(ErrorCode::PurposeNotBound, message));
    let dossier = match register.cached(consumer, id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return refused(format!(
                "dossier {id} was not declared by this consumer (POST /v1/dossiers), and the \
                 grant on {} needs a declared dossier",
                grant.dataset
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "the dossier register cannot be read; call refused");
            return Err(LookupError::new(
                ErrorCode::RegisterUnavailable,
                "the dossier register cannot be read, so the call's purpose cannot be checked",
            ));
        }
    };
    if !dossier.open_at(now_ms) {
        return refused(format!(
            "dossier {id} is {}: lookups under it have ended",
            dossier.status_at(now_ms).as_str()
        ));
    }
    if dossier.procedure_code != context.procedure_code() {
        return refused(format!(
            "dossier {id} was declared for procedure {}, not {}",
            dossier.procedure_code,
            context.procedure_code()
        ));
    }
    if !dossier.holds(subject) && !older().iter().any(|r| dossier.holds(r)) {
        return refused(format!(
            "the key is not among the subjects of dossier {id}: add it with POST \
             /v1/dossiers/{id}/subjects if the dossier concerns it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dossiers::{DossierSettings, NewDossier};

    fn grant(binding: Binding) -> Grant {
        Grant {
            id: "g-test".into(),
            consumer: "c".into(),
            dataset: "population.citizen".into(),
            procedures: vec![],
            fields: vec![],
            modes: vec![],
            legal_basis: String::new(),
            valid_from: None,
            valid_until: None,
            allow_cache_bypass: false,
            quota: None,
            disabled: false,
            binding,
            misuse: Default::default(),
            withheld: false,
        }
    }

    #[tokio::test]
    async fn an_unreachable_register_refuses_a_declared_call_and_never_serves_it_unchecked() {
        let register = Register::in_memory(DossierSettings {
            cache_ttl: std::time::Duration::ZERO,
            ..DossierSettings::default()
        })
        .await
        .expect("register");
        let now = crate::audit::record::now_ms();
        register
            .declare(
                NewDossier {
                    consumer: "c".into(),
                    dossier_id: "000.00.53.H48-251130-0001".into(),
                    procedure_code: "1.001612".into(),
                    officer_id: String::new(),
                    received_ms: now,
                    subjects: vec![("population.citizen".into(), "k1:aa".into())],
                },
                now,
            )
            .await
            .expect("declared");
        let context = CallContext::for_tests("1.001612", "000.00.53.H48-251130-0001", "o");
        let declared = grant(Binding::Declared);
        let none = Vec::new;
        assert!(
            bind(&register, &declared, "c", &context, ("k1:aa", none), now)
                .await
                .is_ok()
        );
        let other = bind(&register, &declared, "c", &context, ("k1:bb", none), now).await;
        assert_eq!(other.map_err(|e| e.code), Err(ErrorCode::PurposeNotBound));
        // After a subject-key rotation the key's reference is new, and its reference under
        // the older key (which the dossier was declared with) binds it.
        let rotated = bind(
            &register,
            &declared,
            "c",
            &context,
            ("k2:cc", || vec!["k1:aa".to_owned()]),
            now,
        );
        assert!(rotated.await.is_ok());
        register.shut().await;
        let down = bind(&register, &declared, "c", &context, ("k1:aa", none), now)
            .await
            .expect_err("refused");
        assert_eq!(down.code, ErrorCode::RegisterUnavailable);
        // A grant bound by pattern does not ask the register.
        assert!(
            bind(
                &register,
                &grant(Binding::Pattern),
                "c",
                &context,
                ("k1:zz", none),
                now
            )
            .await
            .is_ok()
        );
    }
}
