//! Errors of the admin API: an HTTP status and `{"reason": "..."}`, as
//! Pulsar's REST API answers; plus the extractors and parsers that turn
//! malformed paths, queries and bodies into 400s naming what was wrong.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_common::names::TopicName;

use crate::error::BrokerError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or bad ones.
    #[error("{0}")]
    Unauthorized(String),
    /// Good credentials of a role that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct Reason<'a> {
    reason: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // Logged here, once; user mistakes are not logged.
            tracing::warn!(%status, reason = %self, "admin request failed");
        }
        let reason = self.to_string();
        (status, Json(Reason { reason: &reason })).into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let text = e.to_string();
        match e {
            BrokerError::TopicNotFound(_)
            | BrokerError::NamespaceNotFound(_)
            | BrokerError::TenantNotFound(_)
            | BrokerError::SubscriptionNotFound(_)
            | BrokerError::ConsumerNotFound(_) => ApiError::NotFound(text),
            BrokerError::InvalidTopicName(_) | BrokerError::InvalidArgument(_) => {
                ApiError::BadRequest(text)
            }
            BrokerError::AlreadyExists(_)
            | BrokerError::Conflict(_)
            | BrokerError::ProducerBusy(_)
            | BrokerError::ConsumerBusy(_)
            | BrokerError::ConsumerAssign(_)
            | BrokerError::ProducerFenced(_) => ApiError::Conflict(text),
            BrokerError::PreconditionFailed(_) => ApiError::PreconditionFailed(text),
            BrokerError::NotAuthorized(_) => ApiError::Forbidden(text),
            BrokerError::OperationNotAllowed(_) | BrokerError::NotAllowed(_) => {
                ApiError::MethodNotAllowed(text)
            }
            BrokerError::ServiceNotReady(_) => ApiError::Unavailable(text),
            BrokerError::Persistence(_)
            | BrokerError::Metadata(_)
            | BrokerError::Checksum(_)
            | BrokerError::Unknown(_) => ApiError::Internal(text),
        }
    }
}

/// Path parameters; a path that does not decode is a 400 with a reason.
pub struct P<T>(pub T);

impl<S, T> FromRequestParts<S> for P<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| P(t))
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters as text; each is parsed by the handler that uses it.
pub struct Q(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Q {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Q(q))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
    }
}

impl Q {
    /// A boolean query parameter (`true`/`false`), `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.0.get(name).map(|v| v.trim()) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") || v.is_empty() => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::BadRequest(format!(
                "invalid query parameter '{name}': expected true or false, got {v:?}"
            ))),
        }
    }

    /// `?force=true`.
    pub fn force(&self) -> ApiResult<bool> {
        self.flag("force", false)
    }
}

/// A non-negative integer path parameter.
pub fn parse_u64(field: &str, value: &str) -> ApiResult<u64> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid path parameter '{field}': expected a non-negative integer, got {value:?}"
        ))
    })
}

/// The topic `persistent://{tenant}/{namespace}/{topic}` named by a path.
pub fn topic_name(tenant: &str, namespace: &str, topic: &str) -> ApiResult<TopicName> {
    TopicName::parse(&format!("persistent://{tenant}/{namespace}/{topic}"))
        .map_err(|e| ApiError::BadRequest(format!("invalid topic name: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_map_to_statuses() {
        let cases = [
            (BrokerError::TenantNotFound("t".into()), 404),
            (BrokerError::AlreadyExists("x".into()), 409),
            (BrokerError::Conflict("x".into()), 409),
            (BrokerError::PreconditionFailed("x".into()), 412),
            (BrokerError::InvalidArgument("x".into()), 400),
            (BrokerError::InvalidTopicName("x".into()), 400),
            (BrokerError::OperationNotAllowed("x".into()), 405),
            (BrokerError::ServiceNotReady("x".into()), 503),
            (BrokerError::Metadata("x".into()), 500),
            (BrokerError::NotAuthorized("x".into()), 403),
        ];
        for (e, status) in cases {
            assert_eq!(ApiError::from(e).status().as_u16(), status);
        }
    }

    #[test]
    fn query_flags_and_numbers() {
        let q = Q(HashMap::from([
            ("force".to_string(), "true".to_string()),
            ("perPartition".to_string(), "nope".to_string()),
        ]));
        assert!(q.force().unwrap());
        assert!(!q.flag("absent", false).unwrap());
        assert_eq!(
            q.flag("perPartition", true).unwrap_err().to_string(),
            "invalid query parameter 'perPartition': expected true or false, got \"nope\""
        );
        assert_eq!(parse_u64("n", "12").unwrap(), 12);
        assert!(
            parse_u64("n", "-1")
                .unwrap_err()
                .to_string()
                .starts_with("invalid path parameter 'n'")
        );
        assert!(topic_name("public", "default", "a b").is_ok());
        assert!(topic_name("pub lic", "default", "x").is_err());
    }
}
