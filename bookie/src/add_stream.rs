//! The bookie's add stream, served here rather than by tonic's generated
//! route. tonic reads a request stream by copying every HTTP/2 DATA frame
//! into one buffer and decoding each message from there; at disk speed with
//! large entries that copy (and the page faults of the buffer it keeps
//! growing afresh) cost about a tenth of the bookie's CPU. Here a message is
//! decoded from the DATA frames themselves: a payload that arrived in one
//! frame (the ledger client sends each large payload as a frame of its own)
//! becomes a slice of that frame, so an entry's bytes are copied once in
//! user space, into the journal. The wire format is unchanged: the same
//! length-prefixed `AddRequest` messages in, `AddResponse` messages out
//! through tonic's encoder, and errors as gRPC statuses in the trailers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::Stream;
use futures::future::{Either, Ready, ready as ready_future};
use prost::Message;
use strata_proto::bookie::AddRequest;
use strata_proto::bookie::bookie_server::BookieServer;
use strata_proto::{ADD_ENTRIES_PATH, GRPC_MESSAGE_PREFIX as PREFIX};
use tonic::codec::{Codec, EncodeBody, SingleMessageCompressionOverride};
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use crate::service::{AddDriver, BookieService};
use crate::storage::LedgerStorage;

/// Bytes held as the chunks they arrived in. As a [`Buf`] it hands out a
/// range that lies within one chunk as a slice of that chunk (prost takes
/// `bytes` fields through [`Buf::copy_to_bytes`]) and copies only ranges
/// that straddle chunks.
#[derive(Debug, Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Chunks {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push_back(b);
        }
    }

    /// The first `n` bytes (`n` ≤ `remaining()`), taken off as chunks.
    fn split_to(&mut self, mut n: usize) -> Chunks {
        let mut out = Chunks::default();
        while n > 0 {
            let front = self.parts.front_mut().expect("split within the bytes held");
            let part = if front.len() <= n {
                self.parts.pop_front().expect("a front chunk")
            } else {
                front.split_to(n)
            };
            n -= part.len();
            self.len -= part.len();
            out.push(part);
        }
        out
    }

    /// The first `N` bytes, wherever the chunks split them, if held.
    fn peek<const N: usize>(&self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        (self.peek_into(&mut out) == N).then_some(out)
    }

    /// Copies the first bytes held into `out`, as many as fit; returns how
    /// many.
    fn peek_into(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        for part in &self.parts {
            if at == out.len() {
                break;
            }
            let n = part.len().min(out.len() - at);
            out[at..at + n].copy_from_slice(&part[..n]);
            at += n;
        }
        at
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b)
    }

    fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advance past the end of the bytes held");
        self.len -= n;
        while n > 0 {
            let front = self.parts.front_mut().expect("bytes left to skip");
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.parts.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, n: usize) -> Bytes {
        assert!(n <= self.len, "copy past the end of the bytes held");
        match self.parts.front_mut() {
            Some(front) if front.len() >= n => {
                self.len -= n;
                if front.len() == n {
                    self.parts.pop_front().expect("the front chunk")
                } else {
                    front.split_to(n)
                }
            }
            _ => {
                let mut out = BytesMut::with_capacity(n);
                out.put(self.take(n));
                out.freeze()
            }
        }
    }
}

/// Cuts a stream of bytes (in the chunks it arrives in) into gRPC messages.
#[derive(Debug)]
pub struct MessageReader {
    held: Chunks,
    max_message_bytes: usize,
}

impl MessageReader {
    pub fn new(max_message_bytes: usize) -> MessageReader {
        MessageReader {
            held: Chunks::default(),
            max_message_bytes,
        }
    }

    pub fn push(&mut self, b: Bytes) {
        self.held.push(b);
    }

    /// Bytes received but not yet returned in a message.
    pub fn pending(&self) -> usize {
        self.held.len
    }

    /// The next whole message, if it has arrived; an error for a message
    /// that is compressed (this method takes none) or longer than allowed.
    /// After an error the stream cannot be read further.
    pub fn next_message(&mut self) -> Result<Option<Chunks>, Status> {
        let Some(prefix) = self.held.peek::<PREFIX>() else {
            return Ok(None);
        };
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "protocol error: a compressed add request, but the add stream takes none",
                ));
            }
            flag => {
                return Err(Status::internal(format!(
                    "protocol error: invalid compression flag {flag} (0 and 1 are valid)"
                )));
            }
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.max_message_bytes {
            return Err(Status::out_of_range(format!(
                "add request of {len} bytes is larger than the limit of {} bytes",
                self.max_message_bytes
            )));
        }
        if self.held.len < PREFIX + len {
            return Ok(None);
        }
        self.held.advance(PREFIX);
        Ok(Some(self.held.split_to(len)))
    }
}

