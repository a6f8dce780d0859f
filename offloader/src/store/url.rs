//! Parsing object store URLs into a [`Location`], and writing them back in
//! a canonical form.
//!
//! The canonical form is what Strata stores in ledger metadata to find an
//! offloaded ledger's objects again, so it must be stable (same store, same
//! string) and must never hold a secret: credentials are not accepted in the
//! URL at all, and error messages name the offending part without echoing
//! the URL (which might hold one).

use std::path::PathBuf;

use object_store::path::Path;
use url::Url;

use crate::error::{OffloadError, Result};

/// The region when neither the URL nor the environment names one (the AWS
/// default, and what MinIO answers to out of the box).
pub const DEFAULT_REGION: &str = "us-east-1";

/// The query keys an `s3://` URL may carry.
const S3_KEYS: &[&str] = &["endpoint", "region", "virtual_hosted", "profile"];

/// Where the objects live, as parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `file:///abs/dir`: a local directory (the embedded default).
    Local {
        dir: PathBuf,
    },
    S3(S3Location),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: Path,
    /// `http(s)://host[:port][/path]` without a trailing slash; `None` means AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Virtual-hosted addressing (`bucket.host`); path style otherwise, which
    /// is what MinIO and Garage answer to without DNS set-up.
    pub virtual_hosted: bool,
    /// A named profile of the shared AWS config/credentials files, instead of
    /// `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
}

impl Location {
    /// Parses `url`; `env_region` supplies the region when the URL has none
    /// (the caller reads `AWS_REGION`/`AWS_DEFAULT_REGION`).
    pub fn parse(url: &str, env_region: Option<String>) -> Result<Location> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            "file" => parse_file(url),
            "s3" => parse_s3(url, env_region).map(Location::S3),
            _ => Err(config(
                "unsupported object store URL: expected file:///ABSOLUTE/DIR or \
                 s3://BUCKET[/PREFIX][?endpoint=http://HOST:PORT&region=REGION]",
            )),
        }
    }

    /// The canonical URL: no secret, defaults filled in, stable.
    pub fn canonical(&self) -> String {
        match self {
            Location::Local { dir } => match Url::from_file_path(dir) {
                Ok(u) => u.to_string(),
                // Unreachable for the absolute paths `parse` accepts.
                Err(()) => format!("file://{}", dir.display()),
            },
            Location::S3(s3) => {
                let mut out = format!("s3://{}", s3.bucket);
                if !s3.prefix.is_root() {
                    out.push('/');
                    out.push_str(s3.prefix.as_ref());
                }
                let mut sep = '?';
                let mut param = |k: &str, v: &str| {
                    out.push(sep);
                    out.push_str(k);
                    out.push('=');
                    out.push_str(v);
                    sep = '&';
                };
                if let Some(endpoint) = &s3.endpoint {
                    param("endpoint", endpoint);
                }
                param("region", &s3.region);
                if s3.virtual_hosted {
                    param("virtual_hosted", "true");
                }
                if let Some(profile) = &s3.profile {
                    param("profile", profile);
                }
                out
            }
        }
    }
}

fn config(msg: impl Into<String>) -> OffloadError {
    OffloadError::Config(msg.into())
}

fn parse_url(url: &str) -> Result<Url> {
    // The parser's messages never quote the input, so a secret stays out.
    Url::parse(url).map_err(|e| config(format!("malformed object store URL: {e}")))
}

fn parse_file(url: &str) -> Result<Location> {
    let u = parse_url(url)?;
    if u.query().is_some() || u.fragment().is_some() {
        return Err(config("a file:// URL takes no query or fragment"));
    }
    if u.host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(config(
            "a file:// URL needs an absolute path: file:///ABSOLUTE/DIR (three slashes)",
        ));
    }
    let dir = u
        .to_file_path()
        .map_err(|()| config("a file:// URL needs an absolute local path"))?;
    if dir.as_os_str().len() <= 1 {
        return Err(config(
            "a file:// URL must name a directory, not the file system root",
        ));
    }
    // Trailing slashes would make two spellings of one store.
    let dir: PathBuf = dir.components().collect();
    Ok(Location::Local { dir })
}

