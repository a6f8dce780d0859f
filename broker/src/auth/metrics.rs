//! Counters of authentication and authorization outcomes, rendered with the
//! broker's metrics (`strata_broker_authentication_*`,
//! `strata_broker_authorization_*`).

use strata_common::metrics::{Counter, Exposition};

use super::{AuthError, Operation};

/// Failure reasons, in the order of their counters (see [`AuthError::reason`]).
const REASONS: [&str; 11] = [
    "missing",
    "unsupported_method",
    "no_client_cert",
    "malformed",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "no_role",
    "refresh_timeout",
    "refresh_unsupported",
    "role_changed",
];

#[derive(Debug, Default)]
pub struct AuthMetrics {
    /// Clients (connections, AUTH_RESPONSEs, admin requests) authenticated.
    pub successes: Counter,
    failures: [Counter; REASONS.len()],
    denials: [Counter; Operation::ALL.len()],
    /// AUTH_CHALLENGEs sent for expired tokens.
    pub challenges: Counter,
    /// Tokens replaced through AUTH_RESPONSE.
    pub refreshes: Counter,
}

impl AuthMetrics {
    pub fn failed(&self, e: &AuthError) {
        if let Some(i) = REASONS.iter().position(|r| *r == e.reason()) {
            self.failures[i].inc();
        }
    }

    pub fn denied(&self, op: Operation) {
        self.denials[op as usize].inc();
    }

    pub fn failures(&self, reason: &str) -> u64 {
        REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.failures[i].get())
    }

    pub fn denials(&self, op: Operation) -> u64 {
        self.denials[op as usize].get()
    }

    pub fn render(&self, e: &mut Exposition) {
        e.counter(
            "strata_broker_authentication_success_total",
            "Clients authenticated (connections, token refreshes, admin requests).",
            self.successes.get(),
        );
        for (reason, c) in REASONS.iter().zip(&self.failures) {
            e.counter_with(
                "strata_broker_authentication_failures_total",
                "Clients refused for their credentials, by reason.",
                &[("reason", reason)],
                c.get(),
            );
        }
        for (op, c) in Operation::ALL.iter().zip(&self.denials) {
            e.counter_with(
                "strata_broker_authorization_denials_total",
                "Requests refused for the role's permissions, by operation.",
                &[("operation", op.label())],
                c.get(),
            );
        }
        e.counter(
            "strata_broker_auth_challenges_total",
            "AUTH_CHALLENGEs sent to connections whose token expired.",
            self.challenges.get(),
        );
        e.counter(
            "strata_broker_auth_refreshes_total",
            "Connection tokens replaced through AUTH_RESPONSE.",
            self.refreshes.get(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_counter() {
        let m = AuthMetrics::default();
        let all = [
            AuthError::Missing,
            AuthError::UnsupportedMethod {
                method: "x".into(),
                supported: "\"token\"".into(),
            },
            AuthError::NoClientCert,
            AuthError::Malformed("x".into()),
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::BadSignature("x".into()),
            AuthError::NoRole("sub".into()),
            AuthError::RefreshTimeout,
            AuthError::RefreshUnsupported,
            AuthError::RoleChanged {
                was: "a".into(),
                now: "b".into(),
            },
        ];
        for e in &all {
            m.failed(e);
            assert_eq!(m.failures(e.reason()), 1, "{e:?}");
        }
        m.denied(Operation::Produce);
        m.denied(Operation::Admin);
        m.denied(Operation::Admin);
        let mut exp = Exposition::default();
        m.render(&mut exp);
        let text = exp.finish();
        assert!(
            text.contains("strata_broker_authentication_failures_total{reason=\"expired\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strata_broker_authorization_denials_total{operation=\"admin\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("strata_broker_authorization_denials_total{operation=\"consume\"} 0"),
            "{text}"
        );
    }
}
