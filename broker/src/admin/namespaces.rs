//! `/admin/v2/namespaces`: list a tenant's namespaces; per namespace PUT
//! (create, optional policies body), GET (policies), DELETE (`?force=true`
//! deletes its topics too), its topics; and the retention, message TTL
//! and backlog quota policies one at a time.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::AdminState;
use super::error::{ApiError, ApiResult, P, Q};
use crate::resources::{
    BacklogQuota, Policies, RetentionPolicies, invalid_field, namespace_name, parse_integer,
    parse_json,
};

type NsPath = P<(String, String)>;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v2/namespaces/{tenant}", get(list))
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}",
            get(get_policies).put(create).delete(delete),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/topics",
            get(topics),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/retention",
            get(get_retention)
                .post(set_retention)
                .delete(remove_retention),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/messageTTL",
            get(get_ttl).post(set_ttl).delete(remove_ttl),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/backlogQuotaMap",
            get(get_quotas),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/backlogQuota",
            axum::routing::post(set_quota).delete(remove_quota),
        )
}

fn is_blank(body: &Bytes) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

async fn list(State(s): State<AdminState>, P(t): P<String>) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(s.service.list_namespaces(&t).await?))
}

async fn get_policies(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<Policies>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json(s.service.get_policies(&ns).await?))
}

async fn create(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let policies = if is_blank(&body) {
        Policies::default()
    } else {
        parse_json(&body, "policies")?
    };
    s.service.create_namespace(&ns, policies).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(s): State<AdminState>, P((t, ns)): NsPath, q: Q) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    s.service.delete_namespace(&ns, q.force()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn topics(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<Json<Vec<String>>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json(s.service.list_topics(&ns).await?))
}

async fn get_retention(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<Option<RetentionPolicies>>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json(s.service.get_policies(&ns).await?.retention_policies))
}

async fn set_retention(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let r: RetentionPolicies = parse_json(&body, "retention policies")?;
    s.service
        .update_policies(&ns, |p| {
            p.retention_policies = Some(r.clone());
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_retention(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    s.service
        .update_policies(&ns, |p| {
            p.retention_policies = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_ttl(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<Json<Option<i32>>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json(
        s.service.get_policies(&ns).await?.message_ttl_in_seconds,
    ))
}

async fn set_ttl(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let ttl = parse_integer(&body, "message_ttl_in_seconds")?;
    let ttl = i32::try_from(ttl)
        .map_err(|_| invalid_field("message_ttl_in_seconds", format!("{ttl} is out of range")))?;
    s.service
        .update_policies(&ns, |p| {
            p.message_ttl_in_seconds = Some(ttl);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_ttl(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    s.service
        .update_policies(&ns, |p| {
            p.message_ttl_in_seconds = None;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_quotas(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<std::collections::BTreeMap<String, BacklogQuota>>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json(s.service.get_policies(&ns).await?.backlog_quota_map))
}

/// `?backlogQuotaType=` (default `destination_storage`, as in Pulsar).
fn quota_type(q: &Q) -> ApiResult<String> {
    let t =
        q.0.get("backlogQuotaType")
            .map_or("destination_storage", |s| s.as_str());
    match t {
        "destination_storage" | "message_age" => Ok(t.to_string()),
        other => Err(ApiError::BadRequest(format!(
            "invalid query parameter 'backlogQuotaType': expected destination_storage or message_age, got {other:?}"
        ))),
    }
}

async fn set_quota(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    q: Q,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let kind = quota_type(&q)?;
    let quota: BacklogQuota = parse_json(&body, "backlog quota")?;
    s.service
        .update_policies(&ns, |p| {
            p.backlog_quota_map.insert(kind.clone(), quota.clone());
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_quota(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    q: Q,
) -> ApiResult<StatusCode> {
    let ns = namespace_name(&t, &ns)?;
    let kind = quota_type(&q)?;
    s.service
        .update_policies(&ns, |p| {
            p.backlog_quota_map.remove(&kind);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
