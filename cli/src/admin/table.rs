//! Plain-text tables for `strata admin`'s default output.
//!
//! Columns are separated by two spaces and padded to their widest cell
//! (counted in characters); a column whose cells are all numbers is
//! right-aligned so magnitudes line up. No borders: the output stays easy
//! to read and to cut with `awk`. Cells come from JSON values through
//! [`cell`], which writes a missing or null field as `-`.

use serde_json::Value;

/// A table with a header row.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        let mut numeric = vec![!self.rows.is_empty(); columns];
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
                numeric[i] &= c.is_empty() || c == "-" || is_number(c);
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String], align_numbers: bool| {
            let mut text = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i] - c.chars().count();
                if align_numbers && numeric[i] {
                    text.extend(std::iter::repeat_n(' ', pad));
                    text.push_str(c);
                } else {
                    text.push_str(c);
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.headers, false);
        for row in &self.rows {
            line(row, true);
        }
        out
    }
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// Two columns, field and value, without a header row.
pub fn key_values(pairs: &[(String, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let pad = width - k.chars().count();
        let line = format!("{k}{}  {v}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value as one table cell: strings bare, floats with two decimals,
/// arrays of scalars comma-separated, objects as compact JSON.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Some(Value::Array(items)) if items.iter().all(is_scalar) => items
            .iter()
            .map(|i| cell(Some(i)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Every leaf of a JSON object as `(dotted.path, cell)`, in the object's
/// order; arrays of objects stay one compact JSON cell.
pub fn flatten(v: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, child, out);
                }
            }
            other => out.push((prefix.to_string(), cell(Some(other)))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// The scalar fields of `obj`: those named in `first` in that order, then
/// the others in the object's order, so fields a server adds still show.
pub fn scalar_fields(obj: &Value, first: &[&str]) -> Vec<(String, String)> {
    let Some(map) = obj.as_object() else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = first
        .iter()
        .filter_map(|k| map.get(*k).map(|v| (k.to_string(), v)))
        .filter(|(_, v)| is_scalar(v))
        .map(|(k, v)| (k, cell(Some(v))))
        .collect();
    for (k, v) in map {
        if is_scalar(v) && !first.contains(&k.as_str()) {
            out.push((k.clone(), cell(Some(v))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_padded_and_numbers_right_aligned() {
        let mut t = Table::new(&["NAME", "BACKLOG", "TYPE"]);
        t.row(vec!["sub-a".into(), "3".into(), "Shared".into()]);
        t.row(vec!["longer-sub".into(), "1200".into(), "-".into()]);
        t.row(vec!["é".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "NAME        BACKLOG  TYPE\n\
             sub-a             3  Shared\n\
             longer-sub     1200  -\n\
             é                 -\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = Table::new(&["A", "B"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "A  B\n");
    }

    #[test]
    fn cells() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&json!(null))), "-");
        assert_eq!(cell(Some(&json!(12))), "12");
        assert_eq!(cell(Some(&json!(-1))), "-1");
        assert_eq!(cell(Some(&json!(1.23456))), "1.23");
        assert_eq!(cell(Some(&json!(["a", "b"]))), "a,b");
        assert_eq!(cell(Some(&json!([]))), "");
        assert_eq!(cell(Some(&json!([{"a": 1}]))), r#"[{"a":1}]"#);
        assert_eq!(cell(Some(&json!("x"))), "x");
    }

    #[test]
    fn nested_objects_flatten_to_dotted_keys() {
        let v = json!({
            "retention_policies": {"retentionTimeInMinutes": 60, "retentionSizeInMB": 10},
            "replication_clusters": ["standalone"],
            "empty": {},
        });
        let flat = flatten(&v);
        assert!(flat.contains(&(
            "retention_policies.retentionTimeInMinutes".into(),
            "60".into()
        )));
        assert!(flat.contains(&("replication_clusters".into(), "standalone".into())));
        assert!(flat.contains(&("empty".into(), "{}".into())));
        assert_eq!(
            key_values(&[("a".into(), "1".into()), ("long-key".into(), "x".into())]),
            "a         1\nlong-key  x\n"
        );
    }

    #[test]
    fn scalar_fields_put_known_ones_first() {
        let v = json!({"b": 1, "a": 2, "nested": {"x": 1}, "c": "z"});
        let got = scalar_fields(&v, &["c", "missing", "nested"]);
        let mut keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.first(), Some(&"c"));
        keys[1..].sort_unstable();
        assert_eq!(keys, ["c", "a", "b"]);
    }
}
