//! Command-line values that become request fields: relative times
//! (`10m`), RFC 3339 timestamps, sizes (`10G`) and message ids (`L:E`),
//! with Pulsar's meanings (`-1` is "no limit" for retention).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::http::AdminError;

fn invalid(what: &str, value: &str, why: impl std::fmt::Display) -> AdminError {
    AdminError::Invalid(format!("invalid {what} {value:?}: {why}"))
}

/// A duration: `30s`, `10m`, `3h`, `2d`, `1w` (humantime units, combinable
/// as in `1h30m`) or a bare number of seconds.
pub fn duration(what: &str, s: &str) -> Result<Duration, AdminError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| invalid(what, s, e))
}

/// Retention time in minutes for Pulsar's `retentionTimeInMinutes`
/// (`-1`: keep forever).
pub fn retention_minutes(s: &str) -> Result<i64, AdminError> {
    const WHAT: &str = "retention time";
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let d = duration(WHAT, s)?;
    let minutes = d.as_secs() / 60;
    if minutes == 0 && !d.is_zero() {
        return Err(invalid(WHAT, s, "the unit of retention is one minute"));
    }
    i64::try_from(minutes).map_err(|_| invalid(WHAT, s, "too large"))
}

/// A message TTL in seconds for Pulsar's `message_ttl_in_seconds`.
pub fn ttl_seconds(s: &str) -> Result<i64, AdminError> {
    const WHAT: &str = "message TTL";
    let d = duration(WHAT, s)?;
    if d.subsec_nanos() != 0 {
        return Err(invalid(WHAT, s, "the unit of a TTL is one second"));
    }
    i64::try_from(d.as_secs())
        .ok()
        .filter(|s| *s <= i64::from(i32::MAX))
        .ok_or_else(|| invalid(WHAT, s, "too large"))
}

/// A size in bytes: a number with an optional `k`, `m`, `g` or `t` suffix
/// (powers of 1024, as Pulsar reads them).
pub fn size_bytes(what: &str, s: &str) -> Result<u64, AdminError> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| invalid(what, s, "expected a number with an optional k/m/g/t suffix"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| invalid(what, s, "too large"))
}

/// Retention size in MiB for Pulsar's `retentionSizeInMB` (`-1`: no limit).
pub fn retention_megabytes(s: &str) -> Result<i64, AdminError> {
    const WHAT: &str = "retention size";
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let bytes = size_bytes(WHAT, s)?;
    let mb = bytes >> 20;
    if mb == 0 && bytes != 0 {
        return Err(invalid(WHAT, s, "the unit of retention is one MiB"));
    }
    i64::try_from(mb).map_err(|_| invalid(WHAT, s, "too large"))
}

/// A point in time as milliseconds since the epoch: a duration means that
/// long before `now` (`10m`: ten minutes ago); otherwise an RFC 3339
/// timestamp (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.5+02:00`).
pub fn timestamp_millis(s: &str, now: SystemTime) -> Result<u64, AdminError> {
    const WHAT: &str = "time";
    let t = s.trim();
    let at = if let Ok(ago) = humantime::parse_duration(t) {
        now.checked_sub(ago)
            .ok_or_else(|| invalid(WHAT, s, "before the epoch"))?
    } else {
        rfc3339(t).map_err(|why| {
            invalid(
                WHAT,
                s,
                format!("{why}; expected a relative time such as 10m or 2h, or RFC 3339"),
            )
        })?
    };
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| invalid(WHAT, s, "before the epoch"))?
        .as_millis();
    u64::try_from(millis).map_err(|_| invalid(WHAT, s, "too far in the future"))
}

/// RFC 3339 with any UTC offset. humantime reads the date and time (UTC
/// only); a trailing `+HH:MM`/`-HH:MM` is taken off and applied here.
fn rfc3339(s: &str) -> Result<SystemTime, String> {
    let (local, offset_secs) = split_offset(s)?;
    let utc = humantime::parse_rfc3339_weak(local).map_err(|e| e.to_string())?;
    let shifted = if offset_secs >= 0 {
        utc.checked_sub(Duration::from_secs(offset_secs.unsigned_abs()))
    } else {
        utc.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
    };
    shifted.ok_or_else(|| "out of range".to_string())
}

