//! The client: service URL, connection pool, LOOKUP (following redirects)
//! and PARTITIONED_METADATA.
//!
//! A `pulsar+ssl://` client speaks TLS to every broker and follows the TLS
//! URLs of lookup answers (`brokerServiceUrlTls`); a `pulsar://` one never
//! does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use strata_proto::pulsar::{
    BaseCommand, CommandLookupTopic, CommandPartitionedTopicMetadata, base_command::Type,
    command_lookup_topic_response::LookupType,
    command_partitioned_topic_metadata_response::LookupType as MetadataResult,
};

use crate::auth::Authentication;
use crate::connection::{Connection, ConnectionOptions};
use crate::consumer::{Consumer, ConsumerOptions};
use crate::error::{ClientError, Result};
use crate::memory::MemoryLimit;
use crate::producer::{Producer, ProducerOptions};
use crate::tls::TlsOptions;

/// Redirects a lookup may follow before it gives up.
const MAX_REDIRECTS: u32 = 20;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Bound on every request (lookup, create producer, subscribe, close).
    pub operation_timeout: Duration,
    /// A connection silent this long is pinged; silent twice as long, closed.
    pub keepalive: Duration,
    /// TCP connections per broker; producers and consumers are spread over them.
    pub connections_per_broker: usize,
    /// Credentials for CONNECT; none for a broker without authentication.
    pub auth: Option<Authentication>,
    /// Certificates of `pulsar+ssl://` connections (unused by `pulsar://`).
    pub tls: TlsOptions,
    /// Payload bytes all of this client's producers may have sent or queued
    /// without a receipt; a send waits beyond it (0: no limit). As in the
    /// Java client, 64 MiB by default.
    pub memory_limit_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            connections_per_broker: 1,
            auth: None,
            tls: TlsOptions::default(),
            memory_limit_bytes: 64 << 20,
        }
    }
}

/// A Pulsar client. Cheap to clone; dropping the last clone closes every
/// connection (and with them every producer and consumer).
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    service: ServiceUrl,
    conn_opts: ConnectionOptions,
    per_broker: usize,
    pool: tokio::sync::Mutex<HashMap<String, Vec<Arc<Connection>>>>,
    round_robin: AtomicUsize,
    next_id: AtomicU64,
    memory: Option<MemoryLimit>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        for conns in self.pool.get_mut().values() {
            for c in conns {
                c.close();
            }
        }
    }
}

/// A parsed service URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    /// `pulsar+ssl://`: every connection speaks TLS.
    pub tls: bool,
    /// `host:port` of each broker named.
    pub hosts: Vec<String>,
}

/// `pulsar://h1:6650,h2` → plain, `["h1:6650", "h2:6650"]`;
/// `pulsar+ssl://h` → TLS, `["h:6651"]`.
pub fn parse_service_url(url: &str) -> Result<ServiceUrl> {
    let bad = |reason: &str| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (tls, rest, default_port) = if let Some(rest) = url.strip_prefix("pulsar://") {
        (false, rest, 6650)
    } else if let Some(rest) = url.strip_prefix("pulsar+ssl://") {
        (true, rest, 6651)
    } else {
        return Err(bad("expected pulsar://host:port or pulsar+ssl://host:port"));
    };
    let rest = rest.trim_end_matches('/');
    let mut hosts = Vec::new();
    for host in rest.split(',') {
        if host.is_empty() || host.contains('/') {
            return Err(bad("empty host or a path after it"));
        }
        match host.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                hosts.push(host.to_string())
            }
            Some(_) => return Err(bad("bad port")),
            None => hosts.push(format!("{host}:{default_port}")),
        }
    }
    Ok(ServiceUrl { tls, hosts })
}

impl Client {
    /// Parses the service URL and connects to the first broker in it that answers.
    pub async fn connect(url: &str, opts: ClientOptions) -> Result<Client> {
        let service = parse_service_url(url)?;
        let tls = if service.tls {
            Some(tokio_rustls::TlsConnector::from(opts.tls.client_config()?))
        } else {
            None
        };
        if matches!(opts.auth, Some(Authentication::Tls))
            && (!service.tls || opts.tls.cert_file.is_none())
        {
            return Err(ClientError::Auth(
                "the tls auth method needs a pulsar+ssl:// URL and a client certificate".into(),
            ));
        }
        let client = Client {
            inner: Arc::new(ClientInner {
                service,
                conn_opts: ConnectionOptions {
                    connect_timeout: opts.connect_timeout,
                    operation_timeout: opts.operation_timeout,
                    keepalive: opts.keepalive,
                    tls,
                    auth: opts.auth.map(Arc::new),
                },
                per_broker: opts.connections_per_broker.max(1),
                pool: tokio::sync::Mutex::new(HashMap::new()),
                round_robin: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                memory: MemoryLimit::new(opts.memory_limit_bytes),
            }),
        };
        client.service_connection().await?;
        Ok(client)
    }

    /// The client's limit on unacknowledged payload bytes, if any.
    pub(crate) fn memory(&self) -> Option<&MemoryLimit> {
        self.inner.memory.as_ref()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A pooled connection to `addr` (`host:port`), opened if needed.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        let slot = self.inner.round_robin.fetch_add(1, Ordering::Relaxed);
        let mut pool = self.inner.pool.lock().await;
        let conns = pool.entry(addr.to_string()).or_default();
        conns.retain(|c| !c.is_closed());
        if conns.len() < self.inner.per_broker {
            let c = Connection::connect(addr, &self.inner.conn_opts).await?;
            conns.push(c.clone());
            return Ok(c);
        }
        Ok(conns[slot % conns.len()].clone())
    }

