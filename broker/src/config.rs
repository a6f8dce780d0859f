//! Broker settings.

use std::time::Duration;

use strata_managed_ledger::ManagedLedgerConfig;

use crate::tls::TlsConfig;

/// What auto topic creation creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoTopicCreationType {
    #[default]
    NonPartitioned,
    Partitioned,
}

/// Authentication and authorization, with Pulsar's setting names. Off by
/// default; see `crate::auth` for what each setting does.
#[derive(Clone)]
pub struct AuthConfig {
    /// authenticationEnabled: every client (protocol and admin REST) must
    /// present valid credentials of one of `providers`.
    pub authentication_enabled: bool,
    /// authenticationProviders: how clients may prove their role (Pulsar's
    /// `AuthenticationProviderToken` and `AuthenticationProviderTls`).
    pub providers: Vec<crate::auth::AuthProvider>,
    /// authorizationEnabled: roles are checked against superuser roles,
    /// tenant admin roles and namespace grants. Needs authentication.
    pub authorization_enabled: bool,
    /// superUserRoles: roles allowed everything.
    pub superuser_roles: Vec<String>,
    /// tokenSecretKey: the HS256/384/512 secret, as `file:///path`,
    /// `data:;base64,...`, a path or base64 text.
    pub token_secret_key: Option<String>,
    /// tokenPublicKey: the RSA or EC public key (X.509 SubjectPublicKeyInfo,
    /// DER or PEM), in the same forms as the secret.
    pub token_public_key: Option<String>,
    /// tokenAuthClaim: the claim that holds the role.
    pub token_auth_claim: String,
    /// tokenPublicAlg: the signature algorithm of the public key (RS256,
    /// ES256...); tokens signed by any algorithm of its family are accepted.
    pub token_public_alg: jsonwebtoken::Algorithm,
    /// authenticationRefreshCheckSeconds: how often a connection's token is
    /// checked for expiry, and how long a client has to answer the
    /// AUTH_CHALLENGE sent when it expired.
    pub refresh_check_interval: Duration,
}

