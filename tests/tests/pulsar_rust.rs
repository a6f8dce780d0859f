//! Compatibility of `strata standalone` with the Rust Pulsar client (the
//! `pulsar` crate, streamnative/pulsar-rs): round trips with batching off
//! and on and every compression codec, a Shared subscription with two
//! consumers, a reader and a new subscription from the earliest message,
//! keys/properties/event time, and a clean restart that keeps the messages
//! and the subscription's position.
//!
//! Each test starts its own standalone in a temporary directory; every
//! client call is bounded ([`within`]), and a failure prints the
//! standalone's log tail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt;
use pulsar::compression::{
    Compression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd,
};
use pulsar::consumer::InitialPosition;
use pulsar::proto::MessageIdData;
use pulsar::{
    Consumer, ConsumerOptions, OperationRetryOptions, Producer, ProducerOptions, Pulsar, SubType,
    TokioExecutor, producer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_tests::fault::{bounded, seed};
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

/// The bound on one client call.
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// How long to wait to be sure that no further message comes.
const SILENCE: Duration = Duration::from_millis(1500);

type Client = Pulsar<TokioExecutor>;
type BytesConsumer = Consumer<Vec<u8>, TokioExecutor>;

/// Awaits `fut` for at most [`CALL_LIMIT`]; panics with `what`, the error
/// and the standalone's log tail if it fails or does not finish.
async fn within<T, E: std::fmt::Debug>(
    s: &StandaloneProcess,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> T {
    // Boxed: the client's futures are large, and debug builds keep the
    // test's future on the test thread's stack.
    match tokio::time::timeout(CALL_LIMIT, Box::pin(fut)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}\n{}", s.log_tail()),
        Err(_) => panic!("{what}: no answer within {CALL_LIMIT:?}\n{}", s.log_tail()),
    }
}

async fn client(s: &StandaloneProcess) -> Client {
    let builder = Pulsar::builder(s.service_url(), TokioExecutor).with_operation_retry_options(
        OperationRetryOptions {
            operation_timeout: Duration::from_secs(10),
            retry_delay: Duration::from_millis(200),
            max_retries: Some(20),
        },
    );
    within(s, "connect the Rust client", builder.build()).await
}

fn topic(name: &str, seed: u64) -> String {
    format!("persistent://public/default/{name}-{seed:x}")
}

async fn producer(
    s: &StandaloneProcess,
    pulsar: &Client,
    topic: &str,
    mut options: ProducerOptions,
) -> Producer<TokioExecutor> {
    // Wait for room in the connection's outbound queue instead of failing a
    // send with SlowDown when many are in flight.
    options.block_queue_if_full = true;
    let builder = pulsar.producer().with_topic(topic).with_options(options);
    within(s, "create a producer", builder.build()).await
}

async fn consumer(
    s: &StandaloneProcess,
    pulsar: &Client,
    topic: &str,
    subscription: &str,
    sub_type: SubType,
    name: &str,
) -> BytesConsumer {
    let builder = pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(sub_type)
        .with_consumer_name(name)
        .with_batch_size(20)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest));
    within(s, "subscribe", builder.build::<Vec<u8>>()).await
}

/// Deterministic payloads `m<index>:<random bytes>`.
fn payloads(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut p = format!("m{i:08}:").into_bytes();
            let len = rng.random_range(0..2048);
            if i % 3 == 0 {
                p.resize(p.len() + len, b'z');
            } else {
                let start = p.len();
                p.resize(start + len, 0);
                rng.fill(&mut p[start..]);
            }
            p
        })
        .collect()
}

fn index_of(payload: &[u8]) -> usize {
    std::str::from_utf8(&payload[1..9])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "not a test payload: {:?}",
                &payload[..payload.len().min(16)]
            )
        })
}

/// Sends every message without waiting in between, then waits for every
/// receipt (a batching producer's pending batch is flushed first).
async fn send_all(
    s: &StandaloneProcess,
    p: &mut Producer<TokioExecutor>,
    msgs: Vec<producer::Message>,
    batching: bool,
) {
    let mut receipts = Vec::with_capacity(msgs.len());
    for m in msgs {
        receipts.push(within(s, "send", p.send_non_blocking(m)).await);
    }
    if batching {
        within(s, "flush the batch", p.send_batch()).await;
    }
    for (i, r) in receipts.into_iter().enumerate() {
        within(s, &format!("receipt of message {i}"), r).await;
    }
}