fn parse_s3(url: &str, env_region: Option<String>) -> Result<S3Location> {
    let u = parse_url(url)?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(config(
            "credentials are not accepted in an s3:// URL: supply them through \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or instance credentials",
        ));
    }
    if u.port().is_some() {
        return Err(config(
            "an s3:// URL names a bucket, not a host: put the server in ?endpoint=http://HOST:PORT",
        ));
    }
    if u.fragment().is_some() {
        return Err(config("an s3:// URL takes no #fragment"));
    }
    let bucket = u.host_str().unwrap_or("").to_string();
    check_bucket(&bucket)?;
    let prefix = Path::from_url_path(u.path().trim_matches('/'))
        .map_err(|e| config(format!("invalid key prefix in s3:// URL: {e}")))?;

    let mut endpoint = None;
    let mut region = None;
    let mut virtual_hosted = None;
    let mut profile = None;
    for (key, value) in u.query_pairs() {
        let slot = match key.as_ref() {
            "endpoint" => &mut endpoint,
            "region" => &mut region,
            "virtual_hosted" => &mut virtual_hosted,
            "profile" => &mut profile,
            other => {
                return Err(config(format!(
                    "unknown query parameter {other:?} in s3:// URL (known: {})",
                    S3_KEYS.join(", ")
                )));
            }
        };
        if slot.is_some() {
            return Err(config(format!("query parameter {key:?} given twice")));
        }
        if value.is_empty() {
            return Err(config(format!("query parameter {key:?} is empty")));
        }
        *slot = Some(value.into_owned());
    }

    let endpoint = endpoint.map(|e| check_endpoint(&e)).transpose()?;
    let region = match region.or(env_region.filter(|r| !r.is_empty())) {
        Some(r) => check_name("region", r)?,
        None => DEFAULT_REGION.to_string(),
    };
    let virtual_hosted = match virtual_hosted.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(config("virtual_hosted must be true or false")),
    };
    let profile = profile.map(|p| check_name("profile", p)).transpose()?;
    Ok(S3Location {
        bucket,
        prefix,
        endpoint,
        region,
        virtual_hosted,
        profile,
    })
}

