//! Entry logs: large append-only files that hold entries once they leave the
//! write cache. Files are `ledgers/{id:016x}.log`: a 4 KiB header block
//! (`STRELOG1` + id, zero-padded) then records, each append zero-padded to a
//! 4 KiB boundary so it can be written with `O_DIRECT`:
//!
//! ```text
//! [len: u32 LE][ledger_id: u64 LE][entry_id: u64 LE][cumulative_length: u64 LE][crc32c: u32 LE][payload]
//! ```
//!
//! `len` counts everything after itself. The CRC is the writer's entry CRC
//! (see `strata_proto::entry_crc32c`), which covers the ids and length too, so
//! a read verifies both that the bytes are intact and that the index pointed
//! at the right record.
//!
//! Invariant: the index only ever points at records that were written and
//! fsynced before the index write; a failed append truncates the file back to
//! where it was, so later records never follow partial garbage.
//!
//! In single-write mode entries are not copied here when the write cache is
//! flushed: the index points at their records in the journal files, which
//! this type then also reads, sizes and removes. Such locations carry
//! [`JOURNAL_LOG`] in their log id, with the journal file's sequence number
//! below it. Garbage collection later compacts the live entries of old
//! journal files into entry logs, sorted by ledger.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::error::{BookieError, Result};
use crate::fileio::{self, BlockWriter};

const MAGIC: &[u8; 8] = b"STRELOG1";
/// Log ids with this bit set name a journal file (see the module docs).
pub const JOURNAL_LOG: u64 = 1 << 63;

/// The log id of journal file `seq`.
pub fn journal_log_id(seq: u64) -> u64 {
    JOURNAL_LOG | seq
}

/// The journal file a log id names, if it names one.
pub fn journal_seq(log_id: u64) -> Option<u64> {
    (log_id & JOURNAL_LOG != 0).then_some(log_id & !JOURNAL_LOG)
}
/// Bytes of a record before the payload.
pub const RECORD_OVERHEAD: usize = 4 + 8 + 8 + 8 + 4;

/// Most bytes [`EntryLogs::read_span`] reads at once.
pub const MAX_SPAN: u64 = 8 << 20;
/// Largest hole between two records read in one span (a flush pads its
/// records to a block boundary; other ledgers' records may lie between).
pub const MAX_GAP: u64 = 64 << 10;

/// As [`check_record_len`] for an entry's record in a journal file.
fn check_journal_len(loc: Location) -> Result<()> {
    let min = crate::journal::RECORD_HEADER + crate::storage::JOURNAL_HEAD;
    let max = min + crate::storage::MAX_ENTRY_SIZE;
    if (loc.len as usize) < min || loc.len as usize > max {
        return Err(BookieError::corrupt(
            "entry index",
            format!("journal record length {} outside {min}..={max}", loc.len),
        ));
    }
    Ok(())
}

/// The entry of one journal record (checked against its CRC and the file's
/// mask).
fn decode_journal_record(record: &[u8], mask: u32) -> Result<StoredEntry> {
    let body = crate::journal::check_record(record, mask)?;
    Ok(crate::storage::decode_journal_add(body)?.0.entry)
}

/// The length of a record comes from the index: a damaged one must be an
/// error, not a multi-gigabyte allocation.
fn check_record_len(loc: Location) -> Result<()> {
    let max = RECORD_OVERHEAD + crate::storage::MAX_ENTRY_SIZE;
    if (loc.len as usize) < RECORD_OVERHEAD || loc.len as usize > max {
        return Err(BookieError::corrupt(
            "entry index",
            format!(
                "record length {} outside {RECORD_OVERHEAD}..={max}",
                loc.len
            ),
        ));
    }
    Ok(())
}

/// Where one entry lives on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub log_id: u64,
    pub offset: u64,
    /// Whole record length, header included.
    pub len: u32,
}

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub ledger_id: u64,
    pub entry_id: u64,
    pub cumulative_length: u64,
    pub crc32c: u32,
    pub payload: Bytes,
}

impl StoredEntry {
    pub fn verify(&self) -> Result<()> {
        self.verify_payload().map(|_| ())
    }