/// Decodes one message's bytes as an `AddRequest`.
///
/// Adds laid out as writers lay them out (known fields, an add's entry
/// once) that lie inside one chunk are read here directly, at a fraction of
/// prost's cost per add; an add that straddles chunks or is laid out
/// otherwise goes through prost on its own, and from the first field that is
/// not an add, the rest of the message does. The result is always what
/// prost makes of the whole message: an add is one complete field of the
/// message, and decoding a message is decoding its fields one after another.
pub fn decode_request(mut message: Chunks) -> Result<AddRequest, Status> {
    let mut entries = Vec::new();
    while let Some(front) = message.parts.front() {
        if let Some((add, used)) = fast::add_entry(front) {
            entries.push(add);
            message.advance(used);
            continue;
        }
        // An add that straddles chunks (one in sixteen 1 KiB adds, with
        // HTTP/2's 16 KiB frames; every add whose payload came as a chunk of
        // its own) goes to prost alone, as a message of that one field.
        let mut head = [0u8; fast::MAX_HEADER];
        let held = message.peek_into(&mut head);
        let Some(len) = fast::add_len(&head[..held]).filter(|&n| n <= message.len) else {
            break;
        };
        entries.extend(prost_decode(message.split_to(len))?.entries);
    }
    if message.has_remaining() {
        let rest = prost_decode(message)?;
        if entries.is_empty() {
            return Ok(rest);
        }
        entries.extend(rest.entries);
    }
    Ok(AddRequest { entries })
}

fn prost_decode(message: Chunks) -> Result<AddRequest, Status> {
    AddRequest::decode(message)
        .map_err(|e| Status::internal(format!("failed to decode the add request: {e}")))
}

/// The direct reading of [`decode_request`]. Every function answers `None`
/// for anything it does not take (a field it does not know, a wire type or
/// varint prost would refuse, a length past the end, an entry given twice,
/// which prost would merge); the caller then leaves that add to prost.
mod fast {
    use bytes::Bytes;
    use strata_proto::bookie::{AddEntry, Entry};

    /// Field keys (field number << 3 | wire type), each one byte.
    const ADD_REQUEST_ENTRIES: u8 = 1 << 3 | 2;
    const ADD_ENTRY: u8 = 1 << 3 | 2;
    const ADD_LAC: u8 = 2 << 3;
    const ADD_RECOVERY: u8 = 3 << 3;
    const ENTRY_LEDGER: u8 = 1 << 3;
    const ENTRY_ID: u8 = 2 << 3;
    const ENTRY_CUMULATIVE: u8 = 3 << 3;
    const ENTRY_CRC: u8 = 4 << 3 | 5;
    const ENTRY_PAYLOAD: u8 = 5 << 3 | 2;

