//! Pulsar frame codec.
//!
//! A frame is `[total_size u32][command_size u32][BaseCommand]` optionally
//! followed, for SEND and MESSAGE, by the message: `[0x0e01][crc32c u32]
//! [metadata_size u32][MessageMetadata][payload]`, where the checksum covers
//! everything after itself. A stored entry may carry broker-entry metadata in
//! front: `[0x0e02][size u32][BrokerEntryMetadata]`. All integers are big
//! endian. The decoder never trusts a length before checking it against the
//! frame limit and the bytes actually present.

use crate::pulsar::{BaseCommand, BrokerEntryMetadata, MessageMetadata};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Magic of the checksummed message header.
pub const MAGIC_CRC32C: u16 = 0x0e01;
/// Magic of the broker-entry metadata prefix.
pub const MAGIC_BROKER_ENTRY_METADATA: u16 = 0x0e02;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {size} bytes exceeds the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// A decoded frame: the command and, for SEND, the message bytes after it.
#[derive(Debug)]
pub struct Frame {
    pub command: BaseCommand,
    pub payload: Option<Bytes>,
}

/// A decoded frame whose message bytes stay writable in the buffer they were
/// read into (see [`Payload`]).
#[derive(Debug)]
pub struct FrameInPlace {
    pub command: BaseCommand,
    pub payload: Option<Payload>,
}

/// The bytes of a frame after its command, still in the buffer the frame
/// was read into, with the frame's head (sizes and the command, decoded
/// already) kept in front of them. A stored entry is the message with a
/// short prefix, so [`Payload::into_entry`] writes the prefix over the tail
/// of that head instead of copying the message behind a new one.
#[derive(Debug)]
pub struct Payload {
    frame: BytesMut,
    /// Where the payload starts in `frame`.
    start: usize,
}

/// Messages from this size on are turned into entries in place. An entry
/// made in place keeps the buffer it was read into alive, and a small frame
/// may share a read buffer much larger than itself; small messages are
/// cheap to copy.
pub const IN_PLACE_MIN: usize = 64 << 10;

impl Payload {
    /// The payload as its own buffer (its head dropped); no copy.
    pub fn into_bytes(mut self) -> Bytes {
        self.frame.advance(self.start);
        self.frame.freeze()
    }

    /// The stored entry for this message: broker-entry metadata in front of
    /// it, as [`make_entry`] builds it. Large messages get the prefix
    /// written in place, in front of them.
    pub fn into_entry(mut self, broker: &BrokerEntryMetadata) -> Bytes {
        let size = broker.encoded_len();
        let prefix = 6 + size;
        if self.len() < IN_PLACE_MIN || prefix > self.start {
            return make_entry(broker, &self);
        }
        let at = self.start - prefix;
        put_entry_prefix(&mut &mut self.frame[at..self.start], broker, size);
        self.frame.advance(at);
        self.frame.freeze()
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.frame[self.start..]
    }
}

/// How much a read buffer grows by when a frame begun in it does not fit.
#[derive(Clone, Copy, Debug)]
enum Room {
    /// Just the rest of the frame: what the broker does, whose payloads
    /// live on as entries in the buffer they were read into (in place, see
    /// [`Payload::into_entry`]) and would each keep a larger buffer alive.
    Exact,
    /// The rest and room for several more frames like it (8, within 64 KiB
    /// to 1 MiB): what a client does. The partial frame is copied into the
    /// new buffer; with room for just that frame (as `reserve` gives once
    /// frames split off keep the old buffer shared) each large frame would
    /// be copied in part, as every read ends inside the next one. Here a
    /// copy comes once per several frames.
    Several,
}

impl Room {
    fn beyond(self, frame: usize) -> usize {
        match self {
            Room::Exact => 0,
            Room::Several => frame.saturating_mul(8).clamp(64 << 10, 1 << 20),
        }
    }
}

