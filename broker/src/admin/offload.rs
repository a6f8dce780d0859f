//! The cold tier's admin paths.
//!
//! Namespace (Pulsar's): `offloadPolicies` (GET, POST, DELETE; also
//! `removeOffloadPolicies`), `offloadThreshold` (GET, PUT bytes),
//! `offloadThresholdInSeconds` (GET, PUT), `offloadDeletionLagMs` (GET, PUT,
//! DELETE). Topic (Pulsar's): `PUT …/offload` with a message id, `GET
//! …/offload` for the status. Strata's own: `POST …/offload/scrub`,
//! `GET …/usage` of a topic and of a namespace.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use strata_offloader::tier::{ScrubResult, TopicUsage};

use super::AdminState;
use super::error::{ApiResult, P, topic_name};
use crate::resources::{
    MessageIdBody, NamespaceUsage, OffloadPolicies, OffloadProcessStatus, Policies, invalid_field,
    namespace_name, parse_integer, parse_json,
};

type NsPath = P<(String, String)>;
type TopicPath = P<(String, String, String)>;

pub fn routes() -> Router<AdminState> {
    const N: &str = "/admin/v2/namespaces/{tenant}/{namespace}";
    const T: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    Router::new()
        .route(
            &format!("{N}/offloadPolicies"),
            get(get_policies).post(set_policies).delete(remove_policies),
        )
        .route(
            &format!("{N}/removeOffloadPolicies"),
            delete(remove_policies),
        )
        .route(
            &format!("{N}/offloadThreshold"),
            get(get_threshold).put(set_threshold),
        )
        .route(
            &format!("{N}/offloadThresholdInSeconds"),
            get(get_threshold_secs).put(set_threshold_secs),
        )
        .route(
            &format!("{N}/offloadDeletionLagMs"),
            get(get_lag).put(set_lag).delete(remove_lag),
        )
        .route(&format!("{N}/usage"), get(namespace_usage))
        .route(&format!("{T}/offload"), get(status).put(trigger))
        .route(&format!("{T}/offload/scrub"), post(scrub))
        .route(&format!("{T}/usage"), get(topic_usage))
}

async fn policies(s: &AdminState, t: &str, ns: &str) -> ApiResult<Policies> {
    Ok(s.service.get_policies(&namespace_name(t, ns)?).await?)
}

async fn update(
    s: &AdminState,
    t: &str,
    ns: &str,
    change: impl Fn(&mut Policies),
) -> ApiResult<StatusCode> {
    s.service
        .update_policies(&namespace_name(t, ns)?, |p| {
            change(p);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_policies(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<Option<OffloadPolicies>>> {
    Ok(Json(policies(&s, &t, &ns).await?.offload_policies))
}

async fn set_policies(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let o: OffloadPolicies = parse_json(&body, "offload policies")?;
    o.validate()
        .map_err(|(field, reason)| invalid_field(&field, reason))?;
    update(&s, &t, &ns, |p| p.offload_policies = Some(o.clone())).await
}

async fn remove_policies(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<StatusCode> {
    update(&s, &t, &ns, |p| p.offload_policies = None).await
}

/// A threshold or lag body: an integer >= -1.
fn setting(body: &[u8], field: &str) -> ApiResult<i64> {
    let v = parse_integer(body, field)?;
    if v < -1 {
        return Err(invalid_field(field, format!("must be >= -1, got {v}")).into());
    }
    Ok(v)
}

async fn get_threshold(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<Json<i64>> {
    let p = policies(&s, &t, &ns).await?;
    Ok(Json(
        p.offload_policies
            .and_then(|o| o.managed_ledger_offload_threshold_in_bytes)
            .unwrap_or(p.offload_threshold),
    ))
}

async fn set_threshold(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = setting(&body, "offload_threshold")?;
    update(&s, &t, &ns, |p| {
        p.offload_threshold = v;
        // As Pulsar: the namespace field and the policies' agree.
        if let Some(o) = &mut p.offload_policies {
            o.managed_ledger_offload_threshold_in_bytes = Some(v);
        }
    })
    .await
}

async fn get_threshold_secs(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<i64>> {
    let p = policies(&s, &t, &ns).await?;
    Ok(Json(
        p.offload_policies
            .and_then(|o| o.managed_ledger_offload_threshold_in_seconds)
            .unwrap_or(p.offload_threshold_in_seconds),
    ))
}

async fn set_threshold_secs(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = setting(&body, "offload_threshold_in_seconds")?;
    update(&s, &t, &ns, |p| {
        p.offload_threshold_in_seconds = v;
        if let Some(o) = &mut p.offload_policies {
            o.managed_ledger_offload_threshold_in_seconds = Some(v);
        }
    })
    .await
}

async fn get_lag(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<Json<Option<i64>>> {
    let p = policies(&s, &t, &ns).await?;
    Ok(Json(
        p.offload_policies
            .and_then(|o| o.managed_ledger_offload_deletion_lag_in_millis)
            .or(p.offload_deletion_lag_ms),
    ))
}

async fn set_lag(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = setting(&body, "offload_deletion_lag_ms")?;
    update(&s, &t, &ns, |p| {
        p.offload_deletion_lag_ms = Some(v);
        if let Some(o) = &mut p.offload_policies {
            o.managed_ledger_offload_deletion_lag_in_millis = Some(v);
        }
    })
    .await
}

async fn remove_lag(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<StatusCode> {
    update(&s, &t, &ns, |p| {
        p.offload_deletion_lag_ms = None;
        if let Some(o) = &mut p.offload_policies {
            o.managed_ledger_offload_deletion_lag_in_millis = None;
        }
    })
    .await
}

async fn namespace_usage(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<NamespaceUsage>> {
    Ok(Json(
        s.service.namespace_usage(&namespace_name(&t, &ns)?).await?,
    ))
}

async fn trigger(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let id: MessageIdBody = parse_json(&body, "message id")?;
    s.service.trigger_offload(&name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<OffloadProcessStatus>> {
    let name = topic_name(&t, &ns, &topic)?;
    Ok(Json(s.service.offload_status(&name).await?))
}

async fn scrub(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<Vec<ScrubResult>>> {
    let name = topic_name(&t, &ns, &topic)?;
    Ok(Json(s.service.scrub(&name).await?))
}

async fn topic_usage(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<TopicUsage>> {
    let name = topic_name(&t, &ns, &topic)?;
    Ok(Json(s.service.topic_usage(&name).await?))
}
