//! The few admin REST calls `strata perf` makes: create a partitioned
//! topic, tenants, namespaces and their policies, and read values from the
//! broker's Prometheus `/metrics`.
//! Plain HTTP/1.1 through hyper, one connection per call; the run's token
//! (if any) goes as `Authorization: Bearer` (`/metrics` needs none).

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Sends one request (with `token` as `Authorization: Bearer`); returns
/// the status and the body.
pub async fn http(
    method: Method,
    url: &str,
    body: Option<String>,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// admin URLs are supported, not {url:?}");
    }
    let host = uri.host().context("admin URL without a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connect to {host}:{port}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.to_string(), |a| a.to_string());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("request {url}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends one request and fails unless it succeeded (2xx).
pub async fn call(
    method: Method,
    url: &str,
    body: Option<String>,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let (status, answer) = http(method.clone(), url, body, token).await?;
    if status.is_success() {
        return Ok(());
    }
    bail!("{method} {url} answered {status}: {}", answer.trim())
}

/// `persistent://t/ns/x` or `x` (in public/default) → (tenant, namespace, local name).
fn topic_parts(topic: &str) -> anyhow::Result<(String, String, String)> {
    let rest = topic.strip_prefix("persistent://").unwrap_or(topic);
    if rest.contains("://") {
        bail!("only persistent topics can be partitioned: {topic:?}");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [local] => Ok(("public".into(), "default".into(), local.to_string())),
        [tenant, ns, local] => Ok((tenant.to_string(), ns.to_string(), local.to_string())),
        _ => bail!("cannot split topic name {topic:?} into tenant/namespace/topic"),
    }
}

/// Creates `topic` with `partitions` partitions through
/// `PUT /admin/v2/persistent/{tenant}/{ns}/{topic}/partitions`. A topic that
/// already exists (409) is left as it is: the caller checks its partition
/// count through the binary protocol.
pub async fn create_partitioned_topic(
    admin_url: &str,
    topic: &str,
    partitions: u32,
    token: Option<&str>,
) -> anyhow::Result<()> {
    let (tenant, ns, local) = topic_parts(topic)?;
    let url = format!(
        "{}/admin/v2/persistent/{tenant}/{ns}/{local}/partitions",
        admin_url.trim_end_matches('/')
    );
    let (status, body) = http(Method::PUT, &url, Some(partitions.to_string()), token).await?;
    if status.is_success() || status == StatusCode::CONFLICT {
        return Ok(());
    }
    bail!("PUT {url} answered {status}: {}", body.trim())
}

/// The value of an unlabelled sample `name` on the admin server's `/metrics`.
pub async fn metric(admin_url: &str, name: &str) -> anyhow::Result<f64> {
    let url = format!("{}/metrics", admin_url.trim_end_matches('/'));
    parse_metric(&metrics_page(admin_url).await?, name)
        .with_context(|| format!("no sample {name} on {url}"))
}

/// The admin server's whole `/metrics` page (read samples with [`parse_metric`]).
pub async fn metrics_page(admin_url: &str) -> anyhow::Result<String> {
    let url = format!("{}/metrics", admin_url.trim_end_matches('/'));
    let (status, body) = http(Method::GET, &url, None, None).await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}");
    }
    Ok(body)
}

/// The value of the unlabelled sample `name` in a Prometheus exposition.
pub fn parse_metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines() {
        let text = "# HELP process_resident_memory_bytes x\n\
                    process_resident_memory_bytes_total 1\n\
                    process_resident_memory_bytes 123456\n";
        assert_eq!(
            parse_metric(text, "process_resident_memory_bytes"),
            Some(123456.0)
        );
        assert_eq!(parse_metric(text, "nothing"), None);
    }

    #[test]
    fn topic_names() {
        assert_eq!(
            topic_parts("persistent://a/b/c").unwrap(),
            ("a".into(), "b".into(), "c".into())
        );
        assert_eq!(topic_parts("c").unwrap().0, "public");
        assert!(topic_parts("non-persistent://a/b/c").is_err());
        assert!(topic_parts("a/b").is_err());
    }
}