    /// As [`StoredEntry::verify`], and returns the CRC32C of the payload
    /// alone when it is large enough for that to be worth keeping: whoever
    /// checksums the payload next (the journal) combines it instead of
    /// reading the bytes again.
    pub fn verify_payload(&self) -> Result<Option<u32>> {
        let payload_crc = (self.payload.len() >= strata_proto::crc::COMBINE_WORTH_IT)
            .then(|| strata_proto::crc::crc32c(&self.payload));
        let crc = strata_proto::entry_crc32c_known(
            self.ledger_id,
            self.entry_id,
            self.cumulative_length,
            &self.payload,
            payload_crc,
        );
        if crc == self.crc32c {
            Ok(payload_crc)
        } else {
            Err(BookieError::Checksum {
                ledger_id: self.ledger_id,
                entry_id: self.entry_id,
                what: "stored entry does not match its CRC32C",
            })
        }
    }

    /// Bytes this entry takes in an entry log.
    pub fn record_len(&self) -> usize {
        RECORD_OVERHEAD + self.payload.len()
    }

    /// The record's bytes before its payload.
    fn header(&self) -> [u8; RECORD_OVERHEAD] {
        let mut h = [0u8; RECORD_OVERHEAD];
        let len = (RECORD_OVERHEAD - 4 + self.payload.len()) as u32;
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..12].copy_from_slice(&self.ledger_id.to_le_bytes());
        h[12..20].copy_from_slice(&self.entry_id.to_le_bytes());
        h[20..28].copy_from_slice(&self.cumulative_length.to_le_bytes());
        h[28..32].copy_from_slice(&self.crc32c.to_le_bytes());
        h
    }

    fn decode(data: &[u8]) -> Result<StoredEntry> {
        if data.len() < RECORD_OVERHEAD {
            return Err(BookieError::corrupt(
                "entry log record",
                "shorter than its header",
            ));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len + 4 != data.len() {
            return Err(BookieError::corrupt(
                "entry log record",
                format!(
                    "length field {len} does not match index length {}",
                    data.len()
                ),
            ));
        }
        Ok(StoredEntry {
            ledger_id: u64_at(4),
            entry_id: u64_at(12),
            cumulative_length: u64_at(20),
            crc32c: u32::from_le_bytes([data[28], data[29], data[30], data[31]]),
            payload: Bytes::copy_from_slice(&data[RECORD_OVERHEAD..]),
        })
    }
}

struct Active {
    id: u64,
    /// Buffered handle: header, reads, fallback writes.
    file: Arc<File>,
    /// `O_DIRECT` handle for appends, where the filesystem supports it.
    direct: Option<File>,
    /// Where the next append starts; always block-aligned.
    len: u64,
    writer: BlockWriter,
}

/// Bytes per append syscall (see [`fileio::BlockWriter`]).
const WRITE_BLOCK: usize = 256 << 10;

/// The set of entry-log files of one bookie.
pub struct EntryLogs {
    dir: PathBuf,
    journal_dir: PathBuf,
    /// Journal files read so far (opened on first read), with their
    /// records' checksum masks.
    journals: RwLock<HashMap<u64, (Arc<File>, u32)>>,
    /// Where journal files go when compaction has emptied them.
    recycler: Arc<crate::journal::Recycler>,
    size_limit: u64,
    /// Open read handles; a deleted log is removed here, readers that already
    /// hold its `Arc<File>` finish their read (unlinked files stay readable).
    readers: RwLock<HashMap<u64, Arc<File>>>,
    active: Mutex<Active>,
    /// Buffers of [`EntryLogs::read_span`], kept for the next read: a fresh
    /// 8 MiB buffer per read came from new pages each time (the allocator
    /// hands such a buffer back to the kernel when it is freed), and
    /// faulting them in cost more than the read itself.
    span_bufs: Mutex<Vec<Vec<u8>>>,
}

/// Span buffers kept for reuse at most (the parallel reads of a few
/// catch-up readers).
const KEPT_SPAN_BUFS: usize = 4;

