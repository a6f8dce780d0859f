//! The offloaded-ledger format: a `data` object of blocks and an `index`
//! object that says where every block is and what it must hash to.
//!
//! All integers are little endian.
//!
//! **data** is the concatenation of blocks. A block is a run of consecutive
//! entries, each `[entry_id u64][len u32][payload len bytes]`, closed once it
//! reaches the target size (an entry larger than the target makes a block of
//! its own). Blocks carry no header: the index row is what makes a block
//! decodable, and [`BlockEntries`] / [`check_block`] refuse any block whose
//! CRC32C, length, entry ids or entry count disagree with its row.
//!
//! **index** is
//! ```text
//! magic "STRTAIDX" | version u32 | header_len u32 | header JSON (LedgerHeader)
//! | block_count u64 | block_count × row | head_len u32 | head | trailer u32
//! row = offset u64 | len u32 | first_entry u64 | entries u32 | crc32c u32  (28 bytes)
//! ```
//! `head` (version 2; version 1 indexes end after the rows and are still
//! read) is a copy of the data object's first block, or nothing
//! (`head_len` 0, when that block is larger than the uploader's limit). It
//! must match the first row like any block read from `data`. With it, the
//! one GET that opens a ledger also serves its first entries: a reader
//! starting a cold ledger from its beginning (a new subscription, or a scan
//! crossing into the next ledger) waits for one small GET instead of the
//! slower of two, one of them inside a large object (a store such as Garage
//! reads and hashes the whole 1 MiB chunk behind a 64 KiB range).
//! The trailer is the CRC32C of every byte before it, stored **big endian**:
//! appended little endian, the CRC32C of the whole object would be the same
//! constant (the CRC residue) for every index, and the whole-object CRC kept
//! in the offload record could not tell one valid index from another.
//! Rows must tile the data object (offsets contiguous from 0) and the entry
//! ids (contiguous from 0 to `header.entries`). One row per ~64 KiB block is
//! what lets one entry be read with one small ranged GET.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{OffloadError, Result};

/// First bytes of every index object.
pub const INDEX_MAGIC: &[u8; 8] = b"STRTAIDX";
/// The index version this code writes; it reads this and version 1.
pub const FORMAT_VERSION: u32 = 2;
/// Default limit on the first block's size for a copy of it to go into the
/// index (a first block of one huge entry is not copied).
pub const DEFAULT_HEAD_MAX: usize = 256 * 1024;
/// Bytes before each entry's payload in a block: entry id u64 + length u32.
pub const ENTRY_OVERHEAD: usize = 12;
/// Bytes of one index row.
pub const ROW_LEN: usize = 28;
/// Default size at which a block is closed.
pub const DEFAULT_BLOCK_TARGET: usize = 64 * 1024;
/// Largest header JSON accepted, so a corrupt length cannot make us allocate
/// gigabytes before the trailer CRC is even checked.
const MAX_HEADER_LEN: usize = 1 << 20;
/// magic + version + header_len + block_count + trailer (+ head_len in
/// version 2).
const INDEX_FIXED_LEN: usize = 8 + 4 + 4 + 8 + 4;

/// What the index says about the ledger; everything needed to serve it
/// without the bookies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerHeader {
    pub ledger_id: u64,
    /// The topic's managed-ledger name.
    pub managed_ledger: String,
    /// Entry ids are `0..entries`.
    pub entries: u64,
    pub payload_bytes: u64,
    pub created_ms: u64,
    pub closed_ms: Option<u64>,
    pub offloaded_ms: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Where one block lives in the data object and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRow {
    pub offset: u64,
    pub len: u32,
    pub first_entry: u64,
    pub entries: u32,
    pub crc32c: u32,
}

impl BlockRow {
    /// Byte range of the block in the data object.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.len)
    }

    pub fn last_entry(&self) -> u64 {
        self.first_entry + u64::from(self.entries) - 1
    }

    /// Payload bytes in the block (its length minus per-entry overhead).
    pub fn payload_bytes(&self) -> u64 {
        u64::from(self.len) - u64::from(self.entries) * ENTRY_OVERHEAD as u64
    }
}

/// A decoded, validated index.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerIndex {
    pub header: LedgerHeader,
    pub rows: Vec<BlockRow>,
    /// Size the data object must have: the end of the last block.
    pub data_size: u64,
    /// The index's copy of the first block (checked against its row), for
    /// the block cache: a reader takes it out before keeping the index.
    pub head: Option<Bytes>,
}

