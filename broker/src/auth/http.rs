//! The admin REST API's gate: [`required_access`] says what each path and
//! method needs, [`admin_guard`] (an axum middleware in front of every
//! route) checks the `Authorization: Bearer` token (or, with the tls
//! provider and no such header, the HTTPS connection's client certificate)
//! and the role.
//!
//! No credentials or bad ones: 401 with a reason (and `WWW-Authenticate:
//! Bearer`); a role that may not do this: 403 with a reason.
//! `/admin/v2/brokers/health` and `/metrics` stay open, so probes and
//! Prometheus need no token (the metrics name topics and namespaces, so a
//! deployment that must hide those keeps the admin port private).
//!
//! What needs what (superusers may do everything):
//! - clusters, the tenant list, creating / updating / deleting tenants:
//!   superusers;
//! - reading a tenant, its namespaces, a namespace's policies and
//!   permissions, every change to a namespace, topic or partitioned topic
//!   (create, delete, unload, partitions, offload): the tenant's admins;
//! - listing a namespace's topics and reading a topic (stats, internal
//!   stats, last message id, partitions, offload status, usage): the
//!   tenant's admins or a role with `produce` or `consume` on the namespace;
//! - a topic's subscriptions (list, create, delete, reset, skip, expire):
//!   the tenant's admins or a role with `consume`, as in Pulsar.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strata_common::names::{NamespaceName, TopicName};
use tracing::debug;

use super::{Access, Need, Operation};
use crate::admin::{AdminState, ApiError};
use crate::tls::TlsConnectInfo;

