//! Arbitrary bytes as the body of every bookie gRPC request (tonic hands the
//! service what prost decodes), each then put through the checks the bookie
//! runs before touching its storage (`strata_bookie::validate`, the same
//! functions `service.rs` calls).
//!
//! Checked, beyond "never panics": whatever decodes re-encodes to a message
//! that decodes the same; an accepted read is bounded and non-empty; an
//! accepted add carries exactly the entry sent, and with its checksum made
//! right it is refused only for its size; every refusal maps to the gRPC
//! status and add status a client can act on.
//!
//! The same bytes are also read as an add stream's request body by the
//! bookie's own message reader (`strata_bookie::add_stream`), cut into
//! chunks of a size taken from the first byte: it yields exactly the
//! messages, decodes and refusals that reading the whole body at once gives.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_bookie::BookieError;
use strata_bookie::add_stream::{MessageReader, decode_request};
use strata_bookie::validate::{
    self, MAX_ENTRY_SIZE, MAX_LIST_LIMIT, MAX_READ_BYTES, MAX_READ_ENTRIES, ReadEntries,
};
use strata_proto::bookie::{
    AddRequest, AddStatus, DeleteLedgerRequest, FenceRequest, InfoRequest, ListLedgersRequest,
    ReadLacRequest, ReadRequest,
};

strata_fuzz::use_largest_alloc!();

fuzz_target!(|data: &[u8]| {
    add_stream(data);
    if let Some(req) = decoded::<AddRequest>(data) {
        add(req);
    }
    if let Some(req) = decoded::<ReadRequest>(data) {
        read(req);
    }
    if let Some(req) = decoded::<ListLedgersRequest>(data) {
        let limit = validate::list_limit(&req);
        assert!((1..=MAX_LIST_LIMIT).contains(&limit));
        if req.limit != 0 {
            assert!(limit <= req.limit as usize);
        }
    }
    // These carry a ledger id and nothing else to check: any u64 is a
    // ledger id the storage answers for (found or not).
    let _ = decoded::<ReadLacRequest>(data);
    let _ = decoded::<FenceRequest>(data);
    let _ = decoded::<DeleteLedgerRequest>(data);
    let _ = decoded::<InfoRequest>(data);
});

/// Decodes `data` as `M`; a decoded message re-encodes to bytes that decode
/// to it again.
fn decoded<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let m = M::decode(data).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again, m);
    Some(m)
}

fn add(req: AddRequest) {
    for add in req.entries {
        let sent = add.clone();
        let op = match validate::check_add(add) {
            Ok(op) => op,
            Err(e) => {
                assert!(sent.entry.is_none(), "{e}");
                refused(&e, AddStatus::Invalid);
                continue;
            }
        };
        let entry = sent.entry.expect("accepted adds have an entry");
        assert_eq!(
            (
                op.entry.ledger_id,
                op.entry.entry_id,
                op.entry.cumulative_length
            ),
            (entry.ledger_id, entry.entry_id, entry.cumulative_length)
        );
        assert_eq!(
            (op.entry.crc32c, &op.entry.payload),
            (entry.crc32c, &entry.payload)
        );
        assert_eq!((op.lac, op.recovery), (sent.lac, sent.recovery));
        let too_big = op.entry.payload.len() > MAX_ENTRY_SIZE;
        match validate::check_entry(&op.entry) {
            Ok(payload_crc) => {
                assert!(!too_big);
                if let Some(c) = payload_crc {
                    assert_eq!(c, crc32c::crc32c(&op.entry.payload));
                }
            }
            Err(e @ BookieError::Invalid(_)) => {
                assert!(too_big);
                refused(&e, AddStatus::Invalid);
            }
            Err(e @ BookieError::Checksum { .. }) => refused(&e, AddStatus::BadChecksum),
            Err(e) => panic!("unexpected refusal: {e}"),
        }
        // With the checksum the writer would have computed, only the size
        // limit can refuse it.
        let mut fixed = op.entry;
        fixed.crc32c = strata_proto::entry_crc32c(
            fixed.ledger_id,
            fixed.entry_id,
            fixed.cumulative_length,
            &fixed.payload,
        );
        assert_eq!(validate::check_entry(&fixed).is_ok(), !too_big);
    }
}

fn read(req: ReadRequest) {
    let sent = req.clone();
    match validate::check_read(req) {
        Ok(checked) => {
            assert_eq!(checked.ledger_id, sent.ledger_id);
            assert!((1..=MAX_READ_BYTES).contains(&checked.budget));
            match checked.entries {
                ReadEntries::List(ids) => {
                    assert!(!ids.is_empty() && ids.len() <= MAX_READ_ENTRIES);
                    assert_eq!(ids, sent.entry_ids);
                }
                ReadEntries::Range { first, last } => {
                    assert!(sent.entry_ids.is_empty());
                    assert!(first <= last);
                    assert_eq!((first, last), (sent.first_entry, sent.last_entry));
                }
            }
        }
        Err(e) => {
            assert!(
                sent.entry_ids.len() > MAX_READ_ENTRIES
                    || (sent.entry_ids.is_empty() && sent.first_entry > sent.last_entry),
                "refused a good read: {e}"
            );
            let status = tonic::Status::from(e);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}

/// A refused add reports the add status a writer acts on, with a message.
fn refused(e: &BookieError, status: AddStatus) {
    assert_eq!(e.add_status(), status, "{e}");
    assert!(!e.to_string().is_empty());
}

/// Largest message the reader takes here (small, so that limits are hit).
const STREAM_LIMIT: usize = 1 << 12;

/// What reading `data` whole as a stream of gRPC messages gives: each
/// message's decoding, then whether the stream stops on a bad prefix.
fn whole_stream(data: &[u8]) -> (Vec<Result<AddRequest, ()>>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while data.len() - at >= 5 {
        let len = u32::from_be_bytes([data[at + 1], data[at + 2], data[at + 3], data[at + 4]]);
        if data[at] != 0 || len as usize > STREAM_LIMIT {
            return (out, true);
        }
        let end = at + 5 + len as usize;
        if end > data.len() {
            break;
        }
        out.push(AddRequest::decode(&data[at + 5..end]).map_err(|_| ()));
        at = end;
    }
    (out, false)
}

fn add_stream(data: &[u8]) {
    let cut = data.first().map_or(1, |b| usize::from(*b % 64) + 1);
    let (expected, refused) = whole_stream(data);
    let mut reader = MessageReader::new(STREAM_LIMIT);
    let mut got = Vec::new();
    let mut error = false;
    'chunks: for piece in data.chunks(cut) {
        reader.push(Bytes::copy_from_slice(piece));
        loop {
            match reader.next_message() {
                Ok(Some(m)) => got.push(decode_request(m).map_err(|_| ())),
                Ok(None) => break,
                Err(status) => {
                    assert!(!status.message().is_empty());
                    error = true;
                    break 'chunks;
                }
            }
        }
    }
    assert_eq!(got, expected);
    assert_eq!(error, refused);
}