    /// A varint at `*at` in `b` (as prost reads one: at most ten bytes, the
    /// tenth 0 or 1); moves `*at` past it.
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *b.get(*at + i)?;
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                *at += i + 1;
                return Some(value);
            }
        }
        None
    }

    /// A length-delimited field's bounds, its length read at `*at`; moves
    /// `*at` past the field.
    fn delimited(b: &[u8], at: &mut usize) -> Option<(usize, usize)> {
        let len = usize::try_from(varint(b, at)?).ok()?;
        let start = *at;
        let end = start.checked_add(len).filter(|&e| e <= b.len())?;
        *at = end;
        Some((start, end))
    }

    /// Longest key and length of an `AddRequest.entries` field.
    pub(super) const MAX_HEADER: usize = 11;

    /// The whole length of the `AddRequest.entries` field that `head` (its
    /// first bytes) starts, if the length is there.
    pub(super) fn add_len(head: &[u8]) -> Option<usize> {
        if *head.first()? != ADD_REQUEST_ENTRIES {
            return None;
        }
        let mut at = 1;
        let len = usize::try_from(varint(head, &mut at)?).ok()?;
        at.checked_add(len)
    }

    /// The `AddRequest.entries` field that starts `chunk`, and its length.
    pub(super) fn add_entry(chunk: &Bytes) -> Option<(AddEntry, usize)> {
        let b: &[u8] = chunk;
        if *b.first()? != ADD_REQUEST_ENTRIES {
            return None;
        }
        let mut at = 1;
        let (start, end) = delimited(b, &mut at)?;
        let fields = &b[..end];
        let mut add = AddEntry::default();
        each_field(fields, start, |key, at| {
            match key {
                ADD_ENTRY if add.entry.is_none() => {
                    let (s, e) = delimited(fields, at)?;
                    add.entry = Some(entry(chunk, s, e)?);
                }
                ADD_LAC => add.lac = varint(fields, at)? as i64,
                ADD_RECOVERY => add.recovery = varint(fields, at)? != 0,
                _ => return None,
            }
            Some(())
        })?;
        Some((add, end))
    }

    /// The `Entry` in `chunk[start..end]`; its payload is a slice of `chunk`.
    fn entry(chunk: &Bytes, start: usize, end: usize) -> Option<Entry> {
        let fields = &chunk[..end];
        let mut e = Entry::default();
        each_field(fields, start, |key, at| {
            match key {
                ENTRY_LEDGER => e.ledger_id = varint(fields, at)?,
                ENTRY_ID => e.entry_id = varint(fields, at)?,
                ENTRY_CUMULATIVE => e.cumulative_length = varint(fields, at)?,
                ENTRY_CRC => {
                    let raw = fields.get(*at..*at + 4)?;
                    e.crc32c = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                    *at += 4;
                }
                ENTRY_PAYLOAD => {
                    let (s, t) = delimited(fields, at)?;
                    e.payload = chunk.slice(s..t);
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(e)
    }

    /// Calls `field` for each field of `fields[start..]` with its one-byte
    /// key and a cursor just past the key, which `field` moves past the
    /// field's value; stops at the first `None`.
    fn each_field(
        fields: &[u8],
        start: usize,
        mut field: impl FnMut(u8, &mut usize) -> Option<()>,
    ) -> Option<()> {
        let mut at = start;
        while let Some(&key) = fields.get(at) {
            at += 1;
            field(key, &mut at)?;
        }
        Some(())
    }
}

/// The add requests of an HTTP/2 request body.
pub struct AddRequests<B> {
    body: B,
    reader: MessageReader,
    done: bool,
}

impl<B> AddRequests<B> {
    pub fn new(body: B, max_message_bytes: usize) -> AddRequests<B> {
        AddRequests {
            body,
            reader: MessageReader::new(max_message_bytes),
            done: false,
        }
    }
}

impl<B> Stream for AddRequests<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Item = Result<AddRequest, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.reader.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(decode_request(message))),
                Ok(None) => {}
                Err(status) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                // Trailers from a client carry nothing the bookie uses.
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.reader.push(data);
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::from_error(e.into()))));
                }
                None => {
                    this.done = true;
                    if this.reader.pending() > 0 {
                        return Poll::Ready(Some(Err(Status::internal(
                            "the add stream ended inside a message",
                        ))));
                    }
                }
            }
        }
    }
}

/// The bookie's gRPC service: tonic's generated routes for every method but
/// the add stream, which is served by [`AddRequests`] and [`AddDriver`].
#[derive(Clone)]
pub struct BookieGrpc {
    routes: BookieServer<BookieService>,
    storage: Arc<LedgerStorage>,
    shutdown: tokio_util::sync::CancellationToken,
    max_message_bytes: usize,
}

impl BookieGrpc {
    pub fn new(service: BookieService, max_message_bytes: usize) -> BookieGrpc {
        let storage = service.storage.clone();
        let shutdown = service.shutdown.clone();
        BookieGrpc {
            routes: BookieServer::new(service)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            storage,
            shutdown,
            max_message_bytes,
        }
    }

