//! Writes the small valid inputs the fuzz targets start from, into
//! `fuzz/corpus/<target>/` (committed; rerun after a format change):
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml -p strata-fuzz-seeds
//! ```
//!
//! The journal layout is written out by hand here (it is documented in
//! `bookie/src/journal.rs` and `bookie/src/storage.rs`) so that this tool
//! needs only the wire formats, not the bookie and its RocksDB.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use strata_proto::bookie::{
    AddEntry, AddRequest, Entry, FenceRequest, ListLedgersRequest, ReadRequest,
};
use strata_proto::frame::{encode_command, encode_command_with_body, make_entry, make_message};
use strata_proto::pulsar::{
    BaseCommand, BrokerEntryMetadata, CommandConnect, CommandPing, CommandProducer, CommandSend,
    KeyValue, MessageMetadata, base_command::Type,
};

fn main() -> std::io::Result<()> {
    // Where cargo says this package is when it runs it, rather than where
    // it was built: cargo does not rebuild a checkout that only moved, so a
    // shared target directory may hold a build of another checkout.
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let corpus = here.join("../corpus");
    write(&corpus, "pulsar_frame", pulsar_frame())?;
    write(&corpus, "journal_record", journal_record())?;
    write(&corpus, "bookie_request", bookie_request())?;
    Ok(())
}

fn write(corpus: &Path, target: &str, seeds: Vec<(&str, Vec<u8>)>) -> std::io::Result<()> {
    let dir: PathBuf = corpus.join(target);
    fs::create_dir_all(&dir)?;
    for (name, bytes) in seeds {
        fs::write(dir.join(format!("seed-{name}")), &bytes)?;
        println!("{target}/seed-{name}: {} bytes", bytes.len());
    }
    Ok(())
}