fn plain(payload: &[u8]) -> producer::Message {
    producer::Message {
        payload: payload.to_vec(),
        ..Default::default()
    }
}

/// The next message, or a panic naming `what`.
async fn next(
    s: &StandaloneProcess,
    c: &mut BytesConsumer,
    what: &str,
) -> pulsar::consumer::Message<Vec<u8>> {
    match within(s, what, c.try_next()).await {
        Some(m) => m,
        None => panic!("{what}: the consumer stream ended\n{}", s.log_tail()),
    }
}

/// Panics if a message arrives within [`SILENCE`].
async fn expect_silence(s: &StandaloneProcess, c: &mut BytesConsumer, what: &str) {
    if let Ok(m) = tokio::time::timeout(SILENCE, c.try_next()).await {
        let m = m
            .ok()
            .flatten()
            .map(|m| m.payload.data[..16.min(m.payload.data.len())].to_vec());
        panic!("{what}: unexpected message {m:?}\n{}", s.log_tail());
    }
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_round_trip_with_and_without_batching() {
    let name = "rust_round_trip";
    bounded(name, Duration::from_secs(300), Box::pin(async {
        let seed = seed(name, 0x5EED_0001);
        let dir = TempDir::new().unwrap();
        let s = StandaloneProcess::start_in(&dir).await;
        let pulsar = client(&s).await;
        let codecs: Vec<(&str, Option<Compression>)> = vec![
            ("none", None),
            ("lz4", Some(Compression::Lz4(CompressionLz4::default()))),
            ("zlib", Some(Compression::Zlib(CompressionZlib::default()))),
            ("zstd", Some(Compression::Zstd(CompressionZstd::default()))),
            ("snappy", Some(Compression::Snappy(CompressionSnappy::default()))),
        ];
        for batching in [false, true] {
            for (codec, compression) in &codecs {
                let case = format!("batching={batching} compression={codec}");
                let t = topic(&format!("rust-rt-{batching}-{codec}"), seed);
                let mut c = consumer(&s, &pulsar, &t, "sub", SubType::Exclusive, "c").await;
                let options = ProducerOptions {
                    batch_size: batching.then_some(50),
                    batch_timeout: batching.then_some(Duration::from_millis(20)),
                    compression: compression.clone(),
                    ..Default::default()
                };
                let mut p = producer(&s, &pulsar, &t, options).await;
                let sent = payloads(seed, 200);
                send_all(&s, &mut p, sent.iter().map(|d| plain(d)).collect(), batching).await;
                let mut batched = 0;
                for (i, want) in sent.iter().enumerate() {
                    let m = next(&s, &mut c, &format!("{case}: message {i}")).await;
                    assert!(
                        &m.payload.data == want,
                        "{case}: message {i}: got {} bytes starting {:?}, want {} bytes starting {:?}",
                        m.payload.data.len(),
                        &m.payload.data[..16.min(m.payload.data.len())],
                        want.len(),
                        &want[..16.min(want.len())]
                    );
                    if m.message_id().batch_index.is_some_and(|b| b >= 0) {
                        batched += 1;
                    }
                    within(&s, "ack", c.ack(&m)).await;
                }
                expect_silence(&s, &mut c, &format!("{case}: after 200 messages")).await;
                if batching {
                    assert!(batched > 0, "{case}: no message came from a batch");
                } else {
                    assert_eq!(batched, 0, "{case}: messages from batches");
                }
                within(&s, "close the producer", p.close()).await;
                within(&s, "close the consumer", c.close()).await;
            }
        }
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_shared_subscription_with_two_consumers() {
    let name = "rust_shared";
    bounded(
        name,
        Duration::from_secs(180),
        Box::pin(async {
            let seed = seed(name, 0x5EED_0002);
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let pulsar = client(&s).await;
            let t = topic("rust-shared", seed);
            let consumers = vec![
                consumer(&s, &pulsar, &t, "sub", SubType::Shared, "c0").await,
                consumer(&s, &pulsar, &t, "sub", SubType::Shared, "c1").await,
            ];
            let mut p = producer(&s, &pulsar, &t, ProducerOptions::default()).await;
            let n = 300;
            let sent = payloads(seed, n);
            send_all(&s, &mut p, sent.iter().map(|d| plain(d)).collect(), false).await;

            // Each consumer reads (and acknowledges) until it has been idle for
            // 3 s; both run at once.
            let tasks: Vec<_> = consumers
                .into_iter()
                .map(|mut c| {
                    let sent = sent.clone();
                    tokio::spawn(async move {
                        let mut got = Vec::new();
                        while let Ok(m) =
                            tokio::time::timeout(Duration::from_secs(3), c.try_next()).await
                        {
                            let m = m.expect("receive").expect("consumer stream ended");
                            let i = index_of(&m.payload.data);
                            assert!(m.payload.data == sent[i], "payload of message {i} differs");
                            got.push(i);
                            c.ack(&m).await.expect("ack");
                        }
                        got
                    })
                })
                .collect();
            let mut per_consumer = Vec::new();
            for t in tasks {
                per_consumer.push(t.await.expect("consumer task"));
            }
            let mut all: Vec<usize> = per_consumer.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..n).collect::<Vec<_>>(),
                "every message exactly once over both consumers\n{}",
                s.log_tail()
            );
            let counts: Vec<usize> = per_consumer.iter().map(Vec::len).collect();
            assert!(
                counts.iter().all(|&c| c > 0),
                "messages not spread over the consumers: {counts:?}"
            );
            eprintln!("{name}: {n} messages spread as {counts:?}");
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_reader_and_consumer_from_earliest() {
    let name = "rust_earliest";
    bounded(
        name,
        Duration::from_secs(180),
        Box::pin(async {
            let seed = seed(name, 0x5EED_0003);
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let pulsar = client(&s).await;
            let t = topic("rust-earliest", seed);
            let mut p = producer(&s, &pulsar, &t, ProducerOptions::default()).await;
            let sent = payloads(seed, 50);
            send_all(&s, &mut p, sent.iter().map(|d| plain(d)).collect(), false).await;

            // Pulsar starts a reader (a non-durable subscription) that names
            // no start message at the latest message, whatever its initial
            // position says, and pulsar-rs sends none unless given: name the
            // earliest one, (-1, -1) on the wire.
            let earliest = MessageIdData {
                ledger_id: u64::MAX,
                entry_id: u64::MAX,
                ..Default::default()
            };
            let builder = pulsar.reader().with_topic(&t).with_options(
                ConsumerOptions::default()
                    .with_initial_position(InitialPosition::Earliest)
                    .starting_on_message(earliest),
            );
            let mut reader = within(&s, "create a reader", builder.into_reader::<Vec<u8>>()).await;
            for (i, want) in sent.iter().enumerate() {
                let m = within(&s, &format!("reader: message {i}"), reader.try_next())
                    .await
                    .unwrap_or_else(|| panic!("reader stream ended at message {i}"));
                assert!(&m.payload.data == want, "reader: message {i} differs");
            }
            if let Ok(m) = tokio::time::timeout(SILENCE, reader.try_next()).await {
                panic!(
                    "reader: unexpected message after 50: {:?}",
                    m.map(|m| m.map(|m| m.message_id().clone()))
                );
            }

            let mut c = consumer(&s, &pulsar, &t, "late-sub", SubType::Exclusive, "late").await;
            for (i, want) in sent.iter().enumerate() {
                let m = next(
                    &s,
                    &mut c,
                    &format!("new subscription from earliest: message {i}"),
                )
                .await;
                assert!(
                    &m.payload.data == want,
                    "new subscription: message {i} differs"
                );
                within(&s, "ack", c.ack(&m)).await;
            }
            expect_silence(&s, &mut c, "new subscription after 50 messages").await;
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_keys_properties_and_event_time_round_trip() {
    let name = "rust_fields";
    bounded(
        name,
        Duration::from_secs(180),
        Box::pin(async {
            let seed = seed(name, 0x5EED_0004);
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let pulsar = client(&s).await;
            for batching in [false, true] {
                let t = topic(&format!("rust-fields-{batching}"), seed);
                let mut c = consumer(&s, &pulsar, &t, "sub", SubType::Exclusive, "c").await;
                let options = ProducerOptions {
                    batch_size: batching.then_some(10),
                    batch_timeout: batching.then_some(Duration::from_millis(20)),
                    ..Default::default()
                };
                let mut p = producer(&s, &pulsar, &t, options).await;
                let mut sent = Vec::new();
                for i in 0..20u64 {
                    let mut properties = HashMap::new();
                    if i % 2 == 1 {
                        properties.insert("index".to_string(), i.to_string());
                        properties.insert("unicode".to_string(), "grüße ✓".to_string());
                        properties.insert("empty".to_string(), String::new());
                    }
                    sent.push(producer::Message {
                        payload: format!("m{i:08}:fields").into_bytes(),
                        properties,
                        partition_key: (i % 4 != 0).then(|| format!("key-{}", i % 3)),
                        event_time: (i % 3 != 0).then_some(1_700_000_000_000 + i),
                        ..Default::default()
                    });
                }
                send_all(&s, &mut p, sent.clone(), batching).await;
                for (i, want) in sent.iter().enumerate() {
                    let what = format!("batching={batching}: message {i}");
                    let m = next(&s, &mut c, &what).await;
                    let md = &m.payload.metadata;
                    assert_eq!(m.payload.data, want.payload, "{what}: payload");
                    assert_eq!(md.partition_key, want.partition_key, "{what}: key");
                    let props: BTreeMap<String, String> = md
                        .properties
                        .iter()
                        .map(|kv| (kv.key.clone(), kv.value.clone()))
                        .collect();
                    let want_props: BTreeMap<String, String> =
                        want.properties.clone().into_iter().collect();
                    assert_eq!(props, want_props, "{what}: properties");
                    assert_eq!(
                        md.event_time.filter(|&t| t != 0),
                        want.event_time,
                        "{what}: event time"
                    );
                    within(&s, "ack", c.ack(&m)).await;
                }
                expect_silence(
                    &s,
                    &mut c,
                    &format!("batching={batching}: after 20 messages"),
                )
                .await;
            }
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_restart_keeps_messages_and_subscription_position() {
    let name = "rust_restart";
    bounded(
        name,
        Duration::from_secs(300),
        Box::pin(async {
            let seed = seed(name, 0x5EED_0005);
            let dir = TempDir::new().unwrap();
            let mut s = StandaloneProcess::start_in(&dir).await;
            let t = topic("rust-restart", seed);
            let sent = payloads(seed, 100);
            let acked: BTreeSet<usize> = (0..30).chain([35, 36, 50]).collect();
            {
                let pulsar = client(&s).await;
                let mut c = consumer(&s, &pulsar, &t, "sub", SubType::Exclusive, "c").await;
                let mut p = producer(&s, &pulsar, &t, ProducerOptions::default()).await;
                send_all(&s, &mut p, sent.iter().map(|d| plain(d)).collect(), false).await;
                for (i, want) in sent.iter().enumerate() {
                    let m = next(&s, &mut c, &format!("before the restart: message {i}")).await;
                    assert!(
                        &m.payload.data == want,
                        "before the restart: message {i} differs"
                    );
                    if acked.contains(&i) {
                        within(&s, "ack", c.ack(&m)).await;
                    }
                }
                // Closing goes through the consumer's engine after the acks, so
                // they are on the wire before CLOSE_CONSUMER.
                within(&s, "close the consumer", c.close()).await;
                within(&s, "close the producer", p.close()).await;
            }
            s.stop_cleanly().await;
            s.restart().await;

            let pulsar = client(&s).await;
            let mut c = consumer(&s, &pulsar, &t, "sub", SubType::Exclusive, "c").await;
            for i in (0..100).filter(|i| !acked.contains(i)) {
                let m = next(&s, &mut c, &format!("after the restart: message {i}")).await;
                let got = index_of(&m.payload.data);
                assert_eq!(got, i, "after the restart: next unacknowledged message");
                assert!(
                    m.payload.data == sent[i],
                    "after the restart: message {i} differs"
                );
                within(&s, "ack", c.ack(&m)).await;
            }
            expect_silence(&s, &mut c, "after the restart: after the last message").await;

            let mut fresh = consumer(&s, &pulsar, &t, "fresh-sub", SubType::Exclusive, "f").await;
            for (i, want) in sent.iter().enumerate() {
                let m = next(
                    &s,
                    &mut fresh,
                    &format!("new subscription after the restart: message {i}"),
                )
                .await;
                assert!(
                    &m.payload.data == want,
                    "new subscription after the restart: message {i} differs"
                );
            }
            expect_silence(&s, &mut fresh, "new subscription after the restart").await;
            drop((c, fresh, pulsar));
            s.stop_cleanly().await;
        }),
    )
    .await;
}
