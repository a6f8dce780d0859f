//! Arbitrary bytes as a Pulsar client connection: the broker's read loop
//! (`broker/src/connection/mod.rs`) calls `frame::decode_in_place` until it
//! returns `None` (more bytes needed) or an error (connection closed),
//! handing every SEND payload to `parse_message` and storing it with
//! `Payload::into_entry`, which must build what `make_entry` builds.
//! The same bytes are also taken as a stored entry, as the dispatchers read
//! them back (`split_entry`, `entry_metadata`, `entry_broker_metadata`).
//!
//! Checked, beyond "never panics": a decoded frame consumed exactly its
//! declared size and no more than the buffer; `None` consumed nothing; the
//! frames do not depend on how the bytes were cut into reads; a frame
//! re-encoded with `encode_command` decodes to the same command and payload;
//! a stored entry gives back the producer's bytes and metadata; no
//! allocation exceeds what the frame limit or the input size allows.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_fuzz::LargestAlloc;
use strata_proto::frame::{self, CodecError, Frame, MAGIC_BROKER_ENTRY_METADATA, MAGIC_CRC32C};
use strata_proto::pulsar::BrokerEntryMetadata;
use strata_proto::pulsar::base_command::Type;

strata_fuzz::use_largest_alloc!();

/// A limit small enough that many inputs hit it.
const SMALL_MAX_FRAME: usize = 512;
/// The broker's default: a 5 MiB message plus 10 KiB for command and metadata.
const LARGE_MAX_FRAME: usize = (5 << 20) + (10 << 10);

/// What one read loop saw: each frame as (encoded command, payload), then
/// how it ended.
#[derive(Debug, PartialEq)]
struct Session {
    frames: Vec<(Vec<u8>, Option<Bytes>)>,
    end: Result<usize, CodecError>,
}

fuzz_target!(|data: &[u8]| {
    for max_frame in [SMALL_MAX_FRAME, LARGE_MAX_FRAME] {
        let (whole, largest) = LargestAlloc::measure(|| read_loop(data, max_frame, data.len()));
        // The decoder may reserve room for one whole frame (the limit) before
        // its bytes arrive; anything else is proportional to the input.
        let bound = (max_frame + 8).max(256 * data.len() + (64 << 10));
        assert!(
            largest <= bound,
            "allocated {largest} bytes (bound {bound})"
        );
        // The same bytes in reads of another size decode the same way.
        let chunk = 1 + data.first().map_or(0, |b| usize::from(*b) % 61);
        assert_eq!(read_loop(data, max_frame, chunk), whole);
    }
    stored_entry(data);
});

/// Feeds `data` to the decoder `chunk` bytes at a time, as socket reads do.
fn read_loop(data: &[u8], max_frame: usize, chunk: usize) -> Session {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    loop {
        let n = chunk.max(1).min(data.len() - fed);
        buf.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            let declared =
                (before >= 4).then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            match frame::decode_in_place(&mut buf, max_frame) {
                Ok(Some(f)) => {
                    let f = stored_in_place(f);
                    let total = declared.expect("a frame needs its 4-byte size") as usize;
                    assert!(
                        total <= max_frame,
                        "frame of {total} over the {max_frame} limit"
                    );
                    assert_eq!(
                        before - buf.len(),
                        4 + total,
                        "consumed other than the frame"
                    );
                    frames.push(check_frame(&f, total));
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "None consumed bytes");
                    if let Some(total) = declared {
                        assert!(
                            before < 4 + total as usize,
                            "a whole frame was left undecoded"
                        );
                    }
                    break;
                }
                Err(e) => {
                    if let CodecError::TooLarge { size, max } = &e {
                        assert!(*size > *max && *max == max_frame);
                    }
                    return Session {
                        frames,
                        end: Err(e),
                    };
                }
            }
        }
        if fed == data.len() {
            return Session {
                frames,
                end: Ok(buf.len()),
            };
        }
    }
}