impl LedgerIndex {
    /// The block holding `entry_id`, if the ledger has that entry.
    pub fn block_of(&self, entry_id: u64) -> Option<usize> {
        if entry_id >= self.header.entries {
            return None;
        }
        // Rows are sorted by first_entry and tile 0..entries.
        let i = self.rows.partition_point(|r| r.first_entry <= entry_id);
        i.checked_sub(1)
    }

    /// Bytes this index takes in memory (for cache weighting).
    pub fn weight(&self) -> usize {
        self.rows.len() * std::mem::size_of::<BlockRow>() + self.header.managed_ledger.len() + 256
    }
}

/// Encodes an index object. `rows` must tile the data as described in the
/// module docs; the uploader builds them that way. `head` is empty or the
/// first block's bytes.
pub fn encode_index(header: &LedgerHeader, rows: &[BlockRow], head: &[u8]) -> Result<Bytes> {
    let json = serde_json::to_vec(header)
        .map_err(|e| OffloadError::Other(format!("encoding ledger header: {e}")))?;
    let mut out = BytesMut::with_capacity(
        INDEX_FIXED_LEN + 4 + json.len() + rows.len() * ROW_LEN + head.len(),
    );
    out.put_slice(INDEX_MAGIC);
    out.put_u32_le(FORMAT_VERSION);
    out.put_u32_le(json.len() as u32);
    out.put_slice(&json);
    out.put_u64_le(rows.len() as u64);
    for r in rows {
        out.put_u64_le(r.offset);
        out.put_u32_le(r.len);
        out.put_u64_le(r.first_entry);
        out.put_u32_le(r.entries);
        out.put_u32_le(r.crc32c);
    }
    let head_len = u32::try_from(head.len())
        .map_err(|_| OffloadError::Other(format!("a head of {} bytes", head.len())))?;
    out.put_u32_le(head_len);
    out.put_slice(head);
    let crc = strata_proto::crc::crc32c(&out);
    out.put_u32(crc);
    Ok(out.freeze())
}

/// Decodes and validates an index object; `key` names it in errors.
pub fn decode_index(key: &str, bytes: &[u8]) -> Result<LedgerIndex> {
    let bad = |reason: String| OffloadError::corrupt(key, reason);
    if bytes.len() < INDEX_FIXED_LEN {
        return Err(bad(format!("index is {} bytes, too short", bytes.len())));
    }
    if &bytes[..8] != INDEX_MAGIC {
        return Err(bad("index has a wrong magic".into()));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let mut buf = &body[8..];
    let version = buf.get_u32_le();
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(bad(format!("unknown index format version {version}")));
    }
    let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let actual = strata_proto::crc::crc32c(body);
    if stored != actual {
        return Err(bad(format!(
            "index checksum mismatch: trailer {stored:#010x}, computed {actual:#010x}"
        )));
    }
    let header_len = buf.get_u32_le() as usize;
    if header_len > MAX_HEADER_LEN || buf.len() < header_len + 8 {
        return Err(bad(format!(
            "index header length {header_len} out of range"
        )));
    }
    let header: LedgerHeader = serde_json::from_slice(&buf[..header_len])
        .map_err(|e| bad(format!("index header is not valid JSON: {e}")))?;
    buf.advance(header_len);
    let count = buf.get_u64_le();
    let rows_len = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(ROW_LEN));
    // Where the head's length sits (version 2), counted from the body's end.
    let (fits, head_len) = match rows_len {
        None => (false, 0),
        Some(n) if version == 1 => (n == buf.len(), 0),
        Some(n) => match buf.len().checked_sub(n).filter(|rest| *rest >= 4) {
            Some(rest) => {
                let head_len = (&buf[n..n + 4]).get_u32_le() as usize;
                (rest - 4 == head_len, head_len)
            }
            None => (false, 0),
        },
    };
    if !fits {
        return Err(bad(format!(
            "index claims {count} blocks but has {} bytes of rows and head",
            buf.len()
        )));
    }
    let head_at = body.len() - head_len;
    let mut rows = Vec::with_capacity(count as usize);
    let (mut offset, mut entry) = (0u64, 0u64);
    for i in 0..count {
        let row = BlockRow {
            offset: buf.get_u64_le(),
            len: buf.get_u32_le(),
            first_entry: buf.get_u64_le(),
            entries: buf.get_u32_le(),
            crc32c: buf.get_u32_le(),
        };
        if row.offset != offset {
            return Err(bad(format!(
                "block {i} starts at {} but the previous block ends at {offset}",
                row.offset
            )));
        }
        if row.first_entry != entry {
            return Err(bad(format!(
                "block {i} starts at entry {} but entry {entry} is next",
                row.first_entry
            )));
        }
        if row.entries == 0 || (row.len as usize) < row.entries as usize * ENTRY_OVERHEAD {
            return Err(bad(format!(
                "block {i}: {} entries cannot fit in {} bytes",
                row.entries, row.len
            )));
        }
        offset += u64::from(row.len);
        entry += u64::from(row.entries);
        rows.push(row);
    }
    if entry != header.entries {
        return Err(bad(format!(
            "blocks hold {entry} entries, header says {}",
            header.entries
        )));
    }
    let payload = offset - entry * ENTRY_OVERHEAD as u64;
    if payload != header.payload_bytes {
        return Err(bad(format!(
            "blocks hold {payload} payload bytes, header says {}",
            header.payload_bytes
        )));
    }
    let head = match rows.first() {
        Some(first) if head_len > 0 => {
            let head = Bytes::copy_from_slice(&body[head_at..]);
            check_block(key, first, &head)
                .map_err(|e| bad(format!("the index's copy of the first block: {e}")))?;
            Some(head)
        }
        None if head_len > 0 => return Err(bad("a head without blocks".into())),
        _ => None,
    };
    Ok(LedgerIndex {
        header,
        rows,
        data_size: offset,
        head,
    })
}

