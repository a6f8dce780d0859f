//! The request side of a bookie add stream, encoded here rather than by
//! tonic. tonic's encoder copies every message into one buffer before
//! HTTP/2 sends it, so each entry's payload crossed user space once more on
//! its way to the socket. Here a large payload goes to HTTP/2 as a chunk of
//! its own, the very `Bytes` the writer holds, and HTTP/2 hands it to the
//! kernel with a vectored write. The bytes on the wire are the same gRPC
//! messages (`AddRequest`), so the bookie sees no difference.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::encoding::{WireType, encode_key, encode_varint};
use strata_common::stages::{self, Stage};
use strata_proto::bookie::{AddEntry, AddRequest, AddResponse, Entry};
use strata_proto::{ADD_ENTRIES_PATH, GRPC_MESSAGE_PREFIX as PREFIX};
use tokio::sync::mpsc;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::{Service, http};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// Payloads at least this long go out as chunks of their own; shorter ones
/// are copied into the message (an HTTP/2 frame per entry costs more than
/// copying a few KiB).
const OWN_CHUNK: usize = 8 << 10;

/// The add stream's request body: each poll with nothing left to send takes
/// everything queued (up to `max_batch_bytes` of payload) as one message.
pub(crate) struct AddBody {
    rx: mpsc::UnboundedReceiver<AddEntry>,
    chunks: VecDeque<Bytes>,
    max_batch_bytes: usize,
}

impl AddBody {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<AddEntry>, max_batch_bytes: usize) -> AddBody {
        AddBody {
            rx,
            chunks: VecDeque::new(),
            max_batch_bytes,
        }
    }
}

