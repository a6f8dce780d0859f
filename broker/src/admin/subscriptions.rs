//! Subscriptions of a persistent topic: list, PUT (create; optional body
//! message id, default latest), DELETE (`?force=true` disconnects its
//! consumers), reset cursor (to a publish time or a message id), skip N,
//! skip all, and expire messages older than N seconds (one subscription or
//! all). On a partitioned topic each applies to every partition.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::AdminState;
use super::error::{ApiResult, P, parse_u64, topic_name};
use crate::resources::{MessageIdBody, StartAt, parse_json};

type TopicPath = P<(String, String, String)>;
type SubPath = P<(String, String, String, String)>;
type SubArgPath = P<(String, String, String, String, String)>;

pub fn routes() -> Router<AdminState> {
    const T: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";
    const S: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}/subscription/{sub}";
    Router::new()
        .route(&format!("{T}/subscriptions"), get(list))
        .route(S, put(create).delete(delete))
        .route(
            &format!("{S}/resetcursor/{{timestamp}}"),
            post(reset_to_time),
        )
        .route(&format!("{S}/resetcursor"), post(reset_to_id))
        .route(&format!("{S}/skip/{{count}}"), post(skip))
        .route(&format!("{S}/skip_all"), post(skip_all))
        .route(&format!("{S}/expireMessages/{{seconds}}"), post(expire))
        .route(
            &format!("{T}/all_subscription/expireMessages/{{seconds}}"),
            post(expire_all),
        )
}

fn blank(body: &Bytes) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

async fn list(
    State(s): State<AdminState>,
    P((t, ns, topic)): TopicPath,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(
        s.service
            .list_subscriptions(&topic_name(&t, &ns, &topic)?)
            .await?,
    ))
}

async fn create(
    State(s): State<AdminState>,
    P((t, ns, topic, sub)): SubPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let start = if blank(&body) {
        StartAt::Latest
    } else {
        parse_json::<MessageIdBody>(&body, "message id")?.start()?
    };
    s.service.create_subscription(&name, &sub, start).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(
    State(s): State<AdminState>,
    P((t, ns, topic, sub)): SubPath,
    q: super::error::Q,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    s.service
        .delete_subscription(&name, &sub, q.force()?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_to_time(
    State(s): State<AdminState>,
    P((t, ns, topic, sub, ts)): SubArgPath,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let ts = parse_u64("timestamp", &ts)?;
    s.service.reset_cursor_to_time(&name, &sub, ts).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reset_to_id(
    State(s): State<AdminState>,
    P((t, ns, topic, sub)): SubPath,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let id: MessageIdBody = parse_json(&body, "message id")?;
    let partition = u32::try_from(id.partition_index).ok();
    s.service
        .reset_cursor(&name, &sub, id.start()?, id.is_excluded, partition)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn skip(
    State(s): State<AdminState>,
    P((t, ns, topic, sub, n)): SubArgPath,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let n = parse_u64("count", &n)?;
    s.service.skip(&name, &sub, n).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn skip_all(
    State(s): State<AdminState>,
    P((t, ns, topic, sub)): SubPath,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    s.service.skip_all(&name, &sub).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn expire(
    State(s): State<AdminState>,
    P((t, ns, topic, sub, secs)): SubArgPath,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let secs = parse_u64("seconds", &secs)?;
    s.service.expire_messages(&name, &sub, secs).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_all(
    State(s): State<AdminState>,
    P((t, ns, topic, secs)): SubPath,
) -> ApiResult<StatusCode> {
    let name = topic_name(&t, &ns, &topic)?;
    let secs = parse_u64("seconds", &secs)?;
    s.service.expire_messages_all(&name, secs).await?;
    Ok(StatusCode::NO_CONTENT)
}