/// Iterates the entries of one block, checking its structure as it goes
/// (not its CRC: see [`check_block`]). Payloads are slices of the block,
/// not copies.
pub struct BlockEntries<'a> {
    key: &'a str,
    row: BlockRow,
    rest: Bytes,
    next: u64,
}

impl<'a> BlockEntries<'a> {
    /// `block` must be exactly the block's bytes.
    pub fn new(key: &'a str, row: BlockRow, block: Bytes) -> Result<Self> {
        check_len(key, &row, &block)?;
        Ok(BlockEntries {
            key,
            row,
            rest: block,
            next: row.first_entry,
        })
    }

    fn corrupt(&mut self, reason: String) -> Option<Result<(u64, Bytes)>> {
        // Stop after the first error.
        self.rest = Bytes::new();
        self.next = self.row.first_entry + u64::from(self.row.entries);
        Some(Err(OffloadError::corrupt(
            self.key,
            format!("block at offset {}: {reason}", self.row.offset),
        )))
    }
}

impl Iterator for BlockEntries<'_> {
    type Item = Result<(u64, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        let end = self.row.first_entry + u64::from(self.row.entries);
        if self.next == end {
            if !self.rest.is_empty() {
                let extra = self.rest.len();
                return self.corrupt(format!("{extra} bytes after the last entry"));
            }
            return None;
        }
        if self.rest.len() < ENTRY_OVERHEAD {
            let n = self.next;
            return self.corrupt(format!("ends inside the header of entry {n}"));
        }
        let id = (&self.rest[..8]).get_u64_le();
        let len = (&self.rest[8..12]).get_u32_le() as usize;
        if id != self.next {
            let n = self.next;
            return self.corrupt(format!("holds entry {id} where entry {n} belongs"));
        }
        if self.rest.len() - ENTRY_OVERHEAD < len {
            return self.corrupt(format!("entry {id} of {len} bytes runs past the block"));
        }
        self.rest.advance(ENTRY_OVERHEAD);
        let payload = self.rest.split_to(len);
        self.next += 1;
        Some(Ok((id, payload)))
    }
}

/// Checks a block completely: length, CRC32C, entry ids, count and lengths.
/// The block must be as long as its index row says.
fn check_len(key: &str, row: &BlockRow, block: &Bytes) -> Result<()> {
    if block.len() != row.len as usize {
        return Err(OffloadError::corrupt(
            key,
            format!(
                "block at offset {} is {} bytes, index says {}",
                row.offset,
                block.len(),
                row.len
            ),
        ));
    }
    Ok(())
}

/// Called on every block read from the store or the disk cache before it is
/// used or cached.
pub fn check_block(key: &str, row: &BlockRow, block: &Bytes) -> Result<()> {
    check_block_crc(key, row, block, strata_proto::crc::crc32c(block))
}