    async fn service_connection(&self) -> Result<Arc<Connection>> {
        let mut last = None;
        for addr in &self.inner.service.hosts {
            match self.connection(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidUrl {
            url: String::new(),
            reason: "no hosts".into(),
        }))
    }

    /// The number of partitions of `topic` (0: not partitioned).
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        let conn = self.service_connection().await?;
        let request_id = conn.next_request_id();
        let cmd = BaseCommand {
            r#type: Type::PartitionedMetadata as i32,
            partition_metadata: Some(CommandPartitionedTopicMetadata {
                topic: topic.to_string(),
                request_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = conn
            .request(request_id, &cmd, "partitioned metadata")
            .await?;
        let r = answer.partition_metadata_response.ok_or_else(|| {
            ClientError::Protocol(format!(
                "PARTITIONED_METADATA answered with command type {}",
                answer.r#type
            ))
        })?;
        if r.response == Some(MetadataResult::Failed as i32) {
            return Err(ClientError::server(
                r.error.unwrap_or(0),
                r.message.unwrap_or_default(),
            ));
        }
        Ok(r.partitions.unwrap_or(0))
    }

    /// The connection to the broker that serves `topic`, following redirects.
    pub async fn lookup(&self, topic: &str) -> Result<Arc<Connection>> {
        let mut conn = self.service_connection().await?;
        let mut authoritative = false;
        for _ in 0..MAX_REDIRECTS {
            let request_id = conn.next_request_id();
            let cmd = BaseCommand {
                r#type: Type::Lookup as i32,
                lookup_topic: Some(CommandLookupTopic {
                    topic: topic.to_string(),
                    request_id,
                    authoritative: Some(authoritative),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let answer = conn.request(request_id, &cmd, "lookup").await?;
            let r = answer.lookup_topic_response.ok_or_else(|| {
                ClientError::Protocol(format!(
                    "LOOKUP answered with command type {}",
                    answer.r#type
                ))
            })?;
            let kind = r
                .response
                .and_then(|t| LookupType::try_from(t).ok())
                .unwrap_or(LookupType::Failed);
            // A TLS client stays on TLS: the owner's TLS URL.
            let url = if self.inner.service.tls {
                r.broker_service_url_tls.clone()
            } else {
                r.broker_service_url.clone()
            };
            match kind {
                LookupType::Failed => {
                    return Err(ClientError::server(
                        r.error.unwrap_or(0),
                        r.message
                            .unwrap_or_else(|| format!("lookup of {topic} failed")),
                    ));
                }
                LookupType::Connect if r.proxy_through_service_url.unwrap_or(false) => {
                    return self.service_connection().await;
                }
                LookupType::Connect => return self.broker_connection(topic, url).await,
                LookupType::Redirect => {
                    conn = self.broker_connection(topic, url).await?;
                    authoritative = r.authoritative.unwrap_or(false);
                }
            }
        }
        Err(ClientError::TooManyRedirects {
            topic: topic.to_string(),
            redirects: MAX_REDIRECTS,
        })
    }

    /// The connection to the broker a lookup of `topic` named.
    async fn broker_connection(&self, topic: &str, url: Option<String>) -> Result<Arc<Connection>> {
        let tls = self.inner.service.tls;
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Err(ClientError::Protocol(format!(
                "the lookup of {topic} named no broker {}URL",
                if tls { "TLS " } else { "" }
            )));
        };
        let parsed = parse_service_url(&url)?;
        if parsed.tls != tls {
            return Err(ClientError::Protocol(format!(
                "the lookup of {topic} named {url}, not a {} URL",
                if tls { "pulsar+ssl://" } else { "pulsar://" }
            )));
        }
        match parsed.hosts.first() {
            Some(addr) => self.connection(addr).await,
            None => Err(ClientError::Protocol(format!(
                "lookup answered an empty broker URL {url:?}"
            ))),
        }
    }

    /// A producer on `topic` (on every partition of a partitioned topic).
    pub async fn create_producer(&self, topic: &str, opts: ProducerOptions) -> Result<Producer> {
        Producer::create(self, topic, opts).await
    }

    /// A consumer on `topic`; for a partitioned topic, subscribe to each
    /// `{topic}-partition-{i}`.
    pub async fn subscribe(
        &self,
        topic: &str,
        subscription: &str,
        opts: ConsumerOptions,
    ) -> Result<Consumer> {
        Consumer::subscribe(self, topic, subscription, opts).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let pool = std::mem::take(&mut *self.inner.pool.lock().await);
        for c in pool.into_values().flatten() {
            c.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls() {
        let plain = |hosts: &[&str]| ServiceUrl {
            tls: false,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        assert_eq!(
            parse_service_url("pulsar://127.0.0.1:6650").unwrap(),
            plain(&["127.0.0.1:6650"])
        );
        assert_eq!(
            parse_service_url("pulsar://a:1,b/").unwrap(),
            plain(&["a:1", "b:6650"])
        );
        assert_eq!(
            parse_service_url("pulsar+ssl://a:16651,b").unwrap(),
            ServiceUrl {
                tls: true,
                hosts: vec!["a:16651".into(), "b:6651".into()],
            }
        );
        for bad in [
            "http://a:1",
            "pulsar://a:x",
            "pulsar://",
            "pulsar://a:1/path",
            "pulsar+ssl://",
            "pulsar+tls://a:1",
        ] {
            assert!(
                matches!(parse_service_url(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_tls_method_needs_tls_and_a_certificate() {
        for url in ["pulsar://127.0.0.1:1", "pulsar+ssl://127.0.0.1:1"] {
            let opts = ClientOptions {
                auth: Some(Authentication::Tls),
                ..ClientOptions::default()
            };
            let e = Client::connect(url, opts).await.err().expect("refused");
            assert!(matches!(e, ClientError::Auth(_)), "{url}: {e}");
        }
    }
}