impl EntryLogs {
    pub fn open(
        dir: &Path,
        journal_dir: &Path,
        size_limit: u64,
        recycler: Arc<crate::journal::Recycler>,
    ) -> Result<EntryLogs> {
        fs::create_dir_all(dir).map_err(|e| BookieError::io("create entry log dir", e))?;
        let mut readers = HashMap::new();
        let mut max_id = 0;
        for (id, path) in list(dir)? {
            let file = File::open(&path).map_err(|e| BookieError::io("open entry log", e))?;
            readers.insert(id, Arc::new(file));
            max_id = max_id.max(id);
        }
        // Always write to a fresh log: an older one may end in garbage from a
        // crash mid-flush that no index entry refers to.
        let active = create(dir, max_id + 1)?;
        readers.insert(active.id, active.file.clone());
        Ok(EntryLogs {
            dir: dir.to_path_buf(),
            journal_dir: journal_dir.to_path_buf(),
            journals: RwLock::new(HashMap::new()),
            recycler,
            size_limit,
            readers: RwLock::new(readers),
            active: Mutex::new(active),
            span_bufs: Mutex::new(Vec::new()),
        })
    }

    /// Id of the log new entries go to; it is never compacted.
    pub fn active_id(&self) -> u64 {
        self.active.lock().id
    }

    /// Ids of every log on disk.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.readers.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Appends `entries` to the active log and fsyncs; returns each entry's
    /// location, in order. Blocking.
    pub fn append(&self, entries: &[&StoredEntry]) -> Result<Vec<Location>> {
        let mut active = self.active.lock();
        if active.len >= self.size_limit {
            let next = create(&self.dir, active.id + 1)?;
            self.readers.write().insert(next.id, next.file.clone());
            *active = next;
        }
        let start = active.len;
        match Self::write_records(&mut active, entries) {
            Ok(locations) => Ok(locations),
            Err(e) => {
                // Cut whatever part reached the file so nothing follows garbage.
                let _ = active.file.set_len(start);
                active.len = start;
                Err(BookieError::io("write entry log", e))
            }
        }
    }

    /// Streams the records through the block writer (direct I/O where
    /// possible) and syncs; the appended region ends block-aligned.
    fn write_records(
        active: &mut Active,
        entries: &[&StoredEntry],
    ) -> std::io::Result<Vec<Location>> {
        let Active {
            id,
            file,
            direct,
            len,
            writer,
        } = active;
        let target: &File = direct.as_ref().unwrap_or(file);
        writer.reset(*len);
        let mut locations = Vec::with_capacity(entries.len());
        for e in entries {
            locations.push(Location {
                log_id: *id,
                offset: writer.position(),
                len: e.record_len() as u32,
            });
            writer.push(target, &e.header())?;
            writer.push(target, &e.payload)?;
        }
        let end = writer.finish(target)?;
        target.sync_data()?;
        *len = end;
        Ok(locations)
    }