/// S3's bucket naming rules (3–63 of `a-z0-9.-`, starting and ending with a
/// letter or digit), which MinIO and Garage enforce too.
fn check_bucket(bucket: &str) -> Result<()> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(config(format!(
            "invalid bucket name {bucket:?}: 3-63 characters of a-z, 0-9, '.' and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

/// A region or profile name: plain characters only, so that it can go into
/// the canonical URL as is.
fn check_name(what: &str, value: String) -> Result<String> {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        Ok(value)
    } else {
        Err(config(format!(
            "invalid {what} {value:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn check_endpoint(endpoint: &str) -> Result<String> {
    let u = Url::parse(endpoint)
        .map_err(|e| config(format!("endpoint is not a URL ({e}): use http://HOST:PORT")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(config(format!(
            "endpoint scheme {:?} is not supported: use http:// or https://",
            u.scheme()
        )));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(config(
            "credentials are not accepted in the endpoint URL: supply them through \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile",
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(config("endpoint has no host: use http://HOST:PORT"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(config("endpoint takes no query or fragment"));
    }
    let origin = u.origin().ascii_serialization();
    Ok(format!("{origin}{}", u.path().trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(url: &str) -> S3Location {
        match Location::parse(url, None) {
            Ok(Location::S3(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn err(url: &str) -> String {
        match Location::parse(url, None) {
            Err(OffloadError::Config(msg)) => msg,
            other => panic!("{url}: expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn file_urls() {
        let loc = Location::parse("file:///var/lib/strata/cold/", None).unwrap();
        assert_eq!(
            loc,
            Location::Local {
                dir: PathBuf::from("/var/lib/strata/cold")
            }
        );
        assert_eq!(loc.canonical(), "file:///var/lib/strata/cold");
        let spaced = Location::parse("file:///tmp/a%20b", None).unwrap();
        assert_eq!(
            spaced,
            Location::Local {
                dir: PathBuf::from("/tmp/a b")
            }
        );
        assert_eq!(spaced.canonical(), "file:///tmp/a%20b");
        assert!(err("file://relative/dir").contains("absolute"));
        assert!(err("file:///").contains("root"));
        assert!(err("file:///tmp/x?endpoint=y").contains("no query"));
    }

    #[test]
    fn s3_path_style_endpoint() {
        let loc = s3("s3://strata/cluster1?endpoint=http://127.0.0.1:9000&region=garage");
        assert_eq!(loc.bucket, "strata");
        assert_eq!(loc.prefix.as_ref(), "cluster1");
        assert_eq!(loc.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(loc.region, "garage");
        assert!(!loc.virtual_hosted);
        assert_eq!(loc.profile, None);
        assert_eq!(
            Location::S3(loc).canonical(),
            "s3://strata/cluster1?endpoint=http://127.0.0.1:9000&region=garage"
        );
    }

    #[test]
    fn s3_defaults_and_normalisation() {
        // No prefix, no region: the environment's region, else us-east-1.
        let loc = s3("s3://my-bucket");
        assert!(loc.prefix.is_root());
        assert_eq!(loc.endpoint, None);
        assert_eq!(loc.region, DEFAULT_REGION);
        assert_eq!(
            Location::S3(loc).canonical(),
            "s3://my-bucket?region=us-east-1"
        );
        let Location::S3(env) = Location::parse("s3://b.c-d/", Some("eu-west-3".into())).unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(env.region, "eu-west-3");
        // The URL's region wins over the environment's.
        let Location::S3(url) =
            Location::parse("s3://bkt?region=ap-south-1", Some("eu-west-3".into())).unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(url.region, "ap-south-1");
        // Slashes and an encoded endpoint collapse to one spelling.
        let loc = s3("s3://bkt//a/b/?endpoint=http%3A%2F%2Fminio.local%3A9000%2F\
                      &virtual_hosted=true&profile=cold");
        assert_eq!(loc.prefix.as_ref(), "a/b");
        assert!(loc.virtual_hosted);
        assert_eq!(
            Location::S3(loc).canonical(),
            "s3://bkt/a/b?endpoint=http://minio.local:9000&region=us-east-1\
             &virtual_hosted=true&profile=cold"
        );
        assert!(!s3("s3://bkt?virtual_hosted=false").virtual_hosted);
        // The canonical form parses back to the same location.
        let loc = s3("s3://bkt/p?endpoint=https://s3.example.com&region=r1&profile=x");
        assert_eq!(s3(&Location::S3(loc.clone()).canonical()), loc);
    }

    #[test]
    fn s3_errors_name_the_problem() {
        assert!(err("s3://bkt?endpont=http://x").contains("\"endpont\""));
        assert!(err("s3://bkt?region=a&region=b").contains("twice"));
        assert!(err("s3://bkt?region=").contains("empty"));
        assert!(err("s3://bkt?virtual_hosted=yes").contains("true or false"));
        assert!(err("s3://Upper").contains("bucket name"));
        assert!(err("s3://ab").contains("bucket name"));
        assert!(err("s3://-bkt").contains("bucket name"));
        assert!(err("s3://bkt:9000").contains("endpoint"));
        assert!(err("s3://bkt?endpoint=ftp://x").contains("scheme"));
        assert!(err("s3://bkt?endpoint=nothing").contains("not a URL"));
        assert!(err("s3://bkt?endpoint=http://h:1/?x=1").contains("no query"));
        assert!(err("s3://bkt?region=a/b").contains("region"));
        assert!(err("s3://bkt/a%2F%2Fb").contains("prefix"));
        assert_eq!(s3("s3://bkt/a/../b").prefix.as_ref(), "b");
        assert!(err("gs://bkt").contains("unsupported"));
        assert!(err("/plain/path").contains("unsupported"));
    }

    #[test]
    fn secrets_are_refused_and_never_echoed() {
        for url in [
            "s3://AKIDEXAMPLE:s3cr3tValue@bkt/p",
            "s3://bkt/p?endpoint=http://AKIDEXAMPLE:s3cr3tValue@127.0.0.1:9000",
            "s3://bkt/p?secret_access_key=s3cr3tValue",
        ] {
            let msg = err(url);
            assert!(!msg.contains("s3cr3tValue"), "{url}: {msg}");
        }
        assert!(err("s3://AKIDEXAMPLE:s3cr3tValue@bkt").contains("credentials"));
    }
}