/// The secret itself never shows, only where it is read from.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self.token_secret_key.as_deref().map(|s| {
            if s.starts_with("file:") || std::path::Path::new(s).is_file() {
                s
            } else {
                "<redacted>"
            }
        });
        f.debug_struct("AuthConfig")
            .field("authentication_enabled", &self.authentication_enabled)
            .field("providers", &self.providers)
            .field("authorization_enabled", &self.authorization_enabled)
            .field("superuser_roles", &self.superuser_roles)
            .field("token_secret_key", &secret)
            .field("token_public_key", &self.token_public_key)
            .field("token_auth_claim", &self.token_auth_claim)
            .field("token_public_alg", &self.token_public_alg)
            .field("refresh_check_interval", &self.refresh_check_interval)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            authentication_enabled: false,
            providers: vec![crate::auth::AuthProvider::Token],
            authorization_enabled: false,
            superuser_roles: Vec::new(),
            token_secret_key: None,
            token_public_key: None,
            token_auth_claim: "sub".into(),
            token_public_alg: jsonwebtoken::Algorithm::RS256,
            refresh_check_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Address the Pulsar protocol listener binds (port 0: any free port).
    pub listen: String,
    /// Address the `pulsar+ssl://` listener binds (Pulsar's
    /// `brokerServicePortTls`, 6651 by convention; port 0: any free port);
    /// none: no TLS listener. Needs `tls`.
    pub listen_tls: Option<String>,
    /// Certificate, key and client-certificate checks of the TLS listener.
    pub tls: Option<TlsConfig>,
    /// Host name put in lookup answers and the service URL; defaults to the
    /// listen host (or 127.0.0.1 when that is a wildcard).
    pub advertised_host: Option<String>,
    /// Token authentication and role authorization (off by default).
    pub auth: AuthConfig,
    /// Largest message a producer may send, in bytes (announced in CONNECTED).
    pub max_message_size: usize,
    /// Idle time after which the broker pings a client; twice this without
    /// any frame from the client closes the connection.
    pub keepalive_interval: Duration,
    /// Bytes of recently written entries kept in memory for tailing readers.
    pub cache_bytes: usize,
    /// A Shared / Key_Shared consumer with this many unacknowledged messages
    /// gets nothing more until it acknowledges half of them (0: no limit).
    pub max_unacked_messages_per_consumer: u32,
    /// Entries a dispatcher reads from storage at once.
    pub dispatch_batch_entries: usize,
    /// Create topics on first use.
    pub allow_auto_topic_creation: bool,
    /// What a topic created on first use is: one topic, or a partitioned
    /// topic of `default_num_partitions` partitions (Pulsar's
    /// `allowAutoTopicCreationType`).
    pub auto_topic_creation_type: AutoTopicCreationType,
    /// Partitions of a partitioned topic created on first use.
    pub default_num_partitions: u32,
    /// Hash ranges each namespace is split into for ownership.
    pub bundles_per_namespace: u32,
    /// Time-to-live of the broker's ownership session.
    pub session_ttl: Duration,
    /// Managed ledger settings (rollover, quorum, cursor persistence).
    pub managed_ledger: ManagedLedgerConfig,
    /// Window over which topic stats compute their rates (msgRateIn...).
    pub stats_interval: Duration,
    /// Broker-wide limits; a namespace's policies override each of them.
    pub limits: Limits,
    /// How often each topic checks its backlog quotas and the namespace's
    /// storage quota (Pulsar's backlogQuotaCheckIntervalInSeconds).
    pub backlog_quota_check_interval: Duration,
    /// How often each topic expires messages past the namespace's TTL
    /// (Pulsar's messageExpiryCheckIntervalInMinutes).
    pub message_expiry_check_interval: Duration,
}

/// Broker-wide defaults of the namespace limits (0: no limit), with
/// Pulsar's names.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// maxProducersPerTopic.
    pub max_producers_per_topic: u32,
    /// maxConsumersPerTopic.
    pub max_consumers_per_topic: u32,
    /// maxConsumersPerSubscription.
    pub max_consumers_per_subscription: u32,
    /// maxUnackedMessagesPerSubscription: a Shared / Key_Shared
    /// subscription with this many unacknowledged messages gets nothing
    /// more until it acknowledges half of them.
    pub max_unacked_messages_per_subscription: u32,
    /// maxSubscriptionsPerTopic.
    pub max_subscriptions_per_topic: u32,
    /// maxTopicsPerNamespace (partitions count one each).
    pub max_topics_per_namespace: u32,
    /// maxNamespacesPerTenant.
    pub max_namespaces_per_tenant: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "0.0.0.0:6650".into(),
            listen_tls: None,
            tls: None,
            advertised_host: None,
            auth: AuthConfig::default(),
            max_message_size: 5 << 20,
            keepalive_interval: Duration::from_secs(30),
            cache_bytes: 256 << 20,
            max_unacked_messages_per_consumer: 50_000,
            dispatch_batch_entries: 100,
            allow_auto_topic_creation: true,
            auto_topic_creation_type: AutoTopicCreationType::NonPartitioned,
            default_num_partitions: 1,
            bundles_per_namespace: 4,
            session_ttl: Duration::from_secs(10),
            managed_ledger: ManagedLedgerConfig::default(),
            stats_interval: Duration::from_secs(5),
            limits: Limits::default(),
            backlog_quota_check_interval: Duration::from_secs(60),
            message_expiry_check_interval: Duration::from_secs(5 * 60),
        }
    }
}

impl BrokerConfig {
    /// Largest frame accepted: a full message plus room for its command and metadata.
    pub fn max_frame_size(&self) -> usize {
        self.max_message_size + (10 << 10)
    }
}