/// [`check_block`] with the block's CRC32C already computed (`crc`), as a
/// GET computes it while receiving the block.
pub fn check_block_crc(key: &str, row: &BlockRow, block: &Bytes, crc: u32) -> Result<()> {
    check_len(key, row, block)?;
    if crc != row.crc32c {
        return Err(OffloadError::corrupt(
            key,
            format!(
                "block at offset {} checksum {crc:#010x}, index says {:#010x}",
                row.offset, row.crc32c
            ),
        ));
    }
    for e in BlockEntries::new(key, *row, block.clone())? {
        e?;
    }
    Ok(())
}

/// Builds blocks into a caller-owned buffer (the upload's part buffer), so
/// each entry is copied exactly once on its way to the store.
#[derive(Debug)]
pub struct BlockWriter {
    target: usize,
    /// Data-object offset of `buf[0]`.
    base: u64,
    /// Offset in the buffer where the open block starts.
    open_start: usize,
    open_first: u64,
    open_entries: u32,
    rows: Vec<BlockRow>,
}

impl BlockWriter {
    pub fn new(target: usize) -> Self {
        BlockWriter {
            target: target.max(1),
            base: 0,
            open_start: 0,
            open_first: 0,
            open_entries: 0,
            rows: Vec::new(),
        }
    }

    /// Appends an entry; closes blocks as they reach the target. Returns
    /// true when a block was closed (so the caller may cut a part).
    pub fn push(&mut self, buf: &mut BytesMut, entry_id: u64, payload: &[u8]) -> Result<bool> {
        let len = u32::try_from(payload.len())
            .map_err(|_| OffloadError::Input(format!("entry {entry_id} is larger than 4 GiB")))?;
        let mut closed = false;
        let open_len = buf.len() - self.open_start;
        if self.open_entries > 0 && open_len + ENTRY_OVERHEAD + payload.len() > self.target {
            self.close(buf);
            closed = true;
        }
        if self.open_entries == 0 {
            self.open_first = entry_id;
        }
        buf.reserve(ENTRY_OVERHEAD + payload.len());
        buf.put_u64_le(entry_id);
        buf.put_u32_le(len);
        buf.put_slice(payload);
        self.open_entries += 1;
        if buf.len() - self.open_start >= self.target {
            self.close(buf);
            closed = true;
        }
        Ok(closed)
    }

    /// Closes the open block, if any (at the end of the ledger).
    pub fn close(&mut self, buf: &BytesMut) {
        if self.open_entries == 0 {
            return;
        }
        let block = &buf[self.open_start..];
        self.rows.push(BlockRow {
            offset: self.base + self.open_start as u64,
            len: block.len() as u32,
            first_entry: self.open_first,
            entries: self.open_entries,
            crc32c: strata_proto::crc::crc32c(block),
        });
        self.open_start = buf.len();
        self.open_entries = 0;
    }

    /// Bytes at the front of the buffer that belong to closed blocks and
    /// may be cut off into a part.
    pub fn sealed(&self) -> usize {
        self.open_start
    }

    /// The caller removed `n` sealed bytes from the front of the buffer.
    pub fn consumed(&mut self, n: usize) {
        debug_assert!(n <= self.open_start);
        self.base += n as u64;
        self.open_start -= n;
    }

    pub fn rows(&self) -> &[BlockRow] {
        &self.rows
    }

