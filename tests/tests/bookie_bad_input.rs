//! Bad input against a live bookie process (f): bad checksums, missing and
//! oversized entries, reads of what does not exist, invalid ranges, and raw
//! garbage on its TCP port are rejected, nothing bad is stored, and the
//! bookie keeps serving.
//!
//! Helpers and conventions (time bounds, seeds, etcd) are in
//! [`strata_tests::fault`].

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_proto::bookie::{AddEntry, AddRequest, AddResponse, AddResult, AddStatus, ReadRequest};
use strata_proto::{ADD_ENTRIES_PATH, GRPC_MESSAGE_PREFIX};
use strata_tests::bookie::BookieProcess;
use strata_tests::fault::{
    args, bounded, client, entry, fast_config, random_payload, raw_add, raw_client, raw_read, seed,
    start_etcd, status_of,
};
use tempfile::TempDir;
use tonic::codegen::{Service, http};

// ---------------------------------------------------------------------------
// f. Bad input against a live bookie
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_rejected_and_the_bookie_survives() {
    let name = "bad_requests";
    bounded(name, Duration::from_secs(120), async {
        let seed = seed(name, 0x5EED_0010);
        let mut rng = StdRng::seed_from_u64(seed);
        let etcd = start_etcd().await;
        let dir = TempDir::new().unwrap();
        let mut bookie = BookieProcess::start(dir.path().join("b0"), &etcd.url(), &args(&[])).await;
        let address = bookie.address();
        let mut rpc = raw_client(&address).await;

        // Wrong checksum: rejected, nothing stored (the ledger stays unknown).
        let mut bad = entry(7001, 0, 5, Bytes::from_static(b"hello"));
        bad.crc32c ^= 1;
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(bad),
                lac: -1,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::BadChecksum, "{r:?}");
        let s = raw_read(&mut rpc, 7001, 0, 0)
            .await
            .expect_err("nothing stored");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");

        // An add without an entry.
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: None,
                lac: -1,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Invalid, "{r:?}");

        // Reads of what does not exist, and of an empty range.
        let s = raw_read(&mut rpc, 999_999, 0, 0)
            .await
            .expect_err("unknown ledger");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
        let payload = random_payload(&mut rng, 1024);
        let len = payload.len() as u64;
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(entry(7002, 0, len, payload.clone())),
                lac: -1,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Ok, "{r:?}");
        // A bad checksum on a known ledger stores nothing either.
        let mut bad = entry(7002, 1, len + 3, Bytes::from_static(b"xyz"));
        bad.payload = Bytes::from_static(b"xyZ");
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(bad),
                lac: 0,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::BadChecksum, "{r:?}");
        let s = raw_read(&mut rpc, 7002, 1, 1)
            .await
            .expect_err("corrupt entry not stored");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
        let s = raw_read(&mut rpc, 7002, 5, 5)
            .await
            .expect_err("unknown entry");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
        let s = raw_read(&mut rpc, 7002, 3, 1)
            .await
            .expect_err("first > last");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s}");
        let s = rpc
            .read_entries(ReadRequest {
                ledger_id: 7002,
                entry_ids: (0..10_001).collect(),
                ..Default::default()
            })
            .await
            .expect_err("too many ids");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s}");

        // An entry over the 5 MiB limit (with a valid checksum).
        let big = Bytes::from(vec![0x5Au8; (5 << 20) + 1]);
        let big_len = len + big.len() as u64;
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(entry(7002, 1, big_len, big)),
                lac: 0,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Invalid, "{r:?}");
        let s = raw_read(&mut rpc, 7002, 1, 1)
            .await
            .expect_err("oversized entry not stored");
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");

        // Malformed add streams: each ends with a gRPC status that says
        // what was wrong, after the results of the adds before it.
        let good = |id: u64| AddRequest {
            entries: vec![AddEntry {
                entry: Some(entry(7003, id, 4, Bytes::from_static(b"good"))),
                lac: -1,
                recovery: false,
            }],
        };
        let cases = vec![
            BadStream {
                what: "not protobuf",
                body: framed(0, &[0x0a, 0x7f, 0x01]),
                encoding: None,
                code: tonic::Code::Internal,
                says: "decode",
            },
            BadStream {
                what: "a good add, then not protobuf",
                body: [framed(0, &good(0).encode_to_vec()), framed(0, &[0xff; 3])].concat(),
                encoding: None,
                code: tonic::Code::Internal,
                says: "decode",
            },
            BadStream {
                what: "compressed",
                body: framed(1, &good(1).encode_to_vec()),
                encoding: None,
                code: tonic::Code::Internal,
                says: "compress",
            },
            BadStream {
                what: "longer than the limit",
                body: vec![0, 0x05, 0x00, 0x00, 0x01],
                encoding: None,
                code: tonic::Code::OutOfRange,
                says: "larger than the limit",
            },
            BadStream {
                what: "cut inside a message",
                body: framed(0, &good(1).encode_to_vec())[..12].to_vec(),
                encoding: None,
                code: tonic::Code::Internal,
                says: "ended inside a message",
            },
            BadStream {
                what: "gzip",
                body: framed(0, &good(1).encode_to_vec()),
                encoding: Some("gzip"),
                code: tonic::Code::Unimplemented,
                says: "compression",
            },
        ];
        for BadStream {
            what,
            body,
            encoding,
            code,
            says,
        } in cases
        {
            let (status, results) = raw_add_stream(&address, body, encoding).await;
            assert_eq!(status.code(), code, "{what}: {status}");
            assert!(status.message().contains(says), "{what}: {status}");
            let oks = results
                .iter()
                .filter(|r| status_of(r) == AddStatus::Ok)
                .count();
            assert_eq!(oks, usize::from(what.starts_with("a good add")), "{what}");
        }
        // Only the one good add was stored.
        let got = raw_read(&mut rpc, 7003, 0, 1).await.expect("the good add");
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].payload[..], b"good");

        // Raw garbage on the TCP port: random bytes; an HTTP/2 preface then
        // junk frames; an HTTP/1 request; a connection closed mid-preface.
        let mut junk = vec![0u8; 64 << 10];
        rng.fill(&mut junk[..]);
        let mut preface_then_junk = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        preface_then_junk.extend_from_slice(&junk[..4096]);
        let payloads: Vec<Vec<u8>> = vec![
            junk,
            preface_then_junk,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PRI * HTTP".to_vec(),
            vec![0xFF; 9],
        ];
        for p in payloads {
            let mut s = TcpStream::connect(&address).expect("connect to bookie port");
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            // The server may close on us mid-write; that is fine.
            let _ = s.write_all(&p);
            let _ = s.flush();
            drop(s);
        }
        assert!(
            bookie.is_running(),
            "bookie died on garbage\n{}",
            bookie.log_tail()
        );

        // After all that, a normal add and read work on a new connection.
        let mut rpc = raw_client(&address).await;
        let p2 = random_payload(&mut rng, 1024);
        let r = raw_add(
            &mut rpc,
            vec![AddEntry {
                entry: Some(entry(7002, 1, len + p2.len() as u64, p2.clone())),
                lac: 0,
                recovery: false,
            }],
        )
        .await;
        assert_eq!(status_of(&r[0]), AddStatus::Ok, "{r:?}");
        let got = raw_read(&mut rpc, 7002, 0, 1).await.expect("read back");
        assert_eq!(got.len(), 2);
        assert!(got[0].payload == payload && got[1].payload == p2);

        // And through the ledger client end to end.
        let c = client(&etcd.url(), fast_config()).await;
        let w = c.create(1, 1, 1).await.expect("create");
        w.append(Bytes::from_static(b"still fine"))
            .await
            .expect("append");
        let last = w.close().await.expect("close");
        let got = c
            .open(w.ledger_id())
            .await
            .unwrap()
            .read(0, last as u64)
            .await
            .unwrap();
        assert_eq!(&got[0].payload[..], b"still fine");
        assert!(
            bookie.is_running(),
            "bookie alive at the end\n{}",
            bookie.log_tail()
        );
    })
    .await;
}