    fn add_entries(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        let encoding = request.headers().get("grpc-encoding");
        if let Some(e) = encoding.filter(|e| e.as_bytes() != b"identity") {
            let e = String::from_utf8_lossy(e.as_bytes()).into_owned();
            return Status::new(
                Code::Unimplemented,
                format!("the add stream takes no compression, got grpc-encoding `{e}`"),
            )
            .into_http();
        }
        let requests = AddRequests::new(request.into_body(), self.max_message_bytes);
        let driver = AddDriver::new(
            Box::pin(requests),
            self.storage.clone(),
            self.shutdown.clone(),
        );
        let body = EncodeBody::new_server(
            ProstCodec::<_, AddRequest>::default().encoder(),
            driver,
            None,
            SingleMessageCompressionOverride::default(),
            Some(self.max_message_bytes),
        );
        let mut response = http::Response::new(tonic::body::Body::new(body));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

impl NamedService for BookieGrpc {
    const NAME: &'static str = <BookieServer<BookieService> as NamedService>::NAME;
}

type RoutesFuture =
    <BookieServer<BookieService> as Service<http::Request<tonic::body::Body>>>::Future;

impl Service<http::Request<tonic::body::Body>> for BookieGrpc {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Self::Response, Infallible>>, RoutesFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == ADD_ENTRIES_PATH {
            Either::Left(ready_future(Ok(self.add_entries(request))))
        } else {
            Either::Right(self.routes.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::bookie::{AddEntry, Entry};

    fn framed(req: &AddRequest) -> Vec<u8> {
        let body = req.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn request(payloads: &[usize]) -> AddRequest {
        AddRequest {
            entries: payloads
                .iter()
                .enumerate()
                .map(|(i, n)| AddEntry {
                    entry: Some(Entry {
                        ledger_id: 7,
                        entry_id: i as u64,
                        cumulative_length: (i * 1000) as u64,
                        crc32c: 0xdead_beef ^ i as u32,
                        payload: Bytes::from(vec![i as u8 + 1; *n]),
                    }),
                    lac: i as i64 - 1,
                    recovery: i % 2 == 1,
                })
                .collect(),
        }
    }

    /// Every way of cutting the stream into chunks decodes to the same
    /// requests.
    #[test]
    fn messages_decode_the_same_however_the_stream_is_cut() {
        let sent = [request(&[0, 3, 300]), request(&[]), request(&[5000, 1])];
        let stream: Vec<u8> = sent.iter().flat_map(framed).collect();
        for cut in [1, 2, 3, 4, 5, 7, 64, 1000, 4096, stream.len()] {
            let mut reader = MessageReader::new(1 << 20);
            let mut got = Vec::new();
            for piece in stream.chunks(cut) {
                reader.push(Bytes::copy_from_slice(piece));
                while let Some(m) = reader.next_message().unwrap() {
                    got.push(decode_request(m).unwrap());
                }
            }
            assert_eq!(got, sent, "cut every {cut} bytes");
            assert_eq!(reader.pending(), 0);
        }
    }

    /// A payload that arrived in one chunk is handed on as that chunk's
    /// memory; one split across chunks is copied together.
    #[test]
    fn a_payload_in_one_chunk_is_not_copied() {
        let mut sent = request(&[64 << 10]);
        // prost writes an add's `lac` after its entry: with none, the
        // payload ends the message.
        sent.entries[0].lac = 0;
        let stream = framed(&sent);
        let payload = &sent.entries[0].entry.as_ref().unwrap().payload;
        let head = stream.len() - payload.len();
        let whole = Bytes::from(stream);
        let mut reader = MessageReader::new(1 << 20);
        reader.push(whole.slice(..head));
        reader.push(whole.slice(head..));
        let got = decode_request(reader.next_message().unwrap().unwrap()).unwrap();
        let got_payload = &got.entries[0].entry.as_ref().unwrap().payload;
        assert_eq!(got, sent);
        assert_eq!(got_payload.as_ptr(), whole[head..].as_ptr());

        let mut reader = MessageReader::new(1 << 20);
        reader.push(whole.slice(..head + 10));
        reader.push(whole.slice(head + 10..));
        let got = decode_request(reader.next_message().unwrap().unwrap()).unwrap();
        assert_eq!(got, sent);
    }

    /// `data` cut into chunks at the given offsets, as one message.
    fn chunked(data: &[u8], cuts: &[usize]) -> Chunks {
        let mut c = Chunks::default();
        let mut at = 0;
        for &cut in cuts.iter().chain([data.len()].iter()) {
            let cut = cut.clamp(at, data.len());
            c.push(Bytes::copy_from_slice(&data[at..cut]));
            at = cut;
        }
        c
    }

    /// The direct reading gives what prost gives, field for field and
    /// refusal for refusal, on messages as writers lay them out, as prost
    /// lays them out, with fields repeated, unknown or out of order, and
    /// with random bytes changed, cut anywhere.
    #[test]
    fn adds_decode_as_prost_decodes_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut cases: Vec<Vec<u8>> = vec![
            request(&[0, 3, 300]).encode_to_vec(),
            request(&[1024; 20]).encode_to_vec(),
            AddRequest::default().encode_to_vec(),
        ];
        // As the ledger client writes them: lac (-1: ten bytes) and
        // recovery first, the payload last.
        let mut writer = Vec::new();
        for i in 0..4u8 {
            let entry = [
                &[
                    0x08, 7, 0x10, i, 0x18, 0x90, 0x4e, 0x25, 1, 2, 3, 4, 0x2a, 3,
                ][..],
                &[i; 3][..],
            ]
            .concat();
            let mut add = vec![0x10];
            add.extend_from_slice(&[0xff; 9]);
            add.extend_from_slice(&[0x01, 0x18, 1, 0x0a, entry.len() as u8]);
            add.extend_from_slice(&entry);
            writer.extend_from_slice(&[0x0a, add.len() as u8]);
            writer.extend_from_slice(&add);
        }
        cases.push(writer.clone());
        // An entry given twice (prost merges the two), a scalar given
        // twice (the last counts), an unknown field in an add and in the
        // request, a tenth varint byte over 1, a field past the end.
        let entry = |id: u8| [0x08, 9, 0x10, id, 0x2a, 1, id];
        let add_twice = [&[0x0a, 7][..], &entry(1), &[0x0a, 4, 0x08, 5, 0x18, 2]].concat();
        cases.push([&[0x0a, add_twice.len() as u8][..], &add_twice].concat());
        cases.push([&[0x0a, 13, 0x10, 3, 0x10, 4, 0x0a, 7][..], &entry(2)].concat());
        cases.push([&writer[..], &[0x0a, 4, 0x38, 1, 0x10, 5]].concat());
        cases.push([&[0x12, 2, 0, 0][..], &writer].concat());
        cases.push([&[0x0a, 11, 0x10][..], &[0xff; 9], &[0x02]].concat());
        cases.push([&writer[..], &[0x0a, 9, 0x0a, 20]].concat());
        for _ in 0..2000 {
            let mut m = cases[rng.random_range(0..cases.len())].clone();
            for _ in 0..rng.random_range(0..4) {
                if !m.is_empty() {
                    let i = rng.random_range(0..m.len());
                    m[i] = rng.random();
                }
            }
            cases.push(m);
        }
        for m in &cases {
            let expected = AddRequest::decode(m.as_slice()).ok();
            let mut cuts: Vec<usize> = (0..rng.random_range(0..4))
                .map(|_| rng.random_range(0..=m.len()))
                .collect();
            cuts.sort_unstable();
            for cuts in [&[][..], &cuts] {
                let got = decode_request(chunked(m, cuts)).ok();
                assert_eq!(got, expected, "{m:02x?} cut at {cuts:?}");
            }
        }
    }

    /// A payload that arrived in one chunk is handed on as that chunk's
    /// memory by the direct reading too.
    #[test]
    fn adds_in_one_chunk_are_read_in_place() {
        let sent = request(&[100, 2000, 0]);
        let body = Bytes::from(sent.encode_to_vec());
        let mut c = Chunks::default();
        c.push(body.clone());
        let got = decode_request(c).unwrap();
        assert_eq!(got, sent);
        let payload = &got.entries[1].entry.as_ref().unwrap().payload;
        let at = body
            .windows(payload.len())
            .position(|w| w == &payload[..])
            .unwrap();
        assert_eq!(payload.as_ptr(), body[at..].as_ptr());
    }

    #[test]
    fn bad_streams_get_a_clear_status() {
        let mut big = MessageReader::new(100);
        big.push(Bytes::from_static(&[0, 0, 0, 0, 101]));
        let e = big.next_message().unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e}");
        assert!(e.message().contains("101 bytes"), "{e}");

        let mut compressed = MessageReader::new(100);
        compressed.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]));
        let e = compressed.next_message().unwrap_err();
        assert_eq!(e.code(), Code::Internal, "{e}");

        let mut flag = MessageReader::new(100);
        flag.push(Bytes::from_static(&[9, 0, 0, 0, 0]));
        assert!(flag.next_message().is_err());

        // A field that claims more bytes than the message holds.
        let mut garbage = MessageReader::new(100);
        garbage.push(Bytes::from_static(&[0, 0, 0, 0, 3, 0x0a, 0x7f, 0x01]));
        let m = garbage.next_message().unwrap().unwrap();
        let e = decode_request(m).unwrap_err();
        assert_eq!(e.code(), Code::Internal, "{e}");
        assert!(e.message().contains("decode"), "{e}");
    }

    #[tokio::test]
    async fn a_body_cut_inside_a_message_ends_with_an_error() {
        use futures::StreamExt;
        let stream = framed(&request(&[10, 20]));
        let frames: Vec<Result<http_body::Frame<Bytes>, Status>> = vec![
            Ok(http_body::Frame::data(Bytes::copy_from_slice(&stream))),
            Ok(http_body::Frame::data(Bytes::copy_from_slice(&stream[..7]))),
        ];
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let mut requests = AddRequests::new(body, 1 << 20);
        assert!(requests.next().await.unwrap().is_ok());
        let e = requests.next().await.unwrap().unwrap_err();
        assert!(e.message().contains("ended inside a message"), "{e}");
        assert!(requests.next().await.is_none());
    }
}