    pub fn into_rows(self) -> Vec<BlockRow> {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn header(entries: u64, payload: u64) -> LedgerHeader {
        LedgerHeader {
            ledger_id: 7,
            managed_ledger: "public/default/persistent/t".into(),
            entries,
            payload_bytes: payload,
            created_ms: 1,
            closed_ms: Some(2),
            offloaded_ms: 3,
            properties: BTreeMap::from([("k".into(), "v".into())]),
        }
    }

    /// Builds data + rows for entries of the given sizes.
    fn build(sizes: &[usize], target: usize) -> (Bytes, Vec<BlockRow>, u64) {
        let mut buf = BytesMut::new();
        let mut w = BlockWriter::new(target);
        let mut payload = 0;
        for (i, &s) in sizes.iter().enumerate() {
            let body = vec![(i % 251) as u8; s];
            payload += s as u64;
            w.push(&mut buf, i as u64, &body).unwrap();
        }
        w.close(&buf);
        (buf.freeze(), w.into_rows(), payload)
    }

    #[test]
    fn blocks_close_at_target_and_big_entries_stand_alone() {
        let (data, rows, _) = build(&[10, 10, 200, 10, 10, 10], 64);
        // [0,1] then 200 would exceed: close; 200 alone; a third 10 would
        // make 66 > 64, so it starts a new block.
        assert_eq!(
            rows.iter().map(|r| r.entries).collect::<Vec<_>>(),
            vec![2, 1, 2, 1]
        );
        assert_eq!(rows[1].len as usize, 200 + ENTRY_OVERHEAD);
        for r in &rows {
            let block = data.slice(r.offset as usize..r.range().end as usize);
            check_block("k", r, &block).unwrap();
        }
    }

    #[test]
    fn index_round_trip_and_lookup() {
        let (data, rows, payload) = build(&vec![1000; 300], DEFAULT_BLOCK_TARGET);
        let h = header(300, payload);
        let idx = encode_index(&h, &rows, &[]).unwrap();
        let decoded = decode_index("k", &idx).unwrap();
        assert_eq!(decoded.header, h);
        assert_eq!(decoded.rows, rows);
        assert_eq!(decoded.data_size, data.len() as u64);
        for e in [0, 1, 63, 64, 150, 299] {
            let b = decoded.block_of(e).unwrap();
            let r = decoded.rows[b];
            assert!(r.first_entry <= e && e <= r.last_entry());
        }
        assert_eq!(decoded.block_of(300), None);
    }

    #[test]
    fn the_index_carries_a_checked_copy_of_the_first_block() {
        let (data, rows, payload) = build(&vec![1000; 300], DEFAULT_BLOCK_TARGET);
        let h = header(300, payload);
        let first = data.slice(..rows[0].len as usize);
        let idx = encode_index(&h, &rows, &first).unwrap();
        let decoded = decode_index("k", &idx).unwrap();
        assert_eq!(decoded.head.as_ref(), Some(&first));
        assert_eq!(decoded.rows, rows);
        // A head that is not the first block (here the second) is refused,
        // checksum sealed or not.
        let second = data.slice(rows[1].offset as usize..rows[1].range().end as usize);
        let wrong = encode_index(&h, &rows, &second).unwrap();
        let why = reason(decode_index("k", &wrong));
        assert!(why.contains("copy of the first block"), "{why}");
        // A head length that disagrees with the object's size.
        let mut long = idx.to_vec();
        let at = long.len() - 4 - first.len() - 4;
        long[at..at + 4].copy_from_slice(&(first.len() as u32 + 1).to_le_bytes());
        let why = reason(decode_index("k", &reseal(long)));
        assert!(why.contains("rows and head"), "{why}");
    }

    /// Indexes written before the head existed still decode.
    #[test]
    fn version_1_indexes_are_still_read() {
        let (data, rows, payload) = build(&vec![1000; 300], DEFAULT_BLOCK_TARGET);
        let h = header(300, payload);
        let v2 = encode_index(&h, &rows, &[]).unwrap().to_vec();
        // Version 1 is version 2 without the head's length.
        let mut v1 = v2[..v2.len() - 8].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let v1 = reseal([v1, vec![0; 4]].concat());
        let decoded = decode_index("k", &v1).unwrap();
        assert_eq!(decoded.rows, rows);
        assert_eq!(decoded.data_size, data.len() as u64);
        assert_eq!(decoded.head, None);
        // And a version-1 index with bytes after its rows is refused.
        let longer = reseal([v1.clone(), vec![0; 4]].concat());
        assert!(reason(decode_index("k", &longer)).contains("rows"));
    }

    #[test]
    fn whole_index_crc_identifies_the_index() {
        let (_, rows, payload) = build(&[100; 10], 512);
        let a = encode_index(&header(10, payload), &rows, &[]).unwrap();
        let mut h = header(10, payload);
        h.ledger_id = 8;
        let b = encode_index(&h, &rows, &[]).unwrap();
        assert_ne!(strata_proto::crc::crc32c(&a), strata_proto::crc::crc32c(&b));
    }

    #[test]
    fn empty_ledger_index() {
        let idx = encode_index(&header(0, 0), &[], &[]).unwrap();
        let d = decode_index("k", &idx).unwrap();
        assert_eq!(d.data_size, 0);
        assert_eq!(d.block_of(0), None);
    }

    fn reason(r: Result<LedgerIndex>) -> String {
        match r {
            Err(OffloadError::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Re-encodes with a correct trailer so structural checks are reached.
    fn reseal(mut body: Vec<u8>) -> Vec<u8> {
        body.truncate(body.len() - 4);
        let crc = strata_proto::crc::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        body
    }

    #[test]
    fn decode_rejects_each_kind_of_damage() {
        let (_, rows, payload) = build(&[100; 50], 512);
        let h = header(50, payload);
        let good = encode_index(&h, &rows, &[]).unwrap().to_vec();

        let mut m = good.clone();
        m[0] ^= 1;
        assert!(reason(decode_index("k", &m)).contains("magic"));

        let mut v = good.clone();
        v[8] = 9;
        assert!(reason(decode_index("k", &reseal(v))).contains("version"));

        let mut c = good.clone();
        let mid = c.len() / 2;
        c[mid] ^= 0x40;
        assert!(reason(decode_index("k", &c)).contains("checksum"));

        // A gap between blocks.
        let mut gap = rows.clone();
        gap[3].offset += 1;
        let g = encode_index(&h, &gap, &[]).unwrap();
        assert!(reason(decode_index("k", &g)).contains("starts at"));

        // Entry ids not contiguous.
        let mut ids = rows.clone();
        ids[2].first_entry += 1;
        let i = encode_index(&h, &ids, &[]).unwrap();
        assert!(reason(decode_index("k", &i)).contains("entry"));

        // Wrong total.
        let t = encode_index(&header(51, payload), &rows, &[]).unwrap();
        assert!(reason(decode_index("k", &t)).contains("header says"));

        // Truncated rows.
        let mut short = good.clone();
        short.truncate(good.len() - 10);
        let short = reseal([short, vec![0; 4]].concat());
        assert!(reason(decode_index("k", &short)).contains("rows"));

        assert!(reason(decode_index("k", &good[..10])).contains("too short"));
    }

    #[test]
    fn block_checks_reject_damage() {
        let (data, rows, _) = build(&[30, 40, 50], 1 << 20);
        let r = rows[0];
        let block = data.clone();
        check_block("k", &r, &block).unwrap();

        let mut flipped = block.to_vec();
        flipped[20] ^= 1;
        let e = check_block("k", &r, &Bytes::from(flipped)).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");

        let e = check_block("k", &r, &block.slice(..block.len() - 1)).unwrap_err();
        assert!(e.is_corrupt());

        // A row that claims one entry fewer: CRC matches, structure does not.
        let fewer = BlockRow { entries: 2, ..r };
        let e = check_block("k", &fewer, &block).unwrap_err();
        assert!(e.to_string().contains("after the last entry"), "{e}");

        // A row with the wrong first entry id.
        let shifted = BlockRow {
            first_entry: 5,
            ..r
        };
        let e = check_block("k", &shifted, &block).unwrap_err();
        assert!(e.to_string().contains("where entry 5 belongs"), "{e}");
    }

    #[test]
    fn entries_are_slices_of_the_block() {
        let (data, rows, _) = build(&[5, 6, 7], 1 << 20);
        let got: Vec<_> = BlockEntries::new("k", rows[0], data.clone())
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].0, 2);
        assert_eq!(got[2].1.len(), 7);
        let base = data.as_ptr() as usize;
        let p = got[1].1.as_ptr() as usize;
        assert!(p > base && p < base + data.len(), "payload was copied");
    }

    /// Random bytes, and random damage to a valid index or block, never
    /// panic and are never accepted as something else.
    #[test]
    fn fuzz_decoders_with_random_bytes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let (data, rows, payload) = build(&[100; 40], 600);
        let first = data.slice(..rows[0].len as usize);
        let good = encode_index(&header(40, payload), &rows, &first)
            .unwrap()
            .to_vec();
        for _ in 0..3000 {
            let n = rng.random_range(0..200);
            let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            assert!(decode_index("k", &junk).is_err());
            let mut with_magic = INDEX_MAGIC.to_vec();
            with_magic.extend_from_slice(&junk);
            let _ = decode_index("k", &with_magic);

            let mut damaged = good.clone();
            let at = rng.random_range(0..damaged.len());
            damaged[at] ^= rng.random_range(1..=255u8);
            assert!(decode_index("k", &damaged).is_err());
            // Damage then a fresh trailer: structure checks must hold or
            // the decoded index must still tile the same data size.
            if let Ok(idx) = decode_index("k", &reseal(damaged)) {
                assert_eq!(idx.header.entries, 40);
            }

            let r = rows[rng.random_range(0..rows.len())];
            let mut block = data
                .slice(r.offset as usize..r.range().end as usize)
                .to_vec();
            let at = rng.random_range(0..block.len());
            block[at] ^= rng.random_range(1..=255u8);
            assert!(check_block("k", &r, &Bytes::from(block.clone())).is_err());
            // Structure-only parse of damaged bytes must not panic.
            if let Ok(it) = BlockEntries::new("k", r, Bytes::from(block)) {
                for e in it {
                    let _ = e;
                }
            }
        }
    }
}
