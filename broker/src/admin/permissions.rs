//! `/admin/v2/namespaces/{tenant}/{namespace}/permissions`: a namespace's
//! grants, with Pulsar's paths and JSON. GET answers `{role: [actions]}`;
//! POST `…/permissions/{role}` with a JSON array of actions (`["produce",
//! "consume"]`) sets that role's grant; DELETE removes it.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::AdminState;
use super::error::{ApiError, ApiResult, P};
use crate::auth::AuthAction;
use crate::resources::{namespace_name, parse_json};

pub fn routes() -> Router<AdminState> {
    const N: &str = "/admin/v2/namespaces/{tenant}/{namespace}/permissions";
    Router::new()
        .route(N, get(list))
        .route(&format!("{N}/{{role}}"), post(grant).delete(revoke))
}

async fn list(
    State(s): State<AdminState>,
    P((t, ns)): P<(String, String)>,
) -> ApiResult<Json<BTreeMap<String, BTreeSet<AuthAction>>>> {
    let ns = namespace_name(&t, &ns)?;
    let policies = s.service.get_policies(&ns).await?;
    Ok(Json(policies.auth_policies.namespace_auth))
}

fn check_role(role: &str) -> ApiResult<String> {
    let role = role.trim();
    if role.is_empty() {
        return Err(ApiError::BadRequest(
            "invalid path parameter 'role': empty".into(),
        ));
    }
    Ok(role.to_string())
}

async fn grant(
    State(s): State<AdminState>,
    P((t, ns, role)): P<(String, String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let role = check_role(&role)?;
    let actions: BTreeSet<AuthAction> = parse_json(&body, "actions")?;
    s.service
        .update_policies(&ns, |p| {
            p.auth_policies
                .namespace_auth
                .insert(role.clone(), actions.clone());
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(
    State(s): State<AdminState>,
    P((t, ns, role)): P<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let role = check_role(&role)?;
    s.service
        .update_policies(&ns, |p| {
            p.auth_policies.namespace_auth.remove(&role);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
