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
/// keyed reference (the audit record's subject), compared with the dossier's references.
pub async fn bind(
    register: &Register,
    grant: &Grant,
    consumer: &str,
    context: &CallContext,
    subject: &str,
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
    if !dossier.holds(subject) {
        return refused(format!(
            "the key is not among the subjects of dossier {id}: add it with POST \
             /v1/dossiers/{id}/subjects if the dossier concerns it"
        ));
    }
    Ok(())
}
