//! A connection's credentials: the token in CONNECT, its refresh through
//! AUTH_CHALLENGE / AUTH_RESPONSE, and the role's checks on PRODUCER,
//! SUBSCRIBE and lookups.
//!
//! A CONNECT with a missing, malformed, expired or wrongly signed token is
//! answered with ERROR `AuthenticationError` and the connection is closed;
//! nothing else on the broker notices.
//!
//! Refresh, as Pulsar's broker does it: every refresh-check interval the
//! connection's token is checked. Still valid: nothing. Expired: the broker
//! sends AUTH_CHALLENGE (the connection's auth method, data
//! `PulsarAuthRefresh`, which the clients answer by asking their token
//! supplier again). If the next check finds the challenge unanswered, or
//! the client did not announce `supports_auth_refresh`, the connection gets
//! ERROR `AuthenticationError` and is closed. An AUTH_RESPONSE must carry a
//! valid token of the same role, else the connection is closed too.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_common::names::{NamespaceName, TopicName};
use strata_proto::pulsar::{CommandAuthResponse, CommandConnect, ServerError};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{Conn, Fatal};
use crate::auth::{Access, AuthError, Need, Operation, now_secs};
use crate::codec;
use crate::commands;
use crate::error::BrokerError;
use crate::outbound::Outbound;
use crate::service::BrokerService;

/// Request id of the ERROR that refuses credentials (Pulsar's -1).
const NO_REQUEST: u64 = u64::MAX;

/// What a connection proved at CONNECT (and since, by refreshes).
pub(crate) struct ConnAuth {
    /// The token's role; `None` when authentication is off.
    pub(crate) role: Option<String>,
    method: String,
    supports_refresh: bool,
    protocol_version: i32,
    state: Mutex<TokenState>,
}

struct TokenState {
    /// The current token's `exp` (seconds since the epoch).
    expires_at: Option<u64>,
    /// An AUTH_CHALLENGE went out and no AUTH_RESPONSE came back yet.
    challenged: bool,
}

/// What a refresh check decided.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Valid,
    Challenge,
    Close(AuthError),
}

impl ConnAuth {
    /// Checks CONNECT's credentials (counted either way); `cert_role` is
    /// the CN of the client certificate the TLS listener verified, which
    /// the `tls` method takes as the role.
    pub(super) fn connect(
        service: &BrokerService,
        connect: &CommandConnect,
        protocol_version: i32,
        cert_role: Option<&str>,
    ) -> Result<ConnAuth, AuthError> {
        let method = connect.auth_method_name.as_deref();
        let result = service
            .auth
            .authenticate(method, connect.auth_data.as_deref(), cert_role);
        let metrics = &service.metrics.auth;
        let identity = match result {
            Ok(id) => id,
            Err(e) => {
                metrics.failed(&e);
                return Err(e);
            }
        };
        if identity.is_some() {
            metrics.successes.inc();
        }
        Ok(ConnAuth {
            role: identity.as_ref().map(|i| i.role.clone()),
            method: method.unwrap_or_default().to_string(),
            supports_refresh: connect
                .feature_flags
                .as_ref()
                .and_then(|f| f.supports_auth_refresh)
                .unwrap_or(false),
            protocol_version,
            state: Mutex::new(TokenState {
                expires_at: identity.and_then(|i| i.expires_at),
                challenged: false,
            }),
        })
    }

    /// One refresh check at `now` (seconds since the epoch).
    fn check(&self, now: u64) -> Check {
        let mut st = self.state.lock();
        if st.expires_at.is_none_or(|exp| exp >= now) {
            Check::Valid
        } else if !self.supports_refresh {
            Check::Close(AuthError::RefreshUnsupported)
        } else if st.challenged {
            Check::Close(AuthError::RefreshTimeout)
        } else {
            st.challenged = true;
            Check::Challenge
        }
    }

    fn refreshed(&self, expires_at: Option<u64>) {
        let mut st = self.state.lock();
        st.expires_at = expires_at;
        st.challenged = false;
    }
}

/// Refuses CONNECT: ERROR `AuthenticationError` with the reason, then the
/// connection closes (the caller returns the [`Fatal`]).
pub(super) async fn refuse_connect(tx: &mpsc::Sender<Outbound>, e: &AuthError) -> Fatal {
    let error = commands::error_code(
        NO_REQUEST,
        ServerError::AuthenticationError,
        format!("authentication failed: {e}"),
    );
    let _ = tx
        .send(Outbound::Frame(codec::encode_command(&error)))
        .await;
    Fatal(format!("authentication failed: {e}"))
}

impl Conn {
    pub(super) fn role(&self) -> Option<&str> {
        self.auth.role.as_deref()
    }

    /// Checks that the connection's role may use `topic` for `need`.
    pub(super) async fn authorize_topic(
        &self,
        topic: &TopicName,
        need: Need,
        op: Operation,
    ) -> Result<(), BrokerError> {
        let access = Access::Namespace {
            ns: topic.namespace.clone(),
            topic: Some(topic.clone()),
            need,
        };
        self.service.authorize(self.role(), &access, op).await
    }