/// Splits `...T12:00:00+02:00` into the part before the offset and the
/// offset in seconds east of UTC (0 when there is none or it is `Z`).
fn split_offset(s: &str) -> Result<(&str, i64), String> {
    let Some(time_at) = s.find(['T', 't', ' ']) else {
        return Ok((s, 0));
    };
    let time = &s[time_at..];
    let Some(sign_at) = time.rfind(['+', '-']) else {
        return Ok((s, 0));
    };
    let offset = &time[sign_at + 1..];
    let (h, m) = offset
        .split_once(':')
        .ok_or_else(|| format!("bad UTC offset {offset:?}"))?;
    let (h, m): (i64, i64) = match (h.parse(), m.parse()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 && h >= 0 && m >= 0 => (h, m),
        _ => return Err(format!("bad UTC offset {offset:?}")),
    };
    let secs = h * 3600 + m * 60;
    let sign = if time[sign_at..].starts_with('-') {
        -1
    } else {
        1
    };
    Ok((&s[..time_at + sign_at], sign * secs))
}

/// A message id as Pulsar's REST API takes it: `ledgerId:entryId`, or
/// `earliest` / `latest` (Pulsar's `-1:-1` and `Long.MAX:Long.MAX`).
pub fn message_id(s: &str) -> Result<(i64, i64), AdminError> {
    const WHAT: &str = "message id";
    match s.trim() {
        "earliest" => return Ok((-1, -1)),
        "latest" => return Ok((i64::MAX, i64::MAX)),
        _ => {}
    }
    let (l, e) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| invalid(WHAT, s, "expected LEDGER:ENTRY, earliest or latest"))?;
    match (l.parse::<i64>(), e.parse::<i64>()) {
        (Ok(l), Ok(e)) => Ok((l, e)),
        _ => Err(invalid(WHAT, s, "ledger and entry ids must be integers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_and_ttl() {
        assert_eq!(retention_minutes("-1").unwrap(), -1);
        assert_eq!(retention_minutes("3h").unwrap(), 180);
        assert_eq!(retention_minutes("2d").unwrap(), 2880);
        assert_eq!(retention_minutes("0").unwrap(), 0);
        assert_eq!(retention_minutes("120").unwrap(), 2);
        assert!(retention_minutes("30s").is_err());
        assert!(retention_minutes("soon").is_err());
        assert_eq!(retention_megabytes("-1").unwrap(), -1);
        assert_eq!(retention_megabytes("10G").unwrap(), 10 * 1024);
        assert_eq!(retention_megabytes("500m").unwrap(), 500);
        assert_eq!(retention_megabytes("1048576").unwrap(), 1);
        assert!(retention_megabytes("10k").is_err());
        assert!(retention_megabytes("lots").is_err());
        assert!(retention_megabytes("99999999999t").is_err());
        assert_eq!(ttl_seconds("1h").unwrap(), 3600);
        assert_eq!(ttl_seconds("90").unwrap(), 90);
        assert!(ttl_seconds("1500ms").is_err());
        assert!(ttl_seconds("100y").is_err());
    }

    #[test]
    fn timestamps() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            timestamp_millis("10m", now).unwrap(),
            1_700_000_000_000 - 600_000
        );
        assert_eq!(
            timestamp_millis("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            timestamp_millis("2023-11-15T00:13:20.5+02:00", now).unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            timestamp_millis("2023-11-14T20:13:20-02:00", now).unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            timestamp_millis("2023-11-14 22:13:20", now).unwrap(),
            1_700_000_000_000
        );
        for bad in [
            "yesterday",
            "2023-11-14",
            "2023-11-14T22:13:20+2",
            "100000y",
        ] {
            assert!(timestamp_millis(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_ids() {
        assert_eq!(message_id("12:3").unwrap(), (12, 3));
        assert_eq!(message_id("earliest").unwrap(), (-1, -1));
        assert_eq!(message_id("latest").unwrap(), (i64::MAX, i64::MAX));
        for bad in ["12", "a:b", "1:2:3", ""] {
            assert!(message_id(bad).is_err(), "{bad}");
        }
    }
}