/// What a request of `method` on `path` needs.
pub fn required_access(method: &Method, path: &str) -> Access {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let read = method == Method::GET || method == Method::HEAD;
    let namespace = |t: &str, ns: &str, topic: Option<&str>, need: Need| {
        let Ok(ns_name) = NamespaceName::parse(&format!("{t}/{ns}")) else {
            return Access::TenantAdmin(t.to_string());
        };
        let topic = match topic.map(|x| TopicName::parse(&format!("persistent://{t}/{ns}/{x}"))) {
            None => None,
            Some(Ok(name)) => Some(name),
            Some(Err(_)) => return Access::TenantAdmin(t.to_string()),
        };
        Access::Namespace {
            ns: ns_name,
            topic,
            need,
        }
    };
    match s.as_slice() {
        ["metrics"] | ["admin", "v2", "brokers", "health"] => Access::Open,
        ["admin", "v2", "clusters", ..] | ["admin", "v2", "tenants"] => Access::Superuser,
        ["admin", "v2", "tenants", t] if read => Access::TenantAdmin(t.to_string()),
        ["admin", "v2", "tenants", ..] => Access::Superuser,
        ["admin", "v2", "namespaces", t, ns, "topics"] if read => {
            namespace(t, ns, None, Need::Lookup)
        }
        ["admin", "v2", "namespaces", t, ..] => Access::TenantAdmin(t.to_string()),
        ["admin", "v2", "persistent", t, ns]
        | ["admin", "v2", "persistent", t, ns, "partitioned"]
            if read =>
        {
            namespace(t, ns, None, Need::Lookup)
        }
        ["admin", "v2", "persistent", t, ns, topic, rest @ ..] => match rest.first() {
            Some(&("subscription" | "subscriptions" | "all_subscription")) => {
                namespace(t, ns, Some(topic), Need::Consume)
            }
            Some(_) if read => namespace(t, ns, Some(topic), Need::Lookup),
            _ => Access::TenantAdmin(t.to_string()),
        },
        ["admin", "v2", "persistent", t, ..] => Access::TenantAdmin(t.to_string()),
        _ => Access::Authenticated,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The middleware: authenticates and authorizes every admin request when
/// authentication is on.
pub async fn admin_guard(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let service = &state.service;
    if !service.auth.authentication_enabled() {
        return next.run(req).await;
    }
    let access = required_access(req.method(), req.uri().path());
    if access == Access::Open {
        return next.run(req).await;
    }
    let metrics = &service.metrics.auth;
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    // Present on the HTTPS port only (see `crate::admin`).
    let cert_role = req
        .extensions()
        .get::<ConnectInfo<TlsConnectInfo>>()
        .and_then(|c| c.0.cert_role.as_deref());
    let identity = match service.auth.authenticate_http(header, cert_role) {
        Ok(id) => id,
        Err(e) => {
            metrics.failed(&e);
            debug!(method = %req.method(), path = %req.uri().path(), error = %e, "admin request not authenticated");
            let mut resp =
                ApiError::Unauthorized(format!("authentication failed: {e}")).into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    };
    metrics.successes.inc();
    let role = identity.as_ref().map(|i| i.role.as_str());
    if let Err(e) = service.authorize(role, &access, Operation::Admin).await {
        debug!(method = %req.method(), path = %req.uri().path(), error = %e, "admin request refused");
        return ApiError::from(e).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: &str, n: &str, topic: Option<&str>, need: Need) -> Access {
        Access::Namespace {
            ns: NamespaceName::parse(&format!("{t}/{n}")).unwrap(),
            topic: topic.map(|x| TopicName::parse(&format!("persistent://{t}/{n}/{x}")).unwrap()),
            need,
        }
    }

    #[test]
    fn every_path_needs_what_its_operation_needs() {
        let get = Method::GET;
        let put = Method::PUT;
        let post = Method::POST;
        let del = Method::DELETE;
        let admin = |t: &str| Access::TenantAdmin(t.into());
        let cases = [
            (&get, "/metrics", Access::Open),
            (&get, "/admin/v2/brokers/health", Access::Open),
            (&get, "/admin/v2/clusters", Access::Superuser),
            (&get, "/admin/v2/clusters/standalone", Access::Superuser),
            (&get, "/admin/v2/tenants", Access::Superuser),
            (&get, "/admin/v2/tenants/acme", admin("acme")),
            (&put, "/admin/v2/tenants/acme", Access::Superuser),
            (&post, "/admin/v2/tenants/acme", Access::Superuser),
            (&del, "/admin/v2/tenants/acme", Access::Superuser),
            (&get, "/admin/v2/namespaces/acme", admin("acme")),
            (&get, "/admin/v2/namespaces/acme/prod", admin("acme")),
            (&put, "/admin/v2/namespaces/acme/prod", admin("acme")),
            (
                &get,
                "/admin/v2/namespaces/acme/prod/retention",
                admin("acme"),
            ),
            (
                &get,
                "/admin/v2/namespaces/acme/prod/permissions",
                admin("acme"),
            ),
            (
                &post,
                "/admin/v2/namespaces/acme/prod/permissions/app",
                admin("acme"),
            ),
            (
                &get,
                "/admin/v2/namespaces/acme/prod/topics",
                ns("acme", "prod", None, Need::Lookup),
            ),
            (
                &get,
                "/admin/v2/persistent/acme/prod",
                ns("acme", "prod", None, Need::Lookup),
            ),
            (
                &get,
                "/admin/v2/persistent/acme/prod/partitioned",
                ns("acme", "prod", None, Need::Lookup),
            ),
            (&put, "/admin/v2/persistent/acme/prod/orders", admin("acme")),
            (&del, "/admin/v2/persistent/acme/prod/orders", admin("acme")),
            (
                &put,
                "/admin/v2/persistent/acme/prod/orders/unload",
                admin("acme"),
            ),
            (
                &put,
                "/admin/v2/persistent/acme/prod/orders/partitions",
                admin("acme"),
            ),
            (
                &put,
                "/admin/v2/persistent/acme/prod/orders/offload",
                admin("acme"),
            ),
            (
                &get,
                "/admin/v2/persistent/acme/prod/orders/stats",
                ns("acme", "prod", Some("orders"), Need::Lookup),
            ),
            (
                &get,
                "/admin/v2/persistent/acme/prod/orders/partitions",
                ns("acme", "prod", Some("orders"), Need::Lookup),
            ),
            (
                &get,
                "/admin/v2/persistent/acme/prod/orders/subscriptions",
                ns("acme", "prod", Some("orders"), Need::Consume),
            ),
            (
                &del,
                "/admin/v2/persistent/acme/prod/orders/subscription/s",
                ns("acme", "prod", Some("orders"), Need::Consume),
            ),
            (
                &post,
                "/admin/v2/persistent/acme/prod/orders/subscription/s/skip_all",
                ns("acme", "prod", Some("orders"), Need::Consume),
            ),
            (
                &post,
                "/admin/v2/persistent/acme/prod/orders/all_subscription/expireMessages/5",
                ns("acme", "prod", Some("orders"), Need::Consume),
            ),
            (
                &get,
                "/admin/v2/persistent/acme/prod/a%20b/stats",
                ns("acme", "prod", Some("a b"), Need::Lookup),
            ),
            (&get, "/admin/v2/nonsense", Access::Authenticated),
            (&get, "/", Access::Authenticated),
            // A name that does not parse needs the most the tenant can give.
            (
                &get,
                "/admin/v2/namespaces/acme/b%2Fad/topics",
                admin("acme"),
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(required_access(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
