//! `strata-client` (the client `strata perf` uses) against a real
//! `strata standalone`: batched and unbatched round trips with contents,
//! order and message ids checked, individual, cumulative and mid-batch
//! cumulative acknowledgements checked by re-subscribing, oversized
//! messages refused without harming the producer, and the client's memory
//! limit holding sends back while receipts are owed, and a malformed batch
//! (from a producer of our own) refused whole by the consumer.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_client::{
    Client, ClientError, ClientOptions, Consumer, ConsumerOptions, InitialPosition, MessageId,
    ProducerOptions, SubscriptionType,
};
use strata_tests::fault::{bounded, seed};
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(240);
const CALL: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = strata_client::Result<T>>) -> T {
    match tokio::time::timeout(CALL, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {CALL:?}"),
    }
}

fn earliest() -> ConsumerOptions {
    ConsumerOptions {
        subscription_type: SubscriptionType::Exclusive,
        initial_position: InitialPosition::Earliest,
        receiver_queue_size: 100,
        name: None,
    }
}

/// The send index the test writes into the first 8 bytes of each payload.
fn index_of(payload: &[u8]) -> u64 {
    payload
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(u64::MAX, u64::from_be_bytes)
}

async fn subscribe(client: &Client, topic: &str, sub: &str) -> Consumer {
    within("subscribe", client.subscribe(topic, sub, earliest())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_batches_round_trip_in_order() {
    bounded(
        "client_batches_round_trip_in_order",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let mut rng = StdRng::seed_from_u64(seed("client_batches_round_trip_in_order", 7));
            let client = within(
                "connect",
                Client::connect(s.service_url(), ClientOptions::default()),
            )
            .await;
            let topic = "persistent://public/default/client-batches";
            // Subscribed before producing, so every message is in the backlog.
            let mut all = subscribe(&client, topic, "all").await;
            let mut partial = subscribe(&client, topic, "partial").await;
            within("close", partial.close()).await;
            partial = subscribe(&client, topic, "partial").await;

            let producer = within(
                "create producer",
                client.create_producer(
                    topic,
                    ProducerOptions {
                        batch_max_messages: 64,
                        batch_max_bytes: 16 << 10,
                        batch_max_delay: Duration::from_millis(5),
                        max_pending_messages: 500,
                        ..ProducerOptions::default()
                    },
                ),
            )
            .await;
            const N: usize = 3000;
            let payloads: Vec<Vec<u8>> = (0..N)
                .map(|i| {
                    let len = rng.random_range(8..=600);
                    let mut p = vec![0u8; len];
                    rng.fill(&mut p[..]);
                    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    p
                })
                .collect();
            let mut futures = Vec::with_capacity(N);
            for (i, p) in payloads.iter().enumerate() {
                futures.push(within("send", producer.send(p)).await);
                if i % 997 == 0 {
                    within("flush", producer.flush()).await;
                }
            }
            let mut ids: Vec<MessageId> = Vec::with_capacity(N);
            for f in futures {
                ids.push(within("receipt", f).await);
            }
            // Ids grow in send order; batches really formed.
            for w in ids.windows(2) {
                assert!(w[0] < w[1], "ids out of order: {} then {}", w[0], w[1]);
            }
            for id in &ids {
                assert!(
                    id.batch_index >= 0 && id.batch_index < id.batch_size,
                    "{id:?}"
                );
                assert_eq!(id.partition, -1);
            }
            let entries: std::collections::BTreeSet<_> =
                ids.iter().map(|i| (i.ledger_id, i.entry_id)).collect();
            assert!(
                entries.len() > 1 && entries.len() < N / 4,
                "{} entries for {N} messages",
                entries.len()
            );

            // Both subscriptions get every message, in order, with the same ids.
            let mut last_seq = None;
            for (i, expected) in payloads.iter().enumerate() {
                let m = within("receive", all.receive()).await;
                assert_eq!(
                    &m.payload[..],
                    &expected[..],
                    "payload of message {i}: got {} ({}), expected {}",
                    index_of(&m.payload),
                    m.id,
                    ids[i]
                );
                assert_eq!(m.id, ids[i], "id of message {i}");
                if let Some(prev) = last_seq {
                    assert!(m.sequence_id > prev);
                }
                last_seq = Some(m.sequence_id);
                if i < N / 2 {
                    within("ack", all.ack(&m.id)).await;
                } else if i == N - 1 {
                    within("ack cumulative", all.ack_cumulative(&m.id)).await;
                }
            }
            // Cumulative ack in the middle of a batch: the rest of the batch stays.
            let cut = (N / 3..N)
                .find(|&i| ids[i].batch_index == 1 && ids[i].batch_size >= 3)
                .expect("a batch of at least 3 messages");
            for (i, expected) in payloads.iter().enumerate() {
                let m = within("receive", partial.receive()).await;
                assert_eq!(
                    &m.payload[..],
                    &expected[..],
                    "payload of message {i}: got {} ({}), expected {}",
                    index_of(&m.payload),
                    m.id,
                    ids[i]
                );
                if i == cut {
                    within("ack cumulative mid-batch", partial.ack_cumulative(&m.id)).await;
                }
            }

            // A marker after everything: a resubscribed "all" starts there, so
            // nothing acknowledged came back.
            let marker = within("send marker", producer.send(b"marker--")).await;
            within("flush", producer.flush()).await;
            let marker_id = within("marker receipt", marker).await;
            within("close", all.close()).await;
            let mut all = subscribe(&client, topic, "all").await;
            let m = within("receive after resubscribe", all.receive()).await;
            assert_eq!(&m.payload[..], b"marker--", "redelivered {}", m.id);
            assert_eq!(m.id, marker_id);

            within("close", partial.close()).await;
            let mut partial = subscribe(&client, topic, "partial").await;
            let m = within("receive after mid-batch ack", partial.receive()).await;
            assert_eq!(m.id, ids[cut + 1], "first message after the cumulative ack");
            assert_eq!(&m.payload[..], &payloads[cut + 1][..]);

            // Too large for the broker: refused here; the producer goes on.
            let huge = vec![0u8; 6 << 20];
            match producer.send(&huge).await {
                Err(ClientError::MessageTooLarge { .. }) => {}
                Err(e) => panic!("oversized send: unexpected error {e}"),
                Ok(_) => panic!("oversized send accepted"),
            }
            let after = within("send after refusal", producer.send(b"after---")).await;
            within("flush", producer.flush()).await;
            within("receipt after refusal", after).await;
            within("close producer", producer.close()).await;
            client.close().await;
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unbatched_round_trip() {
    bounded(
        "client_unbatched_round_trip",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let client = within(
                "connect",
                Client::connect(s.service_url(), ClientOptions::default()),
            )
            .await;
            let topic = "client-single";
            let mut consumer = subscribe(&client, topic, "sub").await;
            let producer = within(
                "create producer",
                client.create_producer(
                    topic,
                    ProducerOptions {
                        batch_max_messages: 0,
                        max_pending_messages: 16,
                        ..ProducerOptions::default()
                    },
                ),
            )
            .await;
            // More sends than the window: later sends wait for receipts.
            let mut futures = Vec::new();
            for i in 0..200u32 {
                futures.push(within("send", producer.send(&i.to_be_bytes())).await);
            }
            let mut ids = Vec::new();
            for f in futures {
                let id = within("receipt", f).await;
                assert_eq!((id.batch_index, id.batch_size), (-1, 0));
                ids.push(id);
            }
            for (i, id) in ids.iter().enumerate() {
                let m = within("receive", consumer.receive()).await;
                assert_eq!(&m.payload[..], &(i as u32).to_be_bytes());
                assert_eq!(m.id, *id);
                within("ack", consumer.ack(&m.id)).await;
            }
            within("close producer", producer.close()).await;
            within("unsubscribe", consumer.unsubscribe()).await;
            // A topic name the broker refuses is an error, not a hang.
            let bad = client
                .create_producer(
                    "persistent://no-such-tenant/x/y",
                    ProducerOptions::default(),
                )
                .await;
            assert!(bad.is_err(), "producer on a missing namespace was created");
        }),
    )
    .await;
}

/// A client on `s` whose producers may hold `bytes` of payload without
/// receipts; its requests give up after 5 s.
async fn memory_limited(s: &StandaloneProcess, bytes: usize) -> Client {
    let opts = ClientOptions {
        memory_limit_bytes: bytes,
        operation_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    within("connect", Client::connect(s.service_url(), opts)).await
}

/// The client's memory limit is shared by its producers: with the broker
/// frozen, sends take room until the limit is used up, and the next send,
/// on another producer, waits; once receipts come back every send
/// completes, and room keeps being given back (a long run after it does
/// not stall). A message larger than the whole limit still goes, alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_holds_sends_back_until_receipts_return() {
    bounded(
        "the_memory_limit_holds_sends_back_until_receipts_return",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let client = memory_limited(&s, 8 << 10).await;
            let no_count_limit = ProducerOptions {
                max_pending_messages: 0,
                ..ProducerOptions::default()
            };
            let batched = within(
                "create producer",
                client.create_producer(
                    "persistent://public/default/memory-a",
                    no_count_limit.clone(),
                ),
            )
            .await;
            let alone = within(
                "create producer",
                client.create_producer(
                    "persistent://public/default/memory-b",
                    ProducerOptions {
                        batch_max_messages: 0,
                        ..no_count_limit
                    },
                ),
            )
            .await;
            let kib = vec![7u8; 1024];
            s.pause();
            let mut receipts = Vec::new();
            for _ in 0..4 {
                receipts.push(within("send", batched.send(&kib)).await);
                receipts.push(within("send", alone.send(&kib)).await);
            }
            // 8 KiB without receipts: the ninth waits for room.
            let ninth = tokio::spawn({
                let kib = kib.clone();
                async move { alone.send(&kib).await.map(|f| (alone, f)) }
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!ninth.is_finished(), "a send past the limit went out");
            s.resume();
            let (alone, f) = tokio::time::timeout(CALL, ninth)
                .await
                .expect("the ninth send waited on after receipts came back")
                .unwrap()
                .unwrap();
            receipts.push(f);
            for r in receipts {
                within("receipt", r).await;
            }
            // Room keeps coming back: 2,000 more across both producers.
            let mut receipts = Vec::new();
            for i in 0..2000 {
                let p = if i % 2 == 0 { &batched } else { &alone };
                receipts.push(within("send", p.send(&kib)).await);
            }
            for r in receipts {
                within("receipt", r).await;
            }
            let big = vec![1u8; 20 << 10];
            let f = within("send", alone.send(&big)).await;
            within("receipt", f).await;
        }),
    )
    .await;
}

/// A send that finds the memory limit used up by its own producer's open
/// batch sends that batch at once instead of waiting out its delay (here a
/// minute, longer than the test allows for the whole exchange).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_short_of_memory_sends_its_own_open_batch() {
    bounded(
        "a_send_short_of_memory_sends_its_own_open_batch",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let client = memory_limited(&s, 8 << 10).await;
            let producer = within(
                "create producer",
                client.create_producer(
                    "persistent://public/default/memory-own-batch",
                    ProducerOptions {
                        batch_max_messages: 1000,
                        batch_max_bytes: 1 << 20,
                        batch_max_delay: Duration::from_secs(60),
                        max_pending_messages: 0,
                        ..ProducerOptions::default()
                    },
                ),
            )
            .await;
            let kib = vec![3u8; 1024];
            let mut receipts = Vec::new();
            for _ in 0..20 {
                receipts.push(within("send", producer.send(&kib)).await);
            }
            // The first 16 went out as two batches of 8 KiB when room ran
            // short; their receipts are back without any delay expiring.
            for r in receipts.drain(..16) {
                let id = within("receipt", r).await;
                assert_eq!(id.batch_size, 8, "{id:?}");
            }
            within("flush", producer.flush()).await;
            for r in receipts {
                within("receipt", r).await;
            }
        }),
    )
    .await;
}

