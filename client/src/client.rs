//! The client: service URL, connection pool, LOOKUP (following redirects)
//! and PARTITIONED_METADATA.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use strata_proto::pulsar::{
    BaseCommand, CommandLookupTopic, CommandPartitionedTopicMetadata, base_command::Type,
    command_lookup_topic_response::LookupType,
    command_partitioned_topic_metadata_response::LookupType as MetadataResult,
};

use crate::connection::{Connection, ConnectionOptions};
use crate::consumer::{Consumer, ConsumerOptions};
use crate::error::{ClientError, Result};
use crate::producer::{Producer, ProducerOptions};

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            connections_per_broker: 1,
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
    service: Vec<String>,
    conn_opts: ConnectionOptions,
    per_broker: usize,
    pool: tokio::sync::Mutex<HashMap<String, Vec<Arc<Connection>>>>,
    round_robin: AtomicUsize,
    next_id: AtomicU64,
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

/// `pulsar://h1:6650,h2:6650` → `["h1:6650", "h2:6650"]`.
pub fn parse_service_url(url: &str) -> Result<Vec<String>> {
    let bad = |reason: &str| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = if let Some(rest) = url.strip_prefix("pulsar://") {
        rest
    } else if url.starts_with("pulsar+ssl://") {
        return Err(ClientError::Unsupported(format!("TLS ({url})")));
    } else {
        return Err(bad("expected pulsar://host:port"));
    };
    let rest = rest.trim_end_matches('/');
    let mut out = Vec::new();
    for host in rest.split(',') {
        if host.is_empty() || host.contains('/') {
            return Err(bad("empty host or a path after it"));
        }
        match host.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => out.push(host.to_string()),
            Some(_) => return Err(bad("bad port")),
            None => out.push(format!("{host}:6650")),
        }
    }
    Ok(out)
}

impl Client {
    /// Parses the service URL and connects to the first broker in it that answers.
    pub async fn connect(url: &str, opts: ClientOptions) -> Result<Client> {
        let client = Client {
            inner: Arc::new(ClientInner {
                service: parse_service_url(url)?,
                conn_opts: ConnectionOptions {
                    connect_timeout: opts.connect_timeout,
                    operation_timeout: opts.operation_timeout,
                    keepalive: opts.keepalive,
                },
                per_broker: opts.connections_per_broker.max(1),
                pool: tokio::sync::Mutex::new(HashMap::new()),
                round_robin: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
            }),
        };
        client.service_connection().await?;
        Ok(client)
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
        for addr in &self.inner.service {
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
            let url = r.broker_service_url.clone().unwrap_or_default();
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
                LookupType::Connect => return self.broker_connection(&url).await,
                LookupType::Redirect => {
                    conn = self.broker_connection(&url).await?;
                    authoritative = r.authoritative.unwrap_or(false);
                }
            }
        }
        Err(ClientError::TooManyRedirects {
            topic: topic.to_string(),
            redirects: MAX_REDIRECTS,
        })
    }

    async fn broker_connection(&self, url: &str) -> Result<Arc<Connection>> {
        let addrs = parse_service_url(url)?;
        match addrs.first() {
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
        assert_eq!(
            parse_service_url("pulsar://127.0.0.1:6650").unwrap(),
            vec!["127.0.0.1:6650"]
        );
        assert_eq!(
            parse_service_url("pulsar://a:1,b/").unwrap(),
            vec!["a:1", "b:6650"]
        );
        assert!(parse_service_url("http://a:1").is_err());
        assert!(parse_service_url("pulsar://a:x").is_err());
        assert!(parse_service_url("pulsar://").is_err());
        assert!(parse_service_url("pulsar://a:1/path").is_err());
        assert!(matches!(
            parse_service_url("pulsar+ssl://a:6651"),
            Err(ClientError::Unsupported(_))
        ));
    }
}
