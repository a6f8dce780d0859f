//! The client's side of the message format: building SEND frames, Pulsar's
//! batch format, and splitting a delivered MESSAGE into its parts.
//!
//! A batch is one stored entry whose metadata has `num_messages_in_batch`
//! set and whose payload is, for each message, `[u32 size]
//! [SingleMessageMetadata][payload]` (sizes big endian). A message sent
//! without batching has no `num_messages_in_batch` and its payload is the
//! bytes as given. The user's payload is copied once, into the batch buffer;
//! the frame header is built separately so the writer can send header and
//! payload with one vectored write instead of copying them together.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;
use strata_proto::frame::{MAGIC_CRC32C, MessageError};
use strata_proto::pulsar::{
    BaseCommand, CommandSend, MessageMetadata, SingleMessageMetadata, base_command::Type,
};

/// Messages gathered for one batched SEND.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: u32,
    first_sequence_id: u64,
    last_sequence_id: u64,
}

/// A closed batch, ready to be framed.
#[derive(Debug)]
pub struct Batch {
    pub payload: Bytes,
    pub count: u32,
    pub first_sequence_id: u64,
    pub last_sequence_id: u64,
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder::default()
    }

    /// Appends one message; returns its index in the batch.
    pub fn push(&mut self, sequence_id: u64, payload: &[u8]) -> u32 {
        let md = SingleMessageMetadata {
            payload_size: payload.len() as i32,
            sequence_id: Some(sequence_id),
            ..Default::default()
        };
        let md_len = md.encoded_len();
        self.buf.reserve(4 + md_len + payload.len());
        self.buf.put_u32(md_len as u32);
        md.encode_raw(&mut self.buf);
        self.buf.put_slice(payload);
        if self.count == 0 {
            self.first_sequence_id = sequence_id;
        }
        self.last_sequence_id = sequence_id;
        self.count += 1;
        self.count - 1
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the batch payload so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Closes the batch and starts a new, empty one (keeping the buffer's
    /// spare capacity when the frozen part is released).
    pub fn take(&mut self) -> Batch {
        let batch = Batch {
            payload: self.buf.split().freeze(),
            count: self.count,
            first_sequence_id: self.first_sequence_id,
            last_sequence_id: self.last_sequence_id,
        };
        self.count = 0;
        batch
    }
}

/// One message of a batch, as a consumer sees it.
#[derive(Debug, Clone)]
pub struct BatchedMessage {
    pub metadata: SingleMessageMetadata,
    pub payload: Bytes,
}

/// The `count` messages of a batch payload, one at a time (slices of
/// `payload`, no copies). Sizes are checked against the bytes present; after
/// an error nothing more comes.
pub struct BatchMessages {
    rest: Bytes,
    count: u32,
    next: u32,
}

impl BatchMessages {
    pub fn new(payload: &Bytes, count: u32) -> Self {
        BatchMessages {
            rest: payload.clone(),
            count,
            next: 0,
        }
    }

    fn decode_next(&mut self) -> Result<BatchedMessage, MessageError> {
        let (i, count, rest) = (self.next, self.count, &mut self.rest);
        if rest.len() < 4 {
            return Err(MessageError::Malformed(format!(
                "batch ends before message {i} of {count}"
            )));
        }
        let md_len = rest.get_u32() as usize;
        if md_len > rest.len() {
            return Err(MessageError::Malformed(format!(
                "metadata of batched message {i} is {md_len} bytes, {} present",
                rest.len()
            )));
        }
        let metadata = SingleMessageMetadata::decode(rest.split_to(md_len)).map_err(|e| {
            MessageError::Malformed(format!("undecodable metadata of batched message {i}: {e}"))
        })?;
        let size = usize::try_from(metadata.payload_size).map_err(|_| {
            MessageError::Malformed(format!(
                "negative payload size {} of batched message {i}",
                metadata.payload_size
            ))
        })?;
        if size > rest.len() {
            return Err(MessageError::Malformed(format!(
                "payload of batched message {i} is {size} bytes, {} present",
                rest.len()
            )));
        }
        let payload = rest.split_to(size);
        Ok(BatchedMessage { metadata, payload })
    }
}

impl Iterator for BatchMessages {
    type Item = Result<BatchedMessage, MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let m = self.decode_next();
        // Nothing after an error: the rest cannot be trusted.
        self.next = if m.is_ok() { self.next + 1 } else { self.count };
        Some(m)
    }
}

/// All the messages of a batch, or the first error.
#[cfg(test)]
pub fn decode_batch(payload: &Bytes, count: u32) -> Result<Vec<BatchedMessage>, MessageError> {
    BatchMessages::new(payload, count).collect()
}

/// What goes in a SEND besides the message.
#[derive(Debug, Clone, Copy)]
pub struct SendHeader {
    pub producer_id: u64,
    pub sequence_id: u64,
    /// For a batch: the last sequence id in it.
    pub highest_sequence_id: Option<u64>,
    /// For a batch: how many messages it holds.
    pub num_messages: Option<i32>,
}

