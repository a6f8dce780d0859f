//! `/admin/v2/tenants`: list, and per tenant PUT (create), POST (update),
//! GET and DELETE (`?force=true` deletes its namespaces and topics too).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::AdminState;
use super::error::{ApiResult, P, Q};
use crate::resources::{CLUSTER, TenantInfo, parse_json};

pub fn routes() -> Router<AdminState> {
    Router::new().route("/admin/v2/tenants", get(list)).route(
        "/admin/v2/tenants/{tenant}",
        get(get_tenant).put(create).post(update).delete(delete),
    )
}

/// The body of a create or update; an empty body is this cluster only.
fn tenant_info(body: &Bytes) -> ApiResult<TenantInfo> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(TenantInfo {
            admin_roles: vec![],
            allowed_clusters: vec![CLUSTER.into()],
        });
    }
    Ok(parse_json(body, "tenant info")?)
}

async fn list(State(s): State<AdminState>) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.service.list_tenants().await?))
}

async fn get_tenant(State(s): State<AdminState>, P(t): P<String>) -> ApiResult<Json<TenantInfo>> {
    Ok(Json(s.service.get_tenant(&t).await?))
}

async fn create(
    State(s): State<AdminState>,
    P(t): P<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    s.service.create_tenant(&t, &tenant_info(&body)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update(
    State(s): State<AdminState>,
    P(t): P<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    s.service.update_tenant(&t, &tenant_info(&body)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(s): State<AdminState>, P(t): P<String>, q: Q) -> ApiResult<StatusCode> {
    s.service.delete_tenant(&t, q.force()?).await?;
    Ok(StatusCode::NO_CONTENT)
}