/// The broker's way: a SEND's message becomes its entry where it was read
/// (large ones in place, see `frame::Payload::into_entry`); the entry must
/// be what `make_entry` builds. Returns the frame as `frame::decode` gives it.
fn stored_in_place(f: frame::FrameInPlace) -> Frame {
    let Some(p) = f.payload else {
        return Frame {
            command: f.command,
            payload: None,
        };
    };
    let message = Bytes::copy_from_slice(&p);
    if let Ok(parsed) = frame::parse_message(&p) {
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(1_700_000_000_000),
            index: Some(parsed.metadata.sequence_id),
        };
        assert_eq!(p.into_entry(&bem), frame::make_entry(&bem, &message));
    }
    Frame {
        command: f.command,
        payload: Some(message),
    }
}

/// Checks one decoded frame and returns its comparable form.
fn check_frame(f: &Frame, total: usize) -> (Vec<u8>, Option<Bytes>) {
    let command = f.command.encode_to_vec();
    if let Some(p) = &f.payload {
        assert!(!p.is_empty(), "an empty payload is no payload");
        assert!(p.len() + 4 <= total);
    }
    // Re-encoded, the frame decodes to the same command and payload (the
    // command may re-encode to another size than the client sent).
    let mut again = BytesMut::new();
    match &f.payload {
        None => again.extend_from_slice(&frame::encode_command(&f.command)),
        Some(p) => {
            again.extend_from_slice(&frame::encode_command_with_body(&f.command, p.len()));
            again.extend_from_slice(p);
        }
    }
    let g = frame::decode(&mut again, usize::MAX)
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is complete");
    assert!(again.is_empty(), "re-encoded frame left bytes behind");
    assert_eq!(g.command.encode_to_vec(), command);
    assert_eq!(g.payload, f.payload);

    if let Some(p) = &f.payload {
        // The broker parses the message of a SEND and stores it behind
        // broker-entry metadata; other commands' payloads are parsed here
        // too, the parser must not care.
        if let Ok(parsed) = frame::parse_message(p) {
            assert_eq!(
                parsed.checksum.is_some(),
                p.len() >= 6 && p[..2] == MAGIC_CRC32C.to_be_bytes()
            );
            if f.command.r#type == Type::Send as i32 {
                let n = parsed
                    .metadata
                    .num_messages_in_batch
                    .or(f.command.send.as_ref().and_then(|s| s.num_messages))
                    .unwrap_or(1)
                    .max(1) as u32;
                assert!(n >= 1);
            }
            let bem = BrokerEntryMetadata {
                broker_timestamp: Some(1_700_000_000_000),
                index: Some(parsed.metadata.sequence_id % 1000),
            };
            let entry = frame::make_entry(&bem, p);
            let (prefix, body) = frame::split_entry(&entry);
            assert_eq!(prefix.as_deref(), Some(&bem.encode_to_vec()[..]));
            assert_eq!(&body, p);
            assert_eq!(frame::entry_broker_metadata(&entry), Some(bem));
            let md = frame::entry_metadata(&entry).expect("a stored message keeps its metadata");
            assert_eq!(md.encode_to_vec(), parsed.metadata.encode_to_vec());
        }
    }
    (command, f.payload.clone())
}

/// The bytes as an entry read back from storage.
fn stored_entry(data: &[u8]) {
    let entry = Bytes::copy_from_slice(data);
    let (prefix, body) = frame::split_entry(&entry);
    match &prefix {
        Some(p) => {
            assert_eq!(entry[..2], MAGIC_BROKER_ENTRY_METADATA.to_be_bytes());
            assert_eq!(6 + p.len() + body.len(), entry.len());
            assert_eq!(&entry[6..6 + p.len()], &p[..]);
            assert_eq!(&entry[6 + p.len()..], &body[..]);
        }
        None => assert_eq!(body, entry),
    }
    let md = frame::entry_metadata(&entry);
    match frame::entry_broker_metadata(&entry) {
        Some(bem) => {
            assert!(prefix.is_some());
            // Stored again behind the same metadata, the entry reads the same.
            let again = frame::make_entry(&bem, &body);
            assert_eq!(frame::split_entry(&again).1, body);
            assert_eq!(frame::entry_broker_metadata(&again), Some(bem));
            assert_eq!(
                frame::entry_metadata(&again).map(|m| m.encode_to_vec()),
                md.map(|m| m.encode_to_vec())
            );
        }
        None => {
            let _ = md;
        }
    }
}