/// Decodes one frame from the front of `buf`, or returns `None` if more
/// bytes are needed (and then makes room for them, and for several more
/// frames like it: see [`Room::Several`]).
pub fn decode(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, CodecError> {
    Ok(decode_with(buf, max_frame, Room::Several)?.map(|f| Frame {
        command: f.command,
        payload: f.payload.map(Payload::into_bytes),
    }))
}

/// As [`decode`], with the payload left writable in place, and room made
/// for just the rest of a frame that is not whole yet.
pub fn decode_in_place(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<FrameInPlace>, CodecError> {
    decode_with(buf, max_frame, Room::Exact)
}

fn decode_with(
    buf: &mut BytesMut,
    max_frame: usize,
    room: Room,
) -> Result<Option<FrameInPlace>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if total > max_frame {
        return Err(CodecError::TooLarge {
            size: total,
            max: max_frame,
        });
    }
    if total < 4 {
        return Err(CodecError::Malformed(format!(
            "total size {total} leaves no room for the command size"
        )));
    }
    if buf.len() < 4 + total {
        let need = 4 + total - buf.len();
        if buf.capacity() - buf.len() < need {
            buf.reserve(need + room.beyond(4 + total));
        }
        return Ok(None);
    }
    let frame = buf.split_to(4 + total);
    let cmd_size = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    if cmd_size > total - 4 {
        return Err(CodecError::Malformed(format!(
            "command size {cmd_size} exceeds the frame's remaining {} bytes",
            total - 4
        )));
    }
    let start = 8 + cmd_size;
    let command = BaseCommand::decode(&frame[8..start])
        .map_err(|e| CodecError::Malformed(format!("undecodable command: {e}")))?;
    let payload = (start < frame.len()).then_some(Payload { frame, start });
    Ok(Some(FrameInPlace { command, payload }))
}

/// Encodes a command-only frame.
pub fn encode_command(cmd: &BaseCommand) -> Bytes {
    encode_command_with_body(cmd, 0)
}

/// Encodes the header of a frame whose message bytes (`body_len` long) follow it.
pub fn encode_command_with_body(cmd: &BaseCommand, body_len: usize) -> Bytes {
    let cmd_size = cmd.encoded_len();
    let mut out = BytesMut::with_capacity(8 + cmd_size);
    out.put_u32((4 + cmd_size + body_len) as u32);
    out.put_u32(cmd_size as u32);
    cmd.encode(&mut out)
        .expect("BytesMut grows to fit the message");
    out.freeze()
}

/// A message as a producer sent it, split into its parts.
#[derive(Debug, Clone)]
pub struct ParsedMessage {
    pub metadata: MessageMetadata,
    /// The producer's CRC32C of everything after the checksum header, when
    /// it sent one (verified).
    pub checksum: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("checksum mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Verifies the checksum (when present) and decodes the metadata of a
/// message as a producer sent it (`[0x0e01][crc][size][metadata][payload]` or
/// `[size][metadata][payload]`).
pub fn parse_message(bytes: &[u8]) -> Result<ParsedMessage, MessageError> {
    let checksum = verify_checksum(bytes)?;
    let metadata = decode_metadata(&bytes[checksum_header_len(checksum)..])?;
    Ok(ParsedMessage { metadata, checksum })
}

/// Splits a message as a consumer receives it (`[broker-entry metadata]?
/// [0x0e01][crc32c]?[size][metadata][payload]`) into its metadata and
/// payload, verifying the checksum when there is one. The payload is a
/// slice of `data`, not a copy.
pub fn split_message(data: &Bytes) -> Result<(MessageMetadata, Bytes), MessageError> {
    let (_, message) = split_entry(data);
    let skip = checksum_header_len(verify_checksum(&message)?);
    let metadata = decode_metadata(&message[skip..])?;
    // decode_metadata checked that the size field and the metadata are there.
    let b = &message[skip..];
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    Ok((metadata, message.slice(skip + 4 + size..)))
}

/// Length of the `[0x0e01][crc32c]` header.
const CHECKSUM_HEADER: usize = 6;

/// The bytes a message's checksum header takes (`None`: it has none).
fn checksum_header_len(checksum: Option<u32>) -> usize {
    checksum.map_or(0, |_| CHECKSUM_HEADER)
}

/// Checks the `[0x0e01][crc32c]` header if `b` starts with one; returns the
/// checksum (`None` without a header).
fn verify_checksum(b: &[u8]) -> Result<Option<u32>, MessageError> {
    if b.len() < 2 || u16::from_be_bytes([b[0], b[1]]) != MAGIC_CRC32C {
        return Ok(None);
    }
    if b.len() < CHECKSUM_HEADER {
        return Err(MessageError::Malformed("truncated checksum header".into()));
    }
    let expected = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
    let actual = crate::crc::crc32c(&b[CHECKSUM_HEADER..]);
    if expected != actual {
        return Err(MessageError::Checksum { expected, actual });
    }
    Ok(Some(actual))
}

fn decode_metadata(b: &[u8]) -> Result<MessageMetadata, MessageError> {
    if b.len() < 4 {
        return Err(MessageError::Malformed("missing metadata size".into()));
    }
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if size > b.len() - 4 {
        return Err(MessageError::Malformed(format!(
            "metadata size {size} exceeds the {} bytes present",
            b.len() - 4
        )));
    }
    MessageMetadata::decode(&b[4..4 + size])
        .map_err(|e| MessageError::Malformed(format!("undecodable metadata: {e}")))
}

/// Splits a stored entry into its broker-entry metadata prefix (if any) and
/// the message exactly as the producer sent it.
pub fn split_entry(entry: &Bytes) -> (Option<Bytes>, Bytes) {
    if entry.len() >= 6 && u16::from_be_bytes([entry[0], entry[1]]) == MAGIC_BROKER_ENTRY_METADATA {
        let size = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]) as usize;
        if 6 + size <= entry.len() {
            return (Some(entry.slice(6..6 + size)), entry.slice(6 + size..));
        }
    }
    (None, entry.clone())
}

/// Decodes the metadata of a stored entry (skipping the broker-entry prefix
/// and the checksum header, without verifying the checksum again).
pub fn entry_metadata(entry: &Bytes) -> Result<MessageMetadata, MessageError> {
    let (_, message) = split_entry(entry);
    let mut b: &[u8] = &message;
    if b.len() >= 6 && u16::from_be_bytes([b[0], b[1]]) == MAGIC_CRC32C {
        b = &b[6..];
    }
    decode_metadata(b)
}

/// Decodes the broker-entry metadata of a stored entry, if it has one.
pub fn entry_broker_metadata(entry: &Bytes) -> Option<BrokerEntryMetadata> {
    let (prefix, _) = split_entry(entry);
    BrokerEntryMetadata::decode(prefix?).ok()
}

/// Builds a stored entry: broker-entry metadata in front of the producer's bytes.
pub fn make_entry(broker: &BrokerEntryMetadata, message: &[u8]) -> Bytes {
    let size = broker.encoded_len();
    let mut out = BytesMut::with_capacity(6 + size + message.len());
    put_entry_prefix(&mut out, broker, size);
    out.put_slice(message);
    out.freeze()
}

/// Writes the prefix of an entry (magic, `size`, the metadata) into `out`,
/// which has room for its `6 + size` bytes; `size` is
/// `broker.encoded_len()`.
fn put_entry_prefix(out: &mut impl BufMut, broker: &BrokerEntryMetadata, size: usize) {
    out.put_u16(MAGIC_BROKER_ENTRY_METADATA);
    out.put_u32(size as u32);
    broker
        .encode(out)
        .expect("the room was sized by encoded_len");
}

/// The CRC32C of `entry`, built by [`make_entry`] from a message of
/// `message_len` bytes whose checksum header holds `checksum` (verified by
/// [`parse_message`]): combined from it, without reading the message again.
pub fn entry_crc32c_from_checksum(entry: &[u8], message_len: usize, checksum: u32) -> u32 {
    let covered = message_len.saturating_sub(CHECKSUM_HEADER).min(entry.len());
    let head = &entry[..entry.len() - covered];
    crate::crc::combine(crate::crc::crc32c(head), checksum, covered as u64)
}

/// Builds a message the way a producer does (used by tests and `strata perf`).
pub fn make_message(metadata: &MessageMetadata, payload: &[u8]) -> Bytes {
    let size = metadata.encoded_len();
    let mut body = BytesMut::with_capacity(4 + size + payload.len());
    body.put_u32(size as u32);
    metadata
        .encode(&mut body)
        .expect("BytesMut grows to fit the message");
    body.put_slice(payload);
    let mut out = BytesMut::with_capacity(6 + body.len());
    out.put_u16(MAGIC_CRC32C);
    out.put_u32(crate::crc::crc32c(&body));
    out.put_slice(&body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulsar::{CommandPing, base_command::Type};

    fn ping() -> BaseCommand {
        BaseCommand {
            r#type: Type::Ping as i32,
            ping: Some(CommandPing {}),
            ..Default::default()
        }
    }

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let bytes = encode_command(&ping());
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            assert!(decode(&mut buf, 1024).unwrap().is_none(), "early at {i}");
            buf.put_u8(*b);
        }
        let f = decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.command.r#type, Type::Ping as i32);
        assert!(f.payload.is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_sizes_are_errors_not_panics() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(CodecError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(CodecError::Malformed(_))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 9, 1, 2][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(CodecError::Malformed(_))
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 2, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut buf, 1024),
            Err(CodecError::Malformed(_))
        ));
    }

    /// A SEND frame carrying `msg`, as a producer writes it.
    fn send_frame(msg: &[u8], sequence_id: u64) -> Vec<u8> {
        let cmd = BaseCommand {
            r#type: Type::Send as i32,
            send: Some(crate::pulsar::CommandSend {
                producer_id: 1,
                sequence_id,
                num_messages: Some(100),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut wire = encode_command_with_body(&cmd, msg.len()).to_vec();
        wire.extend_from_slice(msg);
        wire
    }

    #[test]
    fn large_messages_become_entries_in_place_and_small_ones_by_copy() {
        let md = MessageMetadata {
            producer_name: "p".into(),
            num_messages_in_batch: Some(100),
            ..Default::default()
        };
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(1_765_000_000_000),
            index: Some(123_456_789),
        };
        for (len, in_place) in [
            (IN_PLACE_MIN, true),
            (IN_PLACE_MIN - 200, false),
            (10, false),
        ] {
            let payload: Vec<u8> = (0..len as u32).map(|i| (i * 13 + 1) as u8).collect();
            let msg = make_message(&md, &payload);
            // Two frames in one read, as a socket delivers them.
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&send_frame(&msg, 7));
            buf.extend_from_slice(&send_frame(&msg, 8));
            let read = buf.as_ptr_range();
            let read = read.start as usize..read.end as usize;
            for sequence_id in [7, 8] {
                let f = decode_in_place(&mut buf, usize::MAX).unwrap().unwrap();
                assert_eq!(f.command.send.unwrap().sequence_id, sequence_id);
                let p = f.payload.unwrap();
                assert_eq!(&p[..], &msg[..]);
                let entry = p.into_entry(&bem);
                assert_eq!(entry, make_entry(&bem, &msg), "{len} bytes");
                assert_eq!(split_entry(&entry).1, msg);
                let at = entry.as_ptr() as usize;
                assert_eq!(read.contains(&at), in_place, "{len} bytes");
            }
            assert!(buf.is_empty());
        }
    }

    /// A connection reading 128 KiB frames as a socket delivers them (each
    /// read fills the buffer's free space) while the decoded frames stay
    /// alive (a consumer's queue holds them): the frame a read ends in is
    /// copied into a new buffer now and then, not every time.
    #[test]
    fn large_frames_are_seldom_copied_between_buffers() {
        let body = vec![5u8; 128 << 10];
        let mut one = encode_command_with_body(&ping(), body.len()).to_vec();
        one.extend_from_slice(&body);
        let stream = one.repeat(64);
        let mut buf = BytesMut::with_capacity(64 << 10);
        let (mut at, mut copied, mut kept) = (0, 0, Vec::new());
        loop {
            let (ptr, len) = (buf.as_ptr(), buf.len());
            match decode(&mut buf, usize::MAX).unwrap() {
                Some(f) => kept.push(f),
                None if at == stream.len() => break,
                None => {
                    if len > 0 && buf.as_ptr() != ptr {
                        copied += len;
                    }
                    if buf.capacity() == buf.len() {
                        buf.reserve(64); // as `read_buf` does
                    }
                    let n = (buf.capacity() - buf.len()).min(stream.len() - at);
                    buf.extend_from_slice(&stream[at..at + n]);
                    at += n;
                }
            }
        }
        assert_eq!(kept.len(), 64);
        assert!(kept.iter().all(|f| f.payload.as_deref() == Some(&body[..])));
        // About one frame in nine here (each new buffer ends just short of a
        // frame); half of all bytes with room for just the one frame.
        assert!(
            copied < stream.len() / 6,
            "{copied} of {} bytes copied",
            stream.len()
        );
    }

    #[test]
    fn a_head_too_short_for_the_prefix_is_copied() {
        // A command of a few bytes leaves less room in front of the message
        // than the broker-entry metadata needs.
        let msg = vec![7u8; IN_PLACE_MIN];
        let mut wire = encode_command_with_body(&ping(), msg.len()).to_vec();
        wire.extend_from_slice(&msg);
        let mut buf = BytesMut::from(&wire[..]);
        let f = decode_in_place(&mut buf, usize::MAX).unwrap().unwrap();
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(u64::MAX),
            index: Some(i64::MAX as u64),
        };
        let p = f.payload.unwrap();
        let head = wire.len() - msg.len();
        assert!(6 + bem.encoded_len() > head);
        let entry = p.into_entry(&bem);
        assert_eq!(entry, make_entry(&bem, &msg));
    }

    #[test]
    fn an_entrys_crc_combines_from_its_messages_checksum() {
        let md = MessageMetadata {
            producer_name: "p".into(),
            num_messages_in_batch: Some(100),
            ..Default::default()
        };
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let msg = make_message(&md, &payload);
        let checksum = parse_message(&msg).unwrap().checksum.unwrap();
        let bem = BrokerEntryMetadata {
            broker_timestamp: Some(1),
            index: Some(99),
        };
        let entry = make_entry(&bem, &msg);
        assert_eq!(
            entry_crc32c_from_checksum(&entry, msg.len(), checksum),
            crate::crc::crc32c(&entry)
        );
        assert_ne!(
            entry_crc32c_from_checksum(&entry, msg.len(), checksum ^ 1),
            crate::crc::crc32c(&entry)
        );
    }

    #[test]
    fn messages_verify_checksums_and_entries_split() {
        let md = MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 7,
            publish_time: 1234,
            ..Default::default()
        };
        let msg = make_message(&md, b"hello");
        let parsed = parse_message(&msg).unwrap();
        assert_eq!(parsed.checksum, Some(crate::crc::crc32c(&msg[6..])));
        assert_eq!(parsed.metadata.sequence_id, 7);
        let mut bad = msg.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            parse_message(&bad),
            Err(MessageError::Checksum { .. })
        ));
        assert!(parse_message(&[0x0e, 0x01, 0]).is_err());
        assert!(parse_message(&[0, 0, 0, 50, 1]).is_err());

        let broker = BrokerEntryMetadata {
            broker_timestamp: Some(99),
            index: Some(3),
        };
        let entry = make_entry(&broker, &msg);
        let (prefix, body) = split_entry(&entry);
        assert!(prefix.is_some());
        assert_eq!(body, msg);
        assert_eq!(entry_metadata(&entry).unwrap().publish_time, 1234);
        assert_eq!(entry_broker_metadata(&entry), Some(broker));
    }
}