/// Encodes a SEND frame as `(header, payload)`: the header holds the frame
/// and command sizes, the command, the checksum, and the message metadata;
/// the payload follows it on the wire unchanged.
pub fn encode_send(h: SendHeader, metadata: &MessageMetadata, payload: Bytes) -> (Bytes, Bytes) {
    let cmd = BaseCommand {
        r#type: Type::Send as i32,
        send: Some(CommandSend {
            producer_id: h.producer_id,
            sequence_id: h.sequence_id,
            num_messages: h.num_messages,
            highest_sequence_id: h.highest_sequence_id,
            ..Default::default()
        }),
        ..Default::default()
    };
    let cmd_len = cmd.encoded_len();
    let md_len = metadata.encoded_len();
    let total = 4 + cmd_len + 2 + 4 + 4 + md_len + payload.len();
    let mut head = BytesMut::with_capacity(4 + total - payload.len());
    head.put_u32(total as u32);
    head.put_u32(cmd_len as u32);
    cmd.encode_raw(&mut head);
    head.put_u16(MAGIC_CRC32C);
    let crc_at = head.len();
    head.put_u32(0);
    let md_at = head.len();
    head.put_u32(md_len as u32);
    metadata.encode_raw(&mut head);
    let crc = strata_proto::crc::crc32c_append(strata_proto::crc::crc32c(&head[md_at..]), &payload);
    head[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    (head.freeze(), payload)
}

pub use strata_proto::frame::split_message;

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::frame;

    fn metadata(n: Option<i32>) -> MessageMetadata {
        MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 10,
            publish_time: 1_700_000_000_000,
            num_messages_in_batch: n,
            ..Default::default()
        }
    }

    #[test]
    fn batches_round_trip() {
        let mut b = BatchBuilder::new();
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize * 7]).collect();
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(b.push(10 + i as u64, p), i as u32);
        }
        assert_eq!(b.len(), 50);
        let batch = b.take();
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
        assert_eq!((batch.first_sequence_id, batch.last_sequence_id), (10, 59));
        let msgs = decode_batch(&batch.payload, batch.count).unwrap();
        assert_eq!(msgs.len(), 50);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(&m.payload[..], &payloads[i][..]);
            assert_eq!(m.metadata.sequence_id, Some(10 + i as u64));
        }
        // The builder is reusable after take.
        b.push(99, b"x");
        let again = b.take();
        let msgs = decode_batch(&again.payload, 1).unwrap();
        assert_eq!(&msgs[0].payload[..], b"x");
    }

    #[test]
    fn bad_batches_are_errors() {
        let mut b = BatchBuilder::new();
        b.push(1, b"hello");
        b.push(2, b"world");
        let batch = b.take();
        // Claims more messages than present.
        assert!(decode_batch(&batch.payload, 3).is_err());
        // Every truncation fails cleanly.
        for cut in 0..batch.payload.len() {
            let short = batch.payload.slice(..cut);
            assert!(decode_batch(&short, 2).is_err(), "cut at {cut}");
        }
        // A metadata size past the end.
        let mut bad = BytesMut::new();
        bad.put_u32(1000);
        bad.put_slice(&[0; 10]);
        assert!(decode_batch(&bad.freeze(), 1).is_err());
        // A negative payload size.
        let md = SingleMessageMetadata {
            payload_size: -5,
            ..Default::default()
        };
        let mut neg = BytesMut::new();
        neg.put_u32(md.encoded_len() as u32);
        md.encode_raw(&mut neg);
        assert!(decode_batch(&neg.freeze(), 1).is_err());
    }

    #[test]
    fn send_frames_decode_and_verify() {
        let mut b = BatchBuilder::new();
        b.push(10, b"one");
        b.push(11, b"two");
        let batch = b.take();
        let (head, body) = encode_send(
            SendHeader {
                producer_id: 3,
                sequence_id: 10,
                highest_sequence_id: Some(11),
                num_messages: Some(2),
            },
            &metadata(Some(2)),
            batch.payload.clone(),
        );
        let mut wire = BytesMut::new();
        wire.put_slice(&head);
        wire.put_slice(&body);
        let f = frame::decode(&mut wire, 1 << 20).unwrap().unwrap();
        assert!(wire.is_empty());
        let send = f.command.send.unwrap();
        assert_eq!(
            (send.producer_id, send.sequence_id, send.num_messages),
            (3, 10, Some(2))
        );
        let message = f.payload.unwrap();
        // The broker's own parser accepts it (checksum included).
        let parsed = frame::parse_message(&message).unwrap();
        assert!(parsed.checksum.is_some());
        assert_eq!(parsed.metadata.num_messages_in_batch, Some(2));
        // And the consumer side splits it back.
        let (md, payload) = split_message(&message).unwrap();
        assert_eq!(md.sequence_id, 10);
        assert_eq!(payload, batch.payload);
        let msgs = decode_batch(&payload, 2).unwrap();
        assert_eq!(&msgs[1].payload[..], b"two");
        // A flipped payload bit fails the checksum.
        let mut bad = message.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            split_message(&Bytes::from(bad)),
            Err(MessageError::Checksum { .. })
        ));
    }

    #[test]
    fn delivered_entries_with_broker_metadata_split() {
        let msg = frame::make_message(&metadata(None), b"payload");
        let entry = frame::make_entry(
            &strata_proto::pulsar::BrokerEntryMetadata {
                broker_timestamp: Some(1),
                index: Some(2),
            },
            &msg,
        );
        let (md, payload) = split_message(&entry).unwrap();
        assert_eq!(md.num_messages_in_batch, None);
        assert_eq!(&payload[..], b"payload");
        for cut in 0..msg.len() {
            // No panic on any truncation (the checksum or a size catches it).
            let _ = split_message(&msg.slice(..cut));
        }
        assert!(split_message(&Bytes::from_static(&[0x0e, 0x02, 0, 0, 0, 9])).is_err());
    }
}