fn pulsar_frame() -> Vec<(&'static str, Vec<u8>)> {
    let connect = encode_command(&BaseCommand {
        r#type: Type::Connect as i32,
        connect: Some(CommandConnect {
            client_version: "seed".into(),
            protocol_version: Some(21),
            ..Default::default()
        }),
        ..Default::default()
    })
    .to_vec();
    let ping = encode_command(&BaseCommand {
        r#type: Type::Ping as i32,
        ping: Some(CommandPing {}),
        ..Default::default()
    })
    .to_vec();
    let producer = encode_command(&BaseCommand {
        r#type: Type::Producer as i32,
        producer: Some(CommandProducer {
            topic: "persistent://public/default/t".into(),
            producer_id: 1,
            request_id: 2,
            ..Default::default()
        }),
        ..Default::default()
    })
    .to_vec();
    let metadata = MessageMetadata {
        producer_name: "p".into(),
        sequence_id: 3,
        publish_time: 1_700_000_000_000,
        properties: vec![KeyValue {
            key: "k".into(),
            value: "v".into(),
        }],
        num_messages_in_batch: Some(2),
        ..Default::default()
    };
    let message = make_message(&metadata, b"hello");
    let send_cmd = BaseCommand {
        r#type: Type::Send as i32,
        send: Some(CommandSend {
            producer_id: 1,
            sequence_id: 3,
            num_messages: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut send = encode_command_with_body(&send_cmd, message.len()).to_vec();
    send.extend_from_slice(&message);
    // A message without the checksum header, as old clients send it.
    let unchecked = message[6..].to_vec();
    let mut send_unchecked = encode_command_with_body(&send_cmd, unchecked.len()).to_vec();
    send_unchecked.extend_from_slice(&unchecked);
    let entry = make_entry(
        &BrokerEntryMetadata {
            broker_timestamp: Some(1_700_000_000_001),
            index: Some(9),
        },
        &message,
    )
    .to_vec();
    vec![
        ("connect", connect.clone()),
        ("ping", ping),
        ("session", [connect, producer, send].concat()),
        ("send-unchecked", send_unchecked),
        ("stored-entry", entry),
    ]
}

/// A journal add record: `[len u32 LE][crc32c ^ mask u32 LE][body]`, the
/// body being `[1][ledger u64][entry u64][cumulative u64][lac i64][entry crc
/// u32]` (LE) then the payload. `mask` is the file's checksum mask (0 in the
/// old `STRJRNL1` format).
fn add_record(ledger: u64, entry: u64, cumulative: u64, payload: &[u8], mask: u32) -> Vec<u8> {
    let mut body = vec![1u8];
    body.extend_from_slice(&ledger.to_le_bytes());
    body.extend_from_slice(&entry.to_le_bytes());
    body.extend_from_slice(&cumulative.to_le_bytes());
    body.extend_from_slice(&(entry as i64 - 1).to_le_bytes());
    let crc = strata_proto::entry_crc32c(ledger, entry, cumulative, payload);
    body.extend_from_slice(&crc.to_le_bytes());
    body.extend_from_slice(payload);
    let mut record = (body.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&(crc32c::crc32c(&body) ^ mask).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

/// Inputs are `[flags]` (see the target), optional fields, then the file.
fn journal_record() -> Vec<(&'static str, Vec<u8>)> {
    const SEQ: u64 = 7;
    // The current format masks each checksum with the file's sequence
    // number: `(seq as u32) * 0x9E3779B1` (`journal::crc_mask`).
    let mask = (SEQ as u32).wrapping_mul(0x9E37_79B1);
    let header = [&b"STRJRNL2"[..], &SEQ.to_le_bytes()].concat();
    let r0 = add_record(5, 0, 3, b"abc", mask);
    let r1 = add_record(5, 1, 8, b"defgh", mask);
    let records = [r0.clone(), r1.clone()].concat();
    let old_header = [&b"STRJRNL1"[..], &SEQ.to_le_bytes()].concat();
    let old_records = [
        add_record(5, 0, 3, b"abc", 0),
        add_record(5, 1, 8, b"defgh", 0),
    ]
    .concat();
    let zeros = [0u8; 16];
    let second = (header.len() + r0.len()) as u64;
    let mut torn = [header.clone(), records.clone()].concat();
    torn.truncate(torn.len() - 3);
    vec![
        // The harness adds the header.
        ("records", [&[1u8][..], &records].concat()),
        // A whole file with its preallocated (zero) tail.
        ("file", [&[0u8][..], &header, &records, &zeros].concat()),
        // Checksums to be fixed by the harness (here zeroed).
        ("fix-crcs", {
            let mut r = records.clone();
            r[4..8].fill(0);
            let at = r0.len() + 4;
            r[at..at + 4].fill(0);
            [&[3u8, 2][..], &r].concat()
        }),
        // Replay from a checkpoint at the second record.
        (
            "checkpoint",
            [&[5u8][..], &second.to_le_bytes(), &records].concat(),
        ),
        ("torn", [&[0u8][..], &torn].concat()),
        // The old format: the harness's old header, and a whole file.
        ("records-v1", [&[9u8][..], &old_records].concat()),
        (
            "file-v1",
            [&[0u8][..], &old_header, &old_records, &zeros].concat(),
        ),
        // A reused file: records of an earlier life (unmasked, and masked
        // for another file) after the new ones.
        (
            "reused",
            [
                &[0u8][..],
                &header,
                &r0,
                &old_records,
                &add_record(5, 2, 9, b"i", mask ^ 1),
            ]
            .concat(),
        ),
    ]
}

fn bookie_request() -> Vec<(&'static str, Vec<u8>)> {
    let entry = |ledger: u64, id: u64, cumulative: u64, payload: &'static [u8]| Entry {
        ledger_id: ledger,
        entry_id: id,
        cumulative_length: cumulative,
        crc32c: strata_proto::entry_crc32c(ledger, id, cumulative, payload),
        payload: bytes::Bytes::from_static(payload),
    };
    let add = AddRequest {
        entries: vec![
            AddEntry {
                entry: Some(entry(5, 0, 3, b"abc")),
                lac: -1,
                recovery: false,
            },
            AddEntry {
                entry: Some(entry(5, 1, 8, b"defgh")),
                lac: 0,
                recovery: true,
            },
        ],
    };
    vec![
        ("add", add.encode_to_vec()),
        (
            "read-range",
            ReadRequest {
                ledger_id: 5,
                first_entry: 0,
                last_entry: 1,
                max_bytes: 1 << 20,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "read-list",
            ReadRequest {
                ledger_id: 5,
                entry_ids: vec![1, 0, 7],
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "list",
            ListLedgersRequest {
                start_after: 4,
                limit: 10,
            }
            .encode_to_vec(),
        ),
        ("fence", FenceRequest { ledger_id: 5 }.encode_to_vec()),
    ]
}
