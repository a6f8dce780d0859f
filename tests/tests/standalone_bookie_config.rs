//! `strata standalone --bookie-config`: the embedded bookie takes a bookie
//! config file (here: its journal on a directory of its own), and refuses the
//! settings that are the standalone's. Large messages, which the broker turns
//! into entries in place, come back byte-identical, also after a SIGKILL and
//! a restart that replays that journal.

use std::time::Duration;

use strata_client::{
    Client, ClientOptions, ConsumerOptions, InitialPosition, ProducerOptions, SubscriptionType,
};
use strata_tests::admin::standalone_until_exit;
use strata_tests::bookie::SHARED_DISK_WATERMARK_TOML;
use strata_tests::fault::bounded;
use strata_tests::standalone::StandaloneProcess;
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(240);
const CALL: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl Future<Output = strata_client::Result<T>>) -> T {
    match tokio::time::timeout(CALL, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {CALL:?}"),
    }
}

/// Journal files (`*.jnl`) in `dir`, if it exists.
fn journal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
            .count()
    })
}

/// Payload `i`: its index in the first 8 bytes, then a pattern of `len`.
fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|j| (j * 31 + i * 7) as u8).collect();
    p[..8].copy_from_slice(&(i as u64).to_be_bytes());
    p
}

/// A bookie config that puts the journal in `dir/journal-disk`: that
/// directory and the config file.
fn journal_config(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let journal_dir = dir.path().join("journal-disk");
    let config = dir.path().join("bookie.toml");
    std::fs::write(
        &config,
        format!(
            "{SHARED_DISK_WATERMARK_TOML}journal_dir = {:?}\n",
            journal_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    (journal_dir, config)
}

/// A producer that sends every message as an entry of its own.
async fn unbatched_producer(client: &Client, topic: &str) -> strata_client::Producer {
    within(
        "create producer",
        client.create_producer(
            topic,
            ProducerOptions {
                batch_max_messages: 1,
                ..ProducerOptions::default()
            },
        ),
    )
    .await
}

/// Runs `strata standalone` on `data` with the bookie `config`, for a start
/// that is expected to fail (it runs until it exits).
async fn standalone_once(
    data: &std::path::Path,
    config: &std::path::Path,
) -> strata_tests::admin::Run {
    let config = config.to_str().unwrap();
    standalone_until_exit(data, &["--bookie-config", config], &[]).await
}

/// Reads `expected` back, then again after a SIGKILL and a restart.
async fn read_back_across_sigkill(s: &mut StandaloneProcess, topic: &str, expected: &[Vec<u8>]) {
    read_back(s.service_url(), topic, "before", expected).await;
    s.kill();
    s.restart().await;
    read_back(s.service_url(), topic, "after", expected).await;
}

/// Reads `expected` from earliest on a new subscription, in order.
async fn read_back(url: &str, topic: &str, sub: &str, expected: &[Vec<u8>]) {
    let client = within("connect", Client::connect(url, ClientOptions::default())).await;
    let mut consumer = within(
        "subscribe",
        client.subscribe(
            topic,
            sub,
            ConsumerOptions {
                subscription_type: SubscriptionType::Exclusive,
                initial_position: InitialPosition::Earliest,
                receiver_queue_size: 10,
                name: None,
            },
        ),
    )
    .await;
    for (i, p) in expected.iter().enumerate() {
        let m = within("receive", consumer.receive()).await;
        assert_eq!(m.payload.len(), p.len(), "length of message {i}");
        assert!(m.payload[..] == p[..], "bytes of message {i}");
    }
    within("close", consumer.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_bookie_journals_where_its_config_says_and_large_messages_survive_a_sigkill() {
    bounded("standalone bookie config", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let (journal_dir, config) = journal_config(&dir);
        let mut s = StandaloneProcess::start_with(
            dir.path().join("data"),
            &["--bookie-config", config.to_str().unwrap()],
        )
        .await;
        assert!(
            journal_files(&journal_dir) > 0,
            "no journal in {journal_dir:?}"
        );
        assert_eq!(
            journal_files(&dir.path().join("data/bookie/journal")),
            0,
            "a journal in the default place too"
        );

        let topic = "persistent://public/default/bookie-config-large";
        let client = within(
            "connect",
            Client::connect(s.service_url(), ClientOptions::default()),
        )
        .await;
        // Unbatched, so each message is one entry: large ones are made in
        // place, small ones copied; sizes around the in-place threshold.
        let producer = unbatched_producer(&client, topic).await;
        let sizes = [
            8,
            1000,
            (64 << 10) - 100,
            (64 << 10) + 100,
            300 << 10,
            1 << 20,
            4 << 20,
        ];
        let expected: Vec<Vec<u8>> = sizes
            .iter()
            .cycle()
            .take(sizes.len() * 3)
            .enumerate()
            .map(|(i, len)| payload(i, *len))
            .collect();
        for p in &expected {
            let receipt = within("send", producer.send(p)).await;
            within("receipt", receipt).await;
        }
        // Acknowledged means journaled in that directory: a SIGKILL loses
        // none of it, and the restart replays it from there.
        drop(producer);
        drop(client);
        read_back_across_sigkill(&mut s, topic, &expected).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bookie_config_may_not_set_what_the_standalone_sets() {
    bounded("standalone bookie config refused", LIMIT, async {
        let dir = TempDir::new().unwrap();
        for (line, says) in [
            ("listen = \"0.0.0.0:4181\"", "`listen`"),
            ("data_dir = \"/tmp/elsewhere\"", "`data_dir`"),
            ("metadata_url = \"memory://\"", "`metadata_url`"),
            ("journal_group_byts = 1", "journal_group_byts"),
            ("disk_usage_threshold = 2.0", "disk_usage_threshold"),
        ] {
            let config = dir.path().join("bookie.toml");
            std::fs::write(&config, format!("{line}\n")).unwrap();
            let run = standalone_once(&dir.path().join("data"), &config).await;
            assert_ne!(run.code, Some(0), "{line}: started\n{}", run.report());
            assert!(run.stderr.contains(says), "{line}: {}", run.report());
            assert!(
                !run.stdout.contains("strata standalone ready"),
                "{line}: {}",
                run.report()
            );
        }
    })
    .await;
}

/// A second process is refused the directories a running one writes, before
/// it touches them: the same data directory, or only the same journal (which
/// a second bookie would otherwise replay, taking the live tail for a torn
/// one and cutting it). The running standalone loses nothing: everything it
/// acknowledged reads back, also after a SIGKILL and a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_refused_the_directories_of_a_running_one() {
    bounded("directories in use", LIMIT, async {
        let dir = TempDir::new().unwrap();
        let (_, config) = journal_config(&dir);
        let data = dir.path().join("data");
        let mut s =
            StandaloneProcess::start_with(&data, &["--bookie-config", config.to_str().unwrap()])
                .await;
        let pid = s.pid().expect("standalone pid");

        let topic = "persistent://public/default/dirs-in-use";
        let client = within(
            "connect",
            Client::connect(s.service_url(), ClientOptions::default()),
        )
        .await;
        let producer = unbatched_producer(&client, topic).await;
        let mut expected = Vec::new();
        let send_some = |from: usize| (from..from + 20).map(|i| payload(i, 1000 + i));
        for p in send_some(0) {
            within("receipt", within("send", producer.send(&p)).await).await;
            expected.push(p);
        }

        let other_data = dir.path().join("other-data");
        for (data_dir, what) in [
            (&data, "data directory"),
            (&other_data, "journal directory"),
        ] {
            let run = standalone_once(data_dir, &config).await;
            let report = run.report();
            assert_ne!(run.code, Some(0), "{what}: started\n{report}");
            assert!(run.stderr.contains(what), "{what}: {report}");
            assert!(
                run.stderr
                    .contains(&format!("in use by another Strata process (pid {pid}")),
                "{what}: {report}"
            );
            assert!(!run.stdout.contains("strata standalone ready"), "{report}");
        }

        // The first one kept serving, and its journal is whole.
        for p in send_some(20) {
            within("receipt", within("send", producer.send(&p)).await).await;
            expected.push(p);
        }
        drop(producer);
        drop(client);
        read_back_across_sigkill(&mut s, topic, &expected).await;
    })
    .await;
}
