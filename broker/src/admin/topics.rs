//! `/admin/v2/persistent/{tenant}/{namespace}`: list topics and partitioned
//! topics; per topic PUT (create), DELETE (`?force=true` disconnects its
//! clients), unload, and the partitions of a partitioned topic (PUT create
//! with a count body, POST grow, GET, DELETE).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Serialize;

use super::AdminState;
use super::error::{ApiResult, P, Q, topic_name};
use crate::resources::{namespace_name, parse_partitions};

type NsPath = P<(String, String)>;
type TopicPath = P<(String, String, String)>;

pub fn routes() -> Router<AdminState> {
    const T: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    Router::new()
        .route("/admin/v2/persistent/{tenant}/{namespace}", get(list))
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/partitioned",
            get(list_partitioned),
        )
        .route(T, put(create).delete(delete))
        .route(&format!("{T}/unload"), put(unload))
        .route(
            &format!("{T}/partitions"),
            put(create_partitioned)
                .post(update_partitions)
                .get(get_partitions)
                .delete(delete_partitioned),
        )
}

async fn list(State(s): State<AdminState>, P((t, ns)): NsPath) -> ApiResult<Json<Vec<String>>> {
    let ns = namespace_name(&t, &ns)?;
    Ok(Json(s.service.list_topics(&ns).await?))
}

async fn list_partitioned(
    State(s): State<AdminState>,
    P((t, ns)): NsPath,
) -> ApiResult<Json<Vec<String>>> {
    let ns = namespace_name(&t, &ns)?;
    if !s.service.namespace_exists(&ns).await? {
        return Err(crate::error::BrokerError::NamespaceNotFound(ns.to_string()).into());
    }
    Ok(Json(s.service.list_partitioned_topics(&ns).await?))
}

async fn create(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<StatusCode> {
    s.service
        .create_topic(&topic_name(&t, &ns, &topic)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
    q: Q,
) -> ApiResult<StatusCode> {
    s.service
        .delete_topic(&topic_name(&t, &ns, &topic)?, q.force()?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unload(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<StatusCode> {
    s.service.unload(&topic_name(&t, &ns, &topic)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_partitioned(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let n = parse_partitions(&body)?;
    s.service.create_partitioned_topic(&name, n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_partitions(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let n = parse_partitions(&body)?;
    s.service.update_partitions(&name, n).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct PartitionedMetadata {
    partitions: u32,
}

async fn get_partitions(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<PartitionedMetadata>> {
    let name = topic_name(&t, &ns, &topic)?;
    if !s.service.namespace_exists(&name.namespace).await? {
        return Err(
            crate::error::BrokerError::NamespaceNotFound(name.namespace.to_string()).into(),
        );
    }
    Ok(Json(PartitionedMetadata {
        partitions: s.service.partitions(&name).await?,
    }))
}

async fn delete_partitioned(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
    q: Q,
) -> ApiResult<StatusCode> {
    s.service
        .delete_partitioned_topic(&topic_name(&t, &ns, &topic)?, q.force()?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