impl http_body::Body for AddBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.chunks.is_empty() {
            let Some(first) = ready!(this.rx.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            let mut bytes = payload_len(&first);
            // Sized once from what is queued, not grown add by add.
            let mut batch = Vec::with_capacity((this.rx.len() + 1).min(4096));
            batch.push(first);
            while bytes < this.max_batch_bytes {
                match this.rx.try_recv() {
                    Ok(add) => {
                        bytes += payload_len(&add);
                        batch.push(add);
                    }
                    Err(_) => break,
                }
            }
            stages::mark_all(
                batch
                    .iter()
                    .filter_map(|a| a.entry.as_ref().map(|e| e.entry_id)),
                Stage::InBody,
            );
            encode_request(batch, &mut this.chunks);
        }
        Poll::Ready(this.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

fn payload_len(add: &AddEntry) -> usize {
    add.entry.as_ref().map_or(0, |e| e.payload.len())
}

/// Appends `adds` to `out` as one length-prefixed gRPC message holding an
/// `AddRequest`, in chunks: the framing and small payloads in shared
/// buffers, each payload of [`OWN_CHUNK`] bytes or more as itself.
///
/// Each `AddEntry` is written with its `lac` and `recovery` first and its
/// `entry` last, and each `Entry` with its payload last, so that a payload
/// ends its message's framing (protobuf readers take fields in any order).
/// Fields at their default value are left out, as proto3 encoders do.
pub(crate) fn encode_request(adds: Vec<AddEntry>, out: &mut VecDeque<Bytes>) {
    // Room for every add's framing (at most ~60 bytes) and the payloads
    // copied in, so that a message of small entries is not grown by
    // reallocation (and copied again) as it is written.
    let inline: usize = adds
        .iter()
        .map(|a| 64 + Some(payload_len(a)).filter(|n| *n < OWN_CHUNK).unwrap_or(0))
        .sum();
    let mut buf = BytesMut::with_capacity(PREFIX + inline);
    buf.put_bytes(0, PREFIX);
    // Where each payload sent as its own chunk goes in the message.
    let mut cuts: Vec<(usize, Bytes)> = Vec::new();
    let mut separate = 0usize;
    let mut head = Vec::with_capacity(64);
    let mut fields = Vec::with_capacity(64);
    for add in adds {
        head.clear();
        if add.lac != 0 {
            encode_key(2, WireType::Varint, &mut head);
            encode_varint(add.lac as u64, &mut head);
        }
        if add.recovery {
            encode_key(3, WireType::Varint, &mut head);
            encode_varint(1, &mut head);
        }
        let mut payload = Bytes::new();
        if let Some(entry) = add.entry {
            let Entry {
                ledger_id,
                entry_id,
                cumulative_length,
                crc32c,
                payload: p,
            } = entry;
            fields.clear();
            for (tag, v) in [(1, ledger_id), (2, entry_id), (3, cumulative_length)] {
                if v != 0 {
                    encode_key(tag, WireType::Varint, &mut fields);
                    encode_varint(v, &mut fields);
                }
            }
            if crc32c != 0 {
                encode_key(4, WireType::ThirtyTwoBit, &mut fields);
                fields.put_u32_le(crc32c);
            }
            if !p.is_empty() {
                encode_key(5, WireType::LengthDelimited, &mut fields);
                encode_varint(p.len() as u64, &mut fields);
            }
            let entry_len = fields.len() + p.len();
            encode_key(1, WireType::LengthDelimited, &mut head);
            encode_varint(entry_len as u64, &mut head);
            head.extend_from_slice(&fields);
            payload = p;
        }
        let add_len = head.len() + payload.len();
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(add_len as u64, &mut buf);
        buf.put_slice(&head);
        if payload.len() >= OWN_CHUNK {
            separate += payload.len();
            cuts.push((buf.len(), payload));
        } else {
            buf.put_slice(&payload);
        }
    }
    let len = buf.len() - PREFIX + separate;
    buf[1..PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    let whole = buf.freeze();
    let mut at = 0;
    for (cut, payload) in cuts {
        out.push_back(whole.slice(at..cut));
        out.push_back(payload);
        at = cut;
    }
    if at < whole.len() {
        out.push_back(whole.slice(at..));
    }
}

/// Opens an add stream on `channel` that sends `body`; its responses are
/// decoded by tonic, as those of any call.
pub(crate) async fn open(
    mut channel: Channel,
    body: AddBody,
    max_message_bytes: usize,
) -> Result<Streaming<AddResponse>, Status> {
    let request = http::Request::builder()
        .method(http::Method::POST)
        .version(http::Version::HTTP_2)
        // The channel sets the scheme and authority of its bookie.
        .uri(ADD_ENTRIES_PATH)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(tonic::body::Body::new(body))
        .map_err(|e| Status::internal(format!("add stream request: {e}")))?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let decoder = ProstCodec::<AddRequest, AddResponse>::default().decoder();
    // A status in the headers is a trailers-only response: no messages.
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != Code::Ok {
            return Err(status);
        }
        return Ok(Streaming::new_empty(decoder, response.into_body()));
    }
    let code = response.status();
    Ok(Streaming::new_response(
        decoder,
        response.into_body(),
        code,
        None,
        Some(max_message_bytes),
    ))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn add(entry_id: u64, payload_len: usize, lac: i64, recovery: bool) -> AddEntry {
        AddEntry {
            entry: Some(Entry {
                ledger_id: entry_id.wrapping_mul(1_000_003).wrapping_add(7),
                entry_id,
                cumulative_length: entry_id.wrapping_mul(40_000),
                crc32c: (entry_id as u32).wrapping_mul(0x9E37_79B1),
                payload: Bytes::from(
                    (0..payload_len)
                        .map(|i| (i * 7 + 3) as u8)
                        .collect::<Vec<u8>>(),
                ),
            }),
            lac,
            recovery,
        }
    }

    fn message(chunks: &VecDeque<Bytes>) -> Vec<u8> {
        chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// Whatever the fields hold (defaults, negatives, large ids, no entry
    /// at all, payloads on both sides of the chunk threshold), the chunks
    /// are one gRPC message that decodes to exactly the adds sent.
    #[test]
    fn the_chunks_decode_to_the_adds_sent() {
        let adds = vec![
            add(0, 0, 0, false),
            add(1, 1, -1, false),
            add(2, 100, 1, true),
            add(3, OWN_CHUNK - 1, i64::MAX, false),
            add(4, OWN_CHUNK, -1, false),
            add(u64::MAX, 70_000, i64::MIN, true),
            AddEntry {
                entry: None,
                lac: 5,
                recovery: false,
            },
            AddEntry::default(),
            add(6, 3, 5, false),
            add(7, 200_000, 6, false),
        ];
        let mut chunks = VecDeque::new();
        encode_request(adds.clone(), &mut chunks);
        let bytes = message(&chunks);
        assert_eq!(bytes[0], 0, "not compressed");
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, bytes.len() - PREFIX);
        let decoded = AddRequest::decode(&bytes[PREFIX..]).unwrap();
        assert_eq!(decoded.entries, adds);
    }

    /// Large payloads travel as the writer's own buffers; small ones are
    /// copied into the framing around them.
    #[test]
    fn large_payloads_are_sent_without_a_copy() {
        let adds = vec![
            add(1, 100, 0, false),
            add(2, 70_000, 1, false),
            add(3, OWN_CHUNK, 2, false),
        ];
        let payloads: Vec<Bytes> = adds
            .iter()
            .map(|a| a.entry.as_ref().unwrap().payload.clone())
            .collect();
        let mut chunks = VecDeque::new();
        encode_request(adds, &mut chunks);
        for p in &payloads[1..] {
            assert!(
                chunks
                    .iter()
                    .any(|c| c.as_ptr() == p.as_ptr() && c.len() == p.len()),
                "a {} byte payload was copied",
                p.len()
            );
        }
        assert!(!chunks.iter().any(|c| c.as_ptr() == payloads[0].as_ptr()));
        // Framing, payload, framing, payload: nothing after the last one.
        assert_eq!(chunks.len(), 4);
    }

    /// Each poll takes everything queued as one message, and the body ends
    /// when the writer side is gone.
    #[tokio::test]
    async fn the_body_sends_what_is_queued_as_one_message_then_ends() {
        use http_body_util::BodyExt;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = AddBody::new(rx, 4 << 20);
        let adds = vec![
            add(1, 10, 0, false),
            add(2, 20_000, 1, false),
            add(3, 30, 2, false),
        ];
        for a in &adds {
            tx.send(a.clone()).unwrap();
        }
        let mut bytes = Vec::new();
        while bytes.len() < PREFIX
            || bytes.len() - PREFIX
                < u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize
        {
            let frame = body.frame().await.unwrap().unwrap();
            bytes.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(AddRequest::decode(&bytes[PREFIX..]).unwrap().entries, adds);
        drop(tx);
        assert!(body.frame().await.is_none());
    }
}