    /// Checks that the connection's role may list the topics of `ns`.
    pub(super) async fn authorize_namespace(&self, ns: &NamespaceName) -> Result<(), BrokerError> {
        let access = Access::Namespace {
            ns: ns.clone(),
            topic: None,
            need: Need::Lookup,
        };
        self.service
            .authorize(self.role(), &access, Operation::TopicsOfNamespace)
            .await
    }

    /// Starts the refresh checks of a connection whose token expires.
    pub(super) fn spawn_refresh(self: &Arc<Self>) {
        if self.auth.role.is_none() || self.auth.state.lock().expires_at.is_none() {
            return;
        }
        let interval = self
            .service
            .auth
            .refresh_check_interval
            .max(Duration::from_millis(100));
        let conn = Arc::downgrade(self);
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = handle.closed() => return,
                }
                let Some(conn) = conn.upgrade() else { return };
                match conn.auth.check(now_secs()) {
                    Check::Valid => {}
                    Check::Challenge => {
                        debug!(peer = %handle.peer, role = ?conn.role(), "token expired; sending AUTH_CHALLENGE");
                        conn.service.metrics.auth.challenges.inc();
                        handle
                            .send(commands::auth_challenge(
                                &conn.auth.method,
                                conn.auth.protocol_version,
                            ))
                            .await;
                    }
                    Check::Close(e) => {
                        info!(peer = %handle.peer, role = ?conn.role(), reason = %e, "closing client connection");
                        conn.service.metrics.auth.failed(&e);
                        handle
                            .send(commands::error_code(
                                NO_REQUEST,
                                ServerError::AuthenticationError,
                                format!("authentication failed: {e}"),
                            ))
                            .await;
                        handle.close();
                        return;
                    }
                }
            }
        });
    }

    /// AUTH_RESPONSE: the client's fresh credentials. A bad token or a
    /// different role closes the connection.
    pub(super) async fn handle_auth_response(&self, cmd: CommandAuthResponse) -> Result<(), Fatal> {
        let Some(role) = self.auth.role.as_deref() else {
            debug!(peer = %self.handle.peer, "AUTH_RESPONSE ignored: authentication is off");
            return Ok(());
        };
        let response = cmd.response.unwrap_or_default();
        let metrics = &self.service.metrics.auth;
        let result = self
            .service
            .auth
            .authenticate(
                response.auth_method_name.as_deref(),
                response.auth_data.as_deref(),
                // Only token roles expire, so only they are challenged.
                None,
            )
            .and_then(|id| match id {
                Some(id) if id.role != role => Err(AuthError::RoleChanged {
                    was: role.to_string(),
                    now: id.role,
                }),
                other => Ok(other),
            });
        match result {
            Ok(id) => {
                let expires_at = id.and_then(|i| i.expires_at);
                self.auth.refreshed(expires_at);
                metrics.successes.inc();
                metrics.refreshes.inc();
                debug!(peer = %self.handle.peer, role, ?expires_at, "token refreshed");
                Ok(())
            }
            Err(e) => {
                metrics.failed(&e);
                self.handle
                    .send(commands::error_code(
                        NO_REQUEST,
                        ServerError::AuthenticationError,
                        format!("authentication failed: {e}"),
                    ))
                    .await;
                Err(Fatal(format!("token refresh refused: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_auth(expires_at: Option<u64>, supports_refresh: bool) -> ConnAuth {
        ConnAuth {
            role: Some("app".into()),
            method: "token".into(),
            supports_refresh,
            protocol_version: 21,
            state: Mutex::new(TokenState {
                expires_at,
                challenged: false,
            }),
        }
    }

    #[test]
    fn refresh_checks_challenge_once_then_close() {
        let a = conn_auth(Some(100), true);
        assert_eq!(a.check(100), Check::Valid);
        assert_eq!(a.check(101), Check::Challenge);
        // No answer by the next check: closed.
        assert_eq!(a.check(102), Check::Close(AuthError::RefreshTimeout));

        let a = conn_auth(Some(100), true);
        assert_eq!(a.check(101), Check::Challenge);
        a.refreshed(Some(200));
        assert_eq!(a.check(150), Check::Valid);
        assert_eq!(a.check(201), Check::Challenge);
        a.refreshed(None);
        assert_eq!(a.check(u64::MAX), Check::Valid);
    }

    #[test]
    fn clients_that_cannot_refresh_are_closed_at_expiry() {
        let a = conn_auth(Some(100), false);
        assert_eq!(a.check(99), Check::Valid);
        assert_eq!(a.check(101), Check::Close(AuthError::RefreshUnsupported));
        let forever = conn_auth(None, false);
        assert_eq!(forever.check(u64::MAX), Check::Valid);
    }
}
