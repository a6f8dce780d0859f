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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_proto::bookie::{AddEntry, AddStatus, ReadRequest};
use strata_tests::bookie::BookieProcess;
use strata_tests::fault::{
    args, bounded, client, entry, fast_config, random_payload, raw_add, raw_client, raw_read, seed,
    start_etcd, status_of,
};
use tempfile::TempDir;

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