/// A malformed add stream, and how the bookie must end it.
struct BadStream {
    what: &'static str,
    body: Vec<u8>,
    encoding: Option<&'static str>,
    code: tonic::Code,
    says: &'static str,
}

/// A gRPC message: compression flag, length, bytes.
fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Sends `body` as the whole request body of an add stream (with
/// `grpc-encoding` if given); returns the status the bookie ended the call
/// with and the add results it sent before.
async fn raw_add_stream(
    address: &str,
    body: Vec<u8>,
    encoding: Option<&str>,
) -> (tonic::Status, Vec<AddResult>) {
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the bookie");
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{address}{ADD_ENTRIES_PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(e) = encoding {
        request = request.header("grpc-encoding", e);
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(body),
        )))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("channel ready");
    let response = tokio::time::timeout(Duration::from_secs(10), channel.call(request))
        .await
        .expect("an answer within 10 s")
        .expect("an HTTP response");
    let (parts, body) = response.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the whole answer within 10 s")
        .expect("the response body");
    // A call refused up front carries its status in the headers.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&parts.headers))
        .expect("a grpc-status");
    let mut data = collected.to_bytes();
    let mut results = Vec::new();
    while data.len() >= GRPC_MESSAGE_PREFIX {
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let message = data
            .split_to(GRPC_MESSAGE_PREFIX + len)
            .split_off(GRPC_MESSAGE_PREFIX);
        results.extend(
            AddResponse::decode(message)
                .expect("an AddResponse")
                .results,
        );
    }
    (status, results)
}