    /// Reads and decodes one record. Blocking.
    pub fn read(&self, loc: Location) -> Result<StoredEntry> {
        if let Some(seq) = journal_seq(loc.log_id) {
            return self.read_journal(seq, loc);
        }
        let file = self.reader(loc.log_id)?;
        check_record_len(loc)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| BookieError::io("read entry log", e))?;
        StoredEntry::decode(&buf)
    }

    /// Reads records that lie close together in one entry log or journal
    /// file, in offset order, with a single read of the span from
    /// the first to the last; see [`EntryLogs::span_len`]. Blocking.
    ///
    /// A catch-up reader asks for thousands of consecutive entries, which a
    /// flush wrote back to back. One read each kept the disk at a fifth of
    /// its bandwidth (one request in flight, each waiting its turn); one
    /// read per span of up to [`MAX_SPAN`] lets the device stream.
    pub fn read_span(&self, locs: &[Location]) -> Result<Vec<StoredEntry>> {
        let (Some(first), Some(last)) = (locs.first(), locs.last()) else {
            return Ok(Vec::new());
        };
        // The locations come from the index on disk: records out of order,
        // overlapping or far apart are a damaged index, not a read to try.
        if locs
            .windows(2)
            .any(|w| EntryLogs::span_len(*first, w[0], w[1]).is_none_or(|len| len > MAX_SPAN))
        {
            return Err(BookieError::corrupt(
                "entry index",
                format!("locations in log {} do not form one span", first.log_id),
            ));
        }
        let journal = match journal_seq(first.log_id) {
            Some(seq) => Some(self.journal_file(seq)?),
            None => None,
        };
        for l in locs {
            match journal {
                Some(_) => check_journal_len(*l)?,
                None => check_record_len(*l)?,
            }
        }
        let file = match &journal {
            Some((file, _)) => file.clone(),
            None => self.reader(first.log_id)?,
        };
        let len = (last.offset + u64::from(last.len)).saturating_sub(first.offset) as usize;
        let mut buf = self.span_bufs.lock().pop().unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let span = &mut buf[..len];
        let read = file
            .read_exact_at(span, first.offset)
            .map_err(|e| BookieError::io("read entry log", e))
            .and_then(|()| {
                locs.iter()
                    .map(|l| {
                        let at = (l.offset - first.offset) as usize;
                        let record = &span[at..at + l.len as usize];
                        match journal {
                            Some((_, mask)) => decode_journal_record(record, mask),
                            None => StoredEntry::decode(record),
                        }
                    })
                    .collect()
            });
        let mut kept = self.span_bufs.lock();
        if kept.len() < KEPT_SPAN_BUFS {
            kept.push(buf);
        }
        read
    }

    /// Bytes one read of `next` after `prev` would span, when both are in
    /// the same entry log (or journal file), in order and close enough (at
    /// most [`MAX_GAP`] apart) to be read together from the span's start at
    /// `start`.
    pub fn span_len(start: Location, prev: Location, next: Location) -> Option<u64> {
        let prev_end = prev.offset + u64::from(prev.len);
        (next.log_id == prev.log_id && next.offset >= prev_end && next.offset - prev_end <= MAX_GAP)
            .then(|| next.offset + u64::from(next.len) - start.offset)
    }

    fn reader(&self, log_id: u64) -> Result<Arc<File>> {
        self.readers
            .read()
            .get(&log_id)
            .cloned()
            .ok_or_else(|| BookieError::corrupt("index", format!("entry log {log_id} is gone")))
    }

    /// Reads an entry the index places in journal file `seq`.
    fn read_journal(&self, seq: u64, loc: Location) -> Result<StoredEntry> {
        let (file, mask) = self.journal_file(seq)?;
        check_journal_len(loc)?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| BookieError::io("read journal file", e))?;
        decode_journal_record(&buf, mask)
    }

    fn journal_file(&self, seq: u64) -> Result<(Arc<File>, u32)> {
        if let Some(f) = self.journals.read().get(&seq) {
            return Ok(f.clone());
        }
        let path = self.journal_dir.join(crate::journal::file_name(seq));
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            // Compaction may just have moved its entries and removed it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BookieError::corrupt(
                    "index",
                    format!("journal file {seq} is gone"),
                ));
            }
            Err(e) => return Err(BookieError::io("open journal file", e)),
        };
        let mut header = [0u8; crate::journal::HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| BookieError::io("read journal header", e))?;
        let Some(mask) = crate::journal::header_mask(&header, seq) else {
            return Err(BookieError::corrupt(
                "journal file",
                format!("file {seq} does not start with its own header"),
            ));
        };
        Ok(self
            .journals
            .write()
            .entry(seq)
            .or_insert((file, mask))
            .clone())
    }

    /// Drops the read handle of journal file `seq` (released elsewhere).
    pub fn forget_journal(&self, seq: u64) {
        self.journals.write().remove(&seq);
    }

    /// Deletes a log file (after compaction moved its live entries); a
    /// journal file is released for reuse. Blocking.
    pub fn remove(&self, log_id: u64) -> Result<u64> {
        if let Some(seq) = journal_seq(log_id) {
            self.forget_journal(seq);
            return self.recycler.release(seq);
        }
        if log_id == self.active_id() {
            return Err(BookieError::Invalid(
                "cannot remove the active entry log".into(),
            ));
        }
        self.readers.write().remove(&log_id);
        self.recycler.delete(&self.dir.join(name(log_id)))
    }

    /// Size on disk of a log file.
    pub fn size(&self, log_id: u64) -> u64 {
        let path = match journal_seq(log_id) {
            Some(seq) => self.journal_dir.join(crate::journal::file_name(seq)),
            None => self.dir.join(name(log_id)),
        };
        fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

fn name(id: u64) -> String {
    format!("{id:016x}.log")
}

fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| BookieError::io("list entry logs", e))? {
        let entry = entry.map_err(|e| BookieError::io("list entry logs", e))?;
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if let Some(id) = n
            .strip_suffix(".log")
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        {
            out.push((id, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn create(dir: &Path, id: u64) -> Result<Active> {
    let path = dir.join(name(id));
    let file = fileio::create_empty(&path).map_err(|e| BookieError::io("create entry log", e))?;
    // The header fills the first block, so records start block-aligned.
    let mut header = [0u8; fileio::DIRECT_ALIGN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&id.to_le_bytes());
    file.write_all_at(&header, 0)
        .and_then(|_| file.sync_all())
        .map_err(|e| BookieError::io("write entry log header", e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    // Filesystems without O_DIRECT (tmpfs on older kernels) get buffered
    // appends with early writeback instead.
    let direct = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .ok()
    };
    let buffered = direct.is_none();
    Ok(Active {
        id,
        file: Arc::new(file),
        direct,
        len: fileio::DIRECT_ALIGN as u64,
        writer: BlockWriter::new(WRITE_BLOCK, buffered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_reuse(dir: &Path) -> Arc<crate::journal::Recycler> {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        Arc::new(crate::journal::Recycler::new(dir, 0, metrics))
    }

    fn entry(l: u64, e: u64, payload: &[u8]) -> StoredEntry {
        StoredEntry {
            ledger_id: l,
            entry_id: e,
            cumulative_length: payload.len() as u64,
            crc32c: strata_proto::entry_crc32c(l, e, payload.len() as u64, payload),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn append_read_rotate_remove() {
        let dir = tempfile::tempdir().unwrap();
        let logs = EntryLogs::open(dir.path(), dir.path(), 200, no_reuse(dir.path())).unwrap();
        let a = entry(1, 0, &[1; 190]);
        let b = entry(1, 1, b"second");
        let la = logs.append(&[&a]).unwrap();
        let lb = logs.append(&[&b]).unwrap();
        assert_ne!(la[0].log_id, lb[0].log_id, "rotated past the size limit");
        assert_eq!(logs.read(la[0]).unwrap(), a);
        assert_eq!(logs.read(lb[0]).unwrap(), b);
        logs.read(lb[0]).unwrap().verify().unwrap();
        assert!(logs.remove(logs.active_id()).is_err());
        logs.remove(la[0].log_id).unwrap();
        assert!(logs.read(la[0]).is_err());
        drop(logs);
        let logs = EntryLogs::open(dir.path(), dir.path(), 200, no_reuse(dir.path())).unwrap();
        assert_eq!(logs.read(lb[0]).unwrap(), b);
        assert!(logs.active_id() > lb[0].log_id);
    }

    #[test]
    fn corrupt_record_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let logs = EntryLogs::open(dir.path(), dir.path(), 1 << 20, no_reuse(dir.path())).unwrap();
        let a = entry(7, 3, b"payload-bytes");
        let loc = logs.append(&[&a]).unwrap()[0];
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(name(loc.log_id)))
            .unwrap();
        f.write_all_at(b"X", loc.offset + loc.len as u64 - 1)
            .unwrap();
        let got = logs.read(loc).unwrap();
        assert!(matches!(got.verify(), Err(BookieError::Checksum { .. })));
        let bad_len = Location {
            len: loc.len - 1,
            ..loc
        };
        assert!(logs.read(bad_len).is_err());
        let huge = Location {
            len: u32::MAX,
            ..loc
        };
        assert!(matches!(logs.read(huge), Err(BookieError::Corrupt { .. })));
    }
}
