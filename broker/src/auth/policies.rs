//! A namespace's grants, stored in its policies record as Pulsar's
//! `auth_policies`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What a grant allows (Pulsar's `AuthAction`). Strata checks `produce` and
/// `consume`; the others are kept so Pulsar's records and requests parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthAction {
    Produce,
    Consume,
    Functions,
    Sources,
    Sinks,
    Packages,
}

/// Pulsar's `AuthPolicies`, with its JSON names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthPolicies {
    /// Role → what it may do on every topic of the namespace.
    #[serde(default)]
    pub namespace_auth: BTreeMap<String, BTreeSet<AuthAction>>,
    /// Topic (`persistent://t/ns/x`) → role → what it may do on that topic.
    #[serde(default)]
    pub destination_auth: BTreeMap<String, BTreeMap<String, BTreeSet<AuthAction>>>,
    /// Subscription → roles allowed on it (stored; not enforced).
    #[serde(default)]
    pub subscription_auth_roles: BTreeMap<String, BTreeSet<String>>,
}

impl AuthPolicies {
    /// Whether `role` holds `action` on `topic` (or, with no topic, on the
    /// namespace), by a namespace grant or one on the topic.
    pub fn allows(&self, role: &str, topic: Option<&str>, action: AuthAction) -> bool {
        let holds = |grants: &BTreeMap<String, BTreeSet<AuthAction>>| {
            grants.get(role).is_some_and(|a| a.contains(&action))
        };
        holds(&self.namespace_auth)
            || topic.is_some_and(|t| self.destination_auth.get(t).is_some_and(holds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Policies, parse_json};

    #[test]
    fn pulsar_json_round_trips() {
        let p: Policies = parse_json(
            br#"{"auth_policies":{"namespace_auth":{"app":["produce","consume"]},
                 "destination_auth":{"persistent://t/ns/x":{"reader":["consume"]}},
                 "subscription_auth_roles":{"sub":["app"]}}}"#,
            "policies",
        )
        .unwrap();
        let a = &p.auth_policies;
        assert!(a.allows("app", None, AuthAction::Produce));
        assert!(a.allows("app", Some("persistent://t/ns/y"), AuthAction::Consume));
        assert!(!a.allows("reader", None, AuthAction::Consume));
        assert!(a.allows("reader", Some("persistent://t/ns/x"), AuthAction::Consume));
        assert!(!a.allows("reader", Some("persistent://t/ns/x"), AuthAction::Produce));
        assert!(!a.allows("nobody", None, AuthAction::Consume));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["auth_policies"]["namespace_auth"]["app"],
            serde_json::json!(["produce", "consume"])
        );
        // A record without the field (written before it existed) has no grants.
        let old: Policies = parse_json(b"{}", "policies").unwrap();
        assert_eq!(old.auth_policies, AuthPolicies::default());
        let e = parse_json::<Policies>(
            br#"{"auth_policies":{"namespace_auth":{"app":["write"]}}}"#,
            "policies",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("auth_policies.namespace_auth.app"), "{e}");
    }
}