/// A send given up while it waits for memory (its future dropped) hands its
/// window permit back: the producer still closes, which needs every permit
/// of its window back within the operation timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_given_up_while_waiting_for_memory_keeps_no_permit() {
    bounded(
        "a_send_given_up_while_waiting_for_memory_keeps_no_permit",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let client = memory_limited(&s, 1024).await;
            let producer = within(
                "create producer",
                client.create_producer(
                    "persistent://public/default/memory-given-up",
                    ProducerOptions {
                        batch_max_messages: 0,
                        max_pending_messages: 2,
                        ..ProducerOptions::default()
                    },
                ),
            )
            .await;
            let kib = vec![5u8; 1024];
            s.pause();
            let first = within("send", producer.send(&kib)).await;
            let given_up =
                tokio::time::timeout(Duration::from_millis(300), producer.send(&kib)).await;
            assert!(given_up.is_err(), "the second send found room");
            s.resume();
            within("receipt", first).await;
            let again = within("send", producer.send(&kib)).await;
            within("receipt", again).await;
            within("close producer", producer.close()).await;
        }),
    )
    .await;
}

/// Writes one frame and reads frames until the answer `until` arrives;
/// fails on ERROR or SEND_ERROR.
async fn raw_exchange(
    sock: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
    frame: &[u8],
    until: strata_proto::pulsar::base_command::Type,
) {
    use strata_proto::pulsar::base_command::Type;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sock.write_all(frame).await.unwrap();
    loop {
        while let Some(f) = strata_proto::frame::decode(buf, 1 << 20).unwrap() {
            let t = f.command.r#type;
            if t == until as i32 {
                return;
            }
            assert!(
                t != Type::Error as i32 && t != Type::SendError as i32,
                "{until:?} expected, the broker answered {:?}",
                f.command
            );
        }
        assert!(sock.read_buf(buf).await.unwrap() > 0, "broker closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_an_error_and_none_of_its_messages_is_delivered() {
    use prost::Message as _;
    use strata_proto::frame::{encode_command, encode_command_with_body, make_message};
    use strata_proto::pulsar::{
        BaseCommand, CommandConnect, CommandProducer, CommandSend, MessageMetadata,
        SingleMessageMetadata, base_command::Type,
    };
    bounded(
        "a_malformed_batch_is_an_error_and_none_of_its_messages_is_delivered",
        LIMIT,
        Box::pin(async {
            let dir = TempDir::new().unwrap();
            let s = StandaloneProcess::start_in(&dir).await;
            let topic = "persistent://public/default/malformed-batch";
            // A producer of our own writes what no client library would: a
            // batch that claims three messages and holds two and a half.
            let addr = s.service_url().trim_start_matches("pulsar://").to_string();
            let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let mut buf = bytes::BytesMut::new();
            let connect = BaseCommand {
                r#type: Type::Connect as i32,
                connect: Some(CommandConnect {
                    client_version: "raw".into(),
                    protocol_version: Some(21),
                    ..Default::default()
                }),
                ..Default::default()
            };
            raw_exchange(
                &mut sock,
                &mut buf,
                &encode_command(&connect),
                Type::Connected,
            )
            .await;
            let producer = BaseCommand {
                r#type: Type::Producer as i32,
                producer: Some(CommandProducer {
                    topic: topic.into(),
                    producer_id: 1,
                    request_id: 1,
                    ..Default::default()
                }),
                ..Default::default()
            };
            raw_exchange(
                &mut sock,
                &mut buf,
                &encode_command(&producer),
                Type::ProducerSuccess,
            )
            .await;
            let send = |sequence_id: u64, batch: Option<i32>, payload: &[u8]| {
                let md = MessageMetadata {
                    producer_name: "raw".into(),
                    sequence_id,
                    publish_time: 1,
                    num_messages_in_batch: batch,
                    ..Default::default()
                };
                let message = make_message(&md, payload);
                let cmd = BaseCommand {
                    r#type: Type::Send as i32,
                    send: Some(CommandSend {
                        producer_id: 1,
                        sequence_id,
                        num_messages: Some(batch.unwrap_or(1)),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let mut frame = encode_command_with_body(&cmd, message.len()).to_vec();
                frame.extend_from_slice(&message);
                frame
            };
            let mut batch = Vec::new();
            for body in [&b"first"[..], b"second", b"third"] {
                let smd = SingleMessageMetadata {
                    payload_size: body.len() as i32,
                    ..Default::default()
                };
                batch.extend_from_slice(&(smd.encoded_len() as u32).to_be_bytes());
                smd.encode(&mut batch).unwrap();
                batch.extend_from_slice(body);
            }
            batch.truncate(batch.len() - 2);
            for frame in [send(0, Some(3), &batch), send(1, None, b"good")] {
                raw_exchange(&mut sock, &mut buf, &frame, Type::SendReceipt).await;
            }

            let client = within(
                "connect",
                Client::connect(s.service_url(), ClientOptions::default()),
            )
            .await;
            let mut consumer = subscribe(&client, topic, "sub").await;
            let bad = tokio::time::timeout(CALL, consumer.receive()).await;
            assert!(
                matches!(bad, Ok(Err(_))),
                "the malformed batch must be an error, got {bad:?}"
            );
            let next = within("receive after the bad batch", consumer.receive()).await;
            assert_eq!(
                &next.payload[..],
                b"good",
                "a message of the malformed batch was delivered"
            );
            client.close().await;
        }),
    )
    .await;
}
