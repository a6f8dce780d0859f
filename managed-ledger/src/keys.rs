//! Metadata-store keys of managed ledgers and cursors.
//!
//! ```text
//! /strata/managed-ledgers/<enc(name)>                 info record (JSON, CAS)
//! /strata/cursors/<enc(name)>/<enc(cursor)>           one cursor (JSON, CAS)
//! ```
//!
//! Names are escaped as one key segment: `%` → `%25`, `/` → `%2F`. So the
//! cursors of `a/b` never show up when listing those of `a/b/c`, and since
//! the escaping maps each character on its own, it keeps prefixes: listing
//! the managed ledgers under `public/default/` is a prefix list of
//! `enc("public/default/")`.

/// Prefix of every managed-ledger info record.
pub const MANAGED_LEDGERS: &str = "/strata/managed-ledgers/";

/// Prefix of every cursor record.
pub const CURSORS: &str = "/strata/cursors/";

/// Escapes `name` into one key segment (see the module docs).
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`encode`]; `None` for text `encode` cannot have produced.
pub fn decode(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "2F" => '/',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    if rest.contains('/') {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// Info record of a managed ledger.
pub fn managed_ledger(name: &str) -> String {
    format!("{MANAGED_LEDGERS}{}", encode(name))
}

/// Prefix of the info records of the managed ledgers whose names start with `prefix`.
pub fn managed_ledger_prefix(prefix: &str) -> String {
    format!("{MANAGED_LEDGERS}{}", encode(prefix))
}

/// Name of the managed ledger whose info record is `key`.
pub fn managed_ledger_name(key: &str) -> Option<String> {
    decode(key.strip_prefix(MANAGED_LEDGERS)?)
}

/// Prefix of the cursors of one managed ledger.
pub fn cursors_of(name: &str) -> String {
    format!("{CURSORS}{}/", encode(name))
}

/// Record of one cursor.
pub fn cursor(name: &str, cursor: &str) -> String {
    format!("{}{}", cursors_of(name), encode(cursor))
}

/// Name of the cursor whose record is `key`, given its managed ledger's name.
pub fn cursor_name(name: &str, key: &str) -> Option<String> {
    decode(key.strip_prefix(&cursors_of(name))?)
}

/// Checks a managed-ledger or cursor name.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("contains a control character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prefixes() {
        for n in ["public/default/persistent/t", "a%2Fb", "%", "x", "a//b/"] {
            assert_eq!(decode(&encode(n)).as_deref(), Some(n));
            assert_eq!(managed_ledger_name(&managed_ledger(n)).as_deref(), Some(n));
            assert_eq!(
                cursor_name(n, &cursor(n, "sub/1")).as_deref(),
                Some("sub/1")
            );
        }
        assert!(
            managed_ledger("public/default/persistent/t")
                .starts_with(&managed_ledger_prefix("public/default/"))
        );
        // The cursors of a/b are not under those of a.
        assert!(!cursor("a/b", "c").starts_with(&cursors_of("a")));
        assert_eq!(decode("bad%zz"), None);
        assert_eq!(decode("a/b"), None);
        assert_eq!(decode("trunc%2"), None);
    }
}
