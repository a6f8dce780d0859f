//! The journal: every add is made durable here before it is acknowledged.
//!
//! Files are `journal/{seq:020}.jnl`, each starting with a 16-byte header
//! (`STRJRNL2` + seq) followed by records:
//!
//! ```text
//! [len: u32 LE][crc32c(body) ^ crc_mask(seq): u32 LE][body: len bytes]
//! ```
//!
//! The checksum is masked with the file's sequence number ([`crc_mask`]) so
//! that a record is valid only in the file it was written to: journal files
//! are reused ([`Recycler`]), and what a reused file held before must never
//! replay as new. Files written before reuse (`STRJRNL1`) have unmasked
//! checksums and are still read. Files are preallocated with `fallocate` so
//! that `fdatasync` does not have to persist a size change per batch; the
//! preallocated tail reads as zeros, and a zero length marks the end.
//!
//! Batches are written with `O_DIRECT` where the filesystem allows it: the
//! bytes go from the batch buffer to the device without being copied into
//! the page cache (on the development VM, 1 MiB writes with a sync each ran
//! ~45% faster that way). Direct writes need aligned offsets and lengths, so
//! each batch ends with a *padding record* up to the next 4 KiB boundary
//! (length field [`PAD_FLAG`] | n, checksum field [`PAD_CRC`], n zero bytes;
//! replay checks and skips it), and a file's first records start at 4 KiB,
//! after the header and a padding record.
//!
//! Positions and invariants:
//! - `written`: the position just past the last record handed to `write`;
//!   records below it may still be only in the page cache.
//! - `synced`: the position just past the last record made durable by
//!   `fdatasync`. A request's completion is sent only once `synced` covers
//!   its record, so an acknowledged add is always on disk.
//! - A checkpoint `(seq, offset)` (kept by the ledger storage) means every
//!   record before it is indexed, either copied into an entry log or (in the
//!   default single-write mode) pointed at where it lies in its journal
//!   file; replay starts there. Files wholly before it that no index entry
//!   refers to may be deleted ([`Journal::trim`]); the others are entry
//!   storage and are reclaimed by the storage's garbage collection.
//! - A record's [`Placement`] is resolved (with its start position, or as
//!   failed) before `written` moves past it, so whoever reads `written` and
//!   then a placement sees every record below that position placed.
//! - Replay stops at the first record whose length is impossible or whose CRC
//!   does not match: a torn write from a crash, corruption or, in a reused
//!   file, its older contents. An `STRJRNL1` file is truncated there, so the
//!   bad bytes are never read again; a reused-format file is left as it is
//!   (its tail is expected to fail, and its blocks are worth keeping). New
//!   records always go to a new file, never after a stop.
//!
//! Group commit, pipelined over three threads:
//! - the writer takes queued records, waiting for more until ~`group_bytes`
//!   are pending or `max_group_wait` has passed since the first one (or, with
//!   `flush_when_queue_empty`, until the queue is empty), lays them out in a
//!   batch buffer at their place in the file, and hands the batch over;
//! - the write thread writes each batch with one `pwrite` and hands it to the
//!   syncer;
//! - the syncer takes every batch written so far, makes them durable with one
//!   `fdatasync` per file, and completes them all.
//!
//! So the next batch is copied into its buffer while the previous one is
//! being written (two buffers take turns), and that one is written while the
//! one before it is being synced; under load each fsync covers everything
//! written during the previous one. With 64 KiB entries at disk speed,
//! copying a batch took ~20 % of the time its write did, the disk idle
//! meanwhile, when the writer did both. A failed write or fsync fails every
//! batch written to that file (their bytes are in an unknown state) and the
//! writer moves to a new file; later records never follow records that were
//! not made durable.
//!
//! Below that load the pipeline only costs hand-offs: each thread that a
//! batch passes through is one more wake-up, several microseconds of CPU on
//! a small VM and a wait for a core when the machine is busy. So the stages
//! fold together when nothing is in flight: a batch smaller than
//! `group_bytes`, laid out when no earlier batch is still being written or
//! synced, is written, synced and completed by the writer itself; and the
//! write thread, when it syncs a batch itself (nothing queued behind it, no
//! fsync owed) and nothing earlier is left to complete, completes it too.
//! A batch of `group_bytes` or more means the load has caught up with the
//! disk, and goes through the pipeline.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::error::{BookieError, Result};
use crate::fileio;
use crate::metrics::Metrics;

mod recycle;
mod replay;
mod slow;
pub use recycle::{REUSE_GRACE, Recycler};
pub use replay::{ReplayEnd, ReplayedFile, replay_bytes};
pub use slow::SLOW_THRESHOLD;
use slow::SlowIo;

/// First bytes of every journal file written now (public, as the file format
/// is, for the fuzz targets and tools that build journal files): records'
/// checksums are masked with [`crc_mask`].
pub const MAGIC: &[u8; 8] = b"STRJRNL2";
/// First bytes of journal files written before files were reused: their
/// records' checksums are not masked.
pub const MAGIC_V1: &[u8; 8] = b"STRJRNL1";
/// File header: [`MAGIC`] then the file's sequence number (u64 LE).
pub const HEADER_LEN: u64 = 16;
/// Record header: body length (u32 LE) then the body's CRC32C (u32 LE).
pub const RECORD_HEADER: usize = 8;
/// A group commit never writes more than this in one go.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// A batch buffer's capacity: a batch overshoots `MAX_BATCH_BYTES` by at most
/// its last request, and padding.
const BATCH_BUF_BYTES: usize = MAX_BATCH_BYTES + (1 << 20);
/// No record is larger than this; a longer length field means corruption.
pub const MAX_RECORD_LEN: usize = 64 << 20;
/// Set in the length field of a padding record (see the module docs).
pub const PAD_FLAG: u32 = 1 << 31;
/// The checksum field of a padding record.
pub const PAD_CRC: u32 = 0x5041_4444;
/// Longest padding-record body.
pub const MAX_PAD: usize = fileio::DIRECT_ALIGN + RECORD_HEADER;

/// What the checksums of records in file `seq` are XORed with (`STRJRNL2`
/// files). Distinct for any two sequence numbers less than 2^32 apart (an odd
/// multiplier is a bijection of `u32`), and never 0 for a real file, so a
/// record read in any file but its own fails its check.
pub fn crc_mask(seq: u64) -> u32 {
    (seq as u32).wrapping_mul(0x9E37_79B1)
}

/// The checksum mask of file `seq` given its first [`HEADER_LEN`] bytes, or
/// None when they are not a header of file `seq` (no magic, or another
/// file's sequence number: a reused file whose new header never reached the
/// disk).
pub fn header_mask(header: &[u8], seq: u64) -> Option<u32> {
    let header = header.get(..HEADER_LEN as usize)?;
    let (magic, rest) = header.split_at(MAGIC.len());
    if rest != seq.to_le_bytes() {
        return None;
    }
    match magic {
        m if m == MAGIC => Some(crc_mask(seq)),
        m if m == MAGIC_V1 => Some(0),
        _ => None,
    }
}

/// Appends a padding record so that `buf` ends on a 4 KiB boundary; `mask`
/// is the file's [`crc_mask`].
fn pad_to_alignment(buf: &mut fileio::AlignedBuf, mask: u32) {
    let align = fileio::DIRECT_ALIGN;
    let mut gap = (align - buf.len() % align) % align;
    if gap == 0 {
        return;
    }
    if gap < RECORD_HEADER {
        gap += align;
    }
    let n = gap - RECORD_HEADER;
    buf.extend_from_slice(&(PAD_FLAG | n as u32).to_le_bytes());
    buf.extend_from_slice(&(PAD_CRC ^ mask).to_le_bytes());
    buf.extend_zeros(n);
}

/// A position in the journal: file sequence and byte offset within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct JournalPos {
    pub seq: u64,
    pub offset: u64,
}

#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub group_bytes: usize,
    pub max_group_wait: Duration,
    pub flush_when_queue_empty: bool,
    pub preallocate: u64,
    pub max_file_size: u64,
    pub queue_capacity: usize,
    /// Where files no longer needed go, and new files come from.
    pub recycler: Arc<Recycler>,
    /// Writes and fdatasyncs taking at least this long are counted and
    /// reported (zero: not tracked).
    pub slow_threshold: Duration,
}

/// Where a record landed: set once by the writer thread, to the position of
/// the record's first byte (its length field) when it is durable, or to
/// `Err(())` when its write failed or the journal stopped first.
pub type Placement = Arc<OnceLock<std::result::Result<JournalPos, ()>>>;

/// One or more framed records, built by the caller: record `i` is
/// `heads[i-1 end..head_end]` (`[len][crc][head]`) followed by `tail`, so
/// every payload is copied once (into the write buffer) and the CRCs are
/// computed on the caller's thread, not the journal's. A request's records
/// are written back to back in one batch, and complete together.
struct Request {
    heads: Vec<u8>,
    records: Vec<RecordParts>,
    done: oneshot::Sender<Result<JournalPos>>,
    queued: Instant,
}

struct RecordParts {
    /// End of this record's framed head in [`Request::heads`].
    head_end: usize,
    tail: Bytes,
    placement: Option<Placement>,
}

impl Request {
    fn fail(self, e: BookieError) {
        for r in &self.records {
            if let Some(p) = &r.placement {
                let _ = p.set(Err(()));
            }
        }
        let _ = self.done.send(Err(e));
    }
}

/// One record of [`Journal::append_many`]: its body is `head || tail`.
pub struct RecordIn<'a> {
    pub head: &'a [u8],
    pub tail: Bytes,
    /// `crc32c(tail)`, when the caller has it: the record's checksum is then
    /// combined from it rather than read from the tail again. It must be
    /// right; a wrong one makes the record unreadable at replay.
    pub tail_crc: Option<u32>,
    pub placement: Option<Placement>,
}

/// A request in the batch being written, with where its records start.
struct Pending {
    done: oneshot::Sender<Result<JournalPos>>,
    /// Each record's placement and start offset.
    placements: Vec<(Placement, u64)>,
    end: u64,
}

/// Handle to the journal writer thread.
pub struct Journal {
    tx: flume::Sender<Request>,
    /// Position up to which records are written (see module docs).
    written: Arc<PositionCell>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
    recycler: Arc<Recycler>,
}

/// A [`JournalPos`] readable without a lock.
#[derive(Default)]
pub struct PositionCell {
    seq: AtomicU64,
    offset: AtomicU64,
    lock: parking_lot::Mutex<()>,
}

impl PositionCell {
    fn set(&self, pos: JournalPos) {
        let _g = self.lock.lock();
        self.seq.store(pos.seq, Ordering::Release);
        self.offset.store(pos.offset, Ordering::Release);
    }
    pub fn get(&self) -> JournalPos {
        let _g = self.lock.lock();
        JournalPos {
            seq: self.seq.load(Ordering::Acquire),
            offset: self.offset.load(Ordering::Acquire),
        }
    }
}

/// Checks one record read back from a journal file (`[len][crc][body]`, the
/// buffer exactly as long as the record, `mask` the file's from
/// [`header_mask`]) and returns its body.
pub fn check_record(buf: &[u8], mask: u32) -> Result<&[u8]> {
    let corrupt = |why: String| Err(BookieError::corrupt("journal record", why));
    if buf.len() < RECORD_HEADER + 1 {
        return corrupt(format!("{} bytes is shorter than a record", buf.len()));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = &buf[RECORD_HEADER..];
    if len != body.len() {
        return corrupt(format!(
            "length field {len} does not match the indexed length {}",
            body.len()
        ));
    }
    if strata_proto::crc::crc32c(body) ^ mask != crc {
        return corrupt("CRC32C mismatch".into());
    }
    Ok(body)
}

/// One record found by replay, with the position just past it.
pub struct ReplayedRecord {
    pub body: Vec<u8>,
    pub end: JournalPos,
}

impl Journal {
    /// Replays every record from `checkpoint` on (calling `apply` for each in
    /// order), cutting torn tails, then starts a writer on a fresh file.
    pub fn open(
        config: JournalConfig,
        checkpoint: JournalPos,
        metrics: Arc<Metrics>,
        mut apply: impl FnMut(ReplayedRecord) -> Result<()>,
    ) -> Result<Journal> {
        fs::create_dir_all(&config.dir).map_err(|e| BookieError::io("create journal dir", e))?;
        config.recycler.scan()?;
        let files = list_files(&config.dir)?;
        let mut next_seq = checkpoint.seq.max(1);
        let mut replayed = 0u64;
        for (seq, path) in &files {
            next_seq = next_seq.max(seq + 1);
            if *seq < checkpoint.seq {
                continue;
            }
            let start = if *seq == checkpoint.seq {
                checkpoint.offset.max(HEADER_LEN)
            } else {
                HEADER_LEN
            };
            replayed += replay_file(*seq, path, start, &mut apply)?;
        }
        info!(
            files = files.len(),
            records = replayed,
            ?checkpoint,
            "journal replayed"
        );

        let (tx, rx) = flume::bounded(config.queue_capacity);
        let written = Arc::new(PositionCell::default());
        let mut writer = Writer::create(config.clone(), next_seq, metrics)?;
        written.set(writer.pos());
        let thread = {
            let written = written.clone();
            std::thread::Builder::new()
                .name("journal".into())
                .spawn(move || writer.run(rx, &written))
                .map_err(|e| BookieError::io("spawn journal thread", e))?
        };
        Ok(Journal {
            tx,
            written,
            thread: parking_lot::Mutex::new(Some(thread)),
            dir: config.dir,
            recycler: config.recycler,
        })
    }

    /// Appends a record; resolves once it is durable.
    pub async fn append(&self, body: Vec<u8>) -> Result<JournalPos> {
        self.append_parts(&body, Bytes::new()).await
    }

    /// Appends the record `head || tail`; resolves once it is durable.
    pub async fn append_parts(&self, head: &[u8], tail: Bytes) -> Result<JournalPos> {
        self.append_placed(head, tail, None).await
    }

    /// As [`Journal::append_parts`], and resolves `placement` (see
    /// [`Placement`]) before the journal's written position passes the record.
    pub async fn append_placed(
        &self,
        head: &[u8],
        tail: Bytes,
        placement: Option<Placement>,
    ) -> Result<JournalPos> {
        self.append_many(vec![RecordIn {
            head,
            tail,
            tail_crc: None,
            placement,
        }])
        .await
    }

    /// Appends records that are written back to back in one batch and made
    /// durable together; resolves to the position just past the last one
    /// once all are durable. Each placement is resolved as in
    /// [`Journal::append_placed`]. A record of a bad length fails them all.
    ///
    /// The records are framed before this returns; the future owns nothing
    /// borrowed from them.
    pub fn append_many(
        &self,
        records: Vec<RecordIn<'_>>,
    ) -> impl Future<Output = Result<JournalPos>> + Send + 'static + use<> {
        let mut heads = Vec::with_capacity(records.len() * (RECORD_HEADER + 48));
        let mut parts = Vec::with_capacity(records.len());
        let mut bad = None;
        for r in records {
            let len = r.head.len() + r.tail.len();
            if len == 0 || len > MAX_RECORD_LEN {
                bad.get_or_insert(len);
            }
            let crc =
                strata_proto::crc::append(strata_proto::crc::crc32c(r.head), &r.tail, r.tail_crc);
            heads.extend_from_slice(&(len as u32).to_le_bytes());
            heads.extend_from_slice(&crc.to_le_bytes());
            heads.extend_from_slice(r.head);
            parts.push(RecordParts {
                head_end: heads.len(),
                tail: r.tail,
                placement: r.placement,
            });
        }
        let (done, rx) = oneshot::channel();
        let request = Request {
            heads,
            records: parts,
            done,
            queued: Instant::now(),
        };
        let refused = match bad {
            Some(len) => Some(format!(
                "journal record of {len} bytes (must be 1..={MAX_RECORD_LEN})"
            )),
            None if request.records.is_empty() => Some("no journal record to append".into()),
            None => None,
        };
        let tx = self.tx.clone();
        async move {
            if let Some(why) = refused {
                request.fail(BookieError::Invalid(why.clone()));
                return Err(BookieError::Invalid(why));
            }
            tx.send_async(request).await.map_err(|e| {
                e.into_inner().fail(BookieError::ShuttingDown);
                BookieError::ShuttingDown
            })?;
            rx.await.map_err(|_| BookieError::ShuttingDown)?
        }
    }

    /// Position just past the last record written (not necessarily synced).
    pub fn written(&self) -> JournalPos {
        self.written.get()
    }

    /// Sequence numbers of the journal files on disk, ascending.
    pub fn files(&self) -> Result<Vec<u64>> {
        Ok(list_files(&self.dir)?.into_iter().map(|(s, _)| s).collect())
    }

    /// Releases the journal files wholly before `checkpoint` for which `keep`
    /// says no (files the index still points into must be kept): they are
    /// pooled for reuse or deleted ([`Recycler::release`]).
    /// Returns the released sequence numbers.
    pub fn trim(&self, checkpoint: JournalPos, keep: impl Fn(u64) -> bool) -> Result<Vec<u64>> {
        let mut released = Vec::new();
        for (seq, _) in list_files(&self.dir)? {
            if seq < checkpoint.seq && !keep(seq) {
                self.recycler.release(seq)?;
                released.push(seq);
            }
        }
        Ok(released)
    }

    /// Stops the writer after it has completed everything queued.
    pub fn shutdown(&self) {
        // Dropping our sender is not enough (clones may live in tasks), so
        // close through a sentinel: the writer exits when the channel is
        // disconnected or when it sees an empty body.
        let (done, _rx) = oneshot::channel();
        let _ = self.tx.send(Request {
            heads: Vec::new(),
            records: Vec::new(),
            done,
            queued: Instant::now(),
        });
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| BookieError::io("list journal dir", e))? {
        let entry = entry.map_err(|e| BookieError::io("list journal dir", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(".jnl")
            .and_then(|s| s.parse::<u64>().ok())
        {
            files.push((seq, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Name of journal file `seq` in the journal directory.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}.jnl")
}

/// Replays one file from `start`; returns how many records it applied.
fn replay_file(
    seq: u64,
    path: &Path,
    start: u64,
    apply: &mut impl FnMut(ReplayedRecord) -> Result<()>,
) -> Result<u64> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| BookieError::io("open journal file", e))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| BookieError::io("read journal file", e))?;
    let replayed = replay_bytes(seq, &data, start, apply)?;
    match replayed.end {
        ReplayEnd::Clean => {}
        ReplayEnd::NoHeader => {
            warn!(path = %path.display(), "journal file without a valid header, ignoring it");
        }
        ReplayEnd::Torn { offset, reason } => {
            warn!(
                path = %path.display(),
                offset,
                reason,
                "journal tail is torn or corrupt; cutting it at the last good record"
            );
            file.set_len(offset)
                .and_then(|_| file.sync_all())
                .map_err(|e| BookieError::io("truncate journal tail", e))?;
        }
        ReplayEnd::Ended { offset, reason } => {
            info!(
                path = %path.display(),
                offset,
                reason,
                "journal file's records end (a torn write, or older contents of a reused file)"
            );
        }
    }
    Ok(replayed.records)
}

impl Pending {
    fn fail(self, e: BookieError) {
        for (p, _) in &self.placements {
            let _ = p.set(Err(()));
        }
        let _ = self.done.send(Err(e));
    }
}

/// A written batch waiting for its fsync.
struct SyncJob {
    file: Arc<File>,
    seq: u64,
    /// File offset just past the batch.
    end: u64,
    batch: Vec<Pending>,
    /// Set when the write thread already made the batch durable (or failed
    /// to), with the error's text.
    synced: Option<std::result::Result<(), String>>,
}

/// What the writer waits for while its batch waits for a buffer.
enum Arrival {
    Buffer(std::result::Result<fileio::AlignedBuf, flume::RecvError>),
    Request(std::result::Result<Request, flume::RecvError>),
}

/// A laid-out batch on its way to the disk (see [`write_loop`]).
struct WriteJob {
    buf: fileio::AlignedBuf,
    file: Arc<File>,
    /// The file's `O_DIRECT` handle, if the batch goes through it.
    direct: Option<Arc<File>>,
    seq: u64,
    /// Where the batch goes in the file.
    at: u64,
    batch: Vec<Pending>,
}

/// A journal file ready for records.
struct Prepared {
    file: File,
    /// Its records' checksum mask ([`crc_mask`]).
    mask: u32,
    /// `O_DIRECT` handle for batch writes, where the filesystem allows it.
    direct: Option<File>,
    allocated: u64,
    /// Where the first record goes.
    start: u64,
}

struct Writer {
    config: JournalConfig,
    seq: u64,
    /// Buffered handle: allocation, size and fdatasync.
    file: Arc<File>,
    direct: Option<Arc<File>>,
    /// The current file's checksum mask.
    mask: u32,
    offset: u64,
    allocated: u64,
    buf: fileio::AlignedBuf,
    metrics: Arc<Metrics>,
    /// The next file, being prepared in the background.
    spare: Option<std::sync::mpsc::Receiver<Result<Prepared>>>,
}

/// Makes journal file `seq` from a pooled file, or creates it: header,
/// preallocated space, and its name made durable in the directory. A file
/// prepared ahead and never used holds no records of its own, which replay
/// reads as an empty file.
fn prepare_file(config: &JournalConfig, seq: u64) -> Result<Prepared> {
    let path = config.dir.join(file_name(seq));
    let reused = config.recycler.take(&path);
    let file = OpenOptions::new()
        .create_new(reused.is_none())
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| BookieError::io("create journal file", e))?;
    let direct = fileio::open_direct(&path);
    let mask = crc_mask(seq);
    let mut header = fileio::AlignedBuf::with_capacity(fileio::DIRECT_ALIGN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&seq.to_le_bytes());
    if direct.is_some() {
        // Records start block-aligned, after a padding record.
        pad_to_alignment(&mut header, mask);
    }
    let start = header.len() as u64;
    // A reused file's blocks are already allocated: allocating over them
    // changes nothing, and the writer allocates more past them as it goes.
    // No further than the size at which the file rolls (see
    // `Writer::ensure_allocated`).
    let allocated = (start + config.preallocate.max(1 << 20))
        .min(
            config
                .max_file_size
                .max(start + fileio::DIRECT_ALIGN as u64),
        )
        .max(reused.unwrap_or(0));
    file.write_all_at(header.as_slice(), 0)
        .map_err(|e| BookieError::io("write journal header", e))?;
    fileio::fallocate(&file, start, allocated - start)
        .map_err(|e| BookieError::io("preallocate journal file", e))?;
    file.sync_all()
        .map_err(|e| BookieError::io("sync journal file", e))?;
    if let Ok(d) = File::open(&config.dir) {
        let _ = d.sync_all();
    }
    Ok(Prepared {
        file,
        mask,
        direct,
        allocated,
        start,
    })
}

impl Writer {
    fn create(config: JournalConfig, seq: u64, metrics: Arc<Metrics>) -> Result<Writer> {
        let prepared = prepare_file(&config, seq)?;
        let mut w = Writer {
            allocated: prepared.allocated,
            config,
            seq,
            file: Arc::new(prepared.file),
            direct: prepared.direct.map(Arc::new),
            mask: prepared.mask,
            offset: prepared.start,
            buf: fileio::AlignedBuf::with_capacity(BATCH_BUF_BYTES),
            metrics,
            spare: None,
        };
        w.start_spare();
        Ok(w)
    }

    /// Prepares the next file in the background, so that rolling over does
    /// not stall adds on file creation, allocation and directory syncs.
    fn start_spare(&mut self) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (config, seq) = (self.config.clone(), self.seq + 1);
        let spawned = std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || {
                let _ = tx.send(prepare_file(&config, seq));
            });
        self.spare = spawned.ok().map(|_| rx);
    }

    fn pos(&self) -> JournalPos {
        JournalPos {
            seq: self.seq,
            offset: self.offset,
        }
    }

    /// Makes sure `extra` more bytes fit in the preallocated region.
    fn ensure_allocated(&mut self, extra: u64) -> Result<()> {
        let need = self.offset + extra;
        if need <= self.allocated && self.allocated > HEADER_LEN {
            return Ok(());
        }
        let chunk = self.config.preallocate.max(extra).max(1 << 20);
        // Never past the size at which the file rolls, but always enough
        // for this batch: so a file that rolls has no allocated tail to give
        // back (see `roll`).
        let new_len = (need + chunk).min(self.config.max_file_size).max(need);
        fileio::fallocate(&self.file, self.allocated, new_len - self.allocated)
            .map_err(|e| BookieError::io("preallocate journal file", e))?;
        // No fsync here: the next fdatasync persists the new size and
        // allocation along with the data (it must, to make the data
        // readable), and an extra sync on the add path cost ~10 ms stalls.
        self.allocated = new_len;
        Ok(())
    }

    fn roll(&mut self) -> Result<()> {
        let seq = self.seq + 1;
        let prepared = match self.spare.take().map(|rx| rx.recv()) {
            Some(Ok(Ok(ready))) => ready,
            Some(Ok(Err(e))) => {
                warn!(error = %e, "preparing the next journal file failed; retrying now");
                prepare_file(&self.config, seq)?
            }
            // No spare thread, or it died: create the file here.
            _ => prepare_file(&self.config, seq)?,
        };
        // A file that reached its size was allocated no further than its
        // last batch (see `ensure_allocated`; a reused file keeps its older
        // blocks for its next use). One left early, after a failed write,
        // gives back what was allocated but not used. Not on every roll:
        // the truncation first waits for the last batch's direct write to
        // the file to complete, and adds waited ~2 ms (up to 12) for it at
        // 1 GB/s.
        if self.offset < self.config.max_file_size {
            let _ = self.file.set_len(self.offset);
        }
        self.file = Arc::new(prepared.file);
        self.direct = prepared.direct.map(Arc::new);
        self.mask = prepared.mask;
        self.allocated = prepared.allocated;
        self.seq = seq;
        self.offset = prepared.start;
        self.start_spare();
        Ok(())
    }

    fn run(&mut self, rx: flume::Receiver<Request>, written: &Arc<PositionCell>) {
        // A few written batches may wait for the syncer; past that the
        // writer blocks, and requests pile up into the next, larger batch.
        let (jobs_tx, jobs_rx) = flume::bounded::<SyncJob>(4);
        // 1 + the sequence number of a file whose fsync failed (0: none).
        let poisoned = Arc::new(AtomicU64::new(0));
        let unsynced = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(InFlight::default());
        let idle_rx = in_flight.idle.1.clone();
        let syncer = {
            let syncer = Syncer {
                written: written.clone(),
                metrics: self.metrics.clone(),
                poisoned: poisoned.clone(),
                unsynced: unsynced.clone(),
                in_flight: in_flight.clone(),
                slow: SlowIo::new("fdatasync", self.config.slow_threshold),
            };
            std::thread::Builder::new()
                .name("journal-sync".into())
                .spawn(move || syncer.run(jobs_rx))
        };
        // Written batches go to the disk from a thread of their own, so the
        // next batch is laid out while the previous one is being written.
        // Two buffers: one filling, one writing.
        let (writes_tx, writes_rx) = flume::bounded::<WriteJob>(1);
        let (free_tx, free_rx) = flume::unbounded::<fileio::AlignedBuf>();
        let _ = free_tx.send(fileio::AlignedBuf::with_capacity(BATCH_BUF_BYTES));
        // A buffer in hand when a batch was not handed over after all.
        let mut spare: Option<fileio::AlignedBuf> = None;
        // 1 + the sequence number of a file a write to which failed (0: none).
        let write_failed = Arc::new(AtomicU64::new(0));
        let direct_refused = Arc::new(AtomicBool::new(false));
        // The writer's own I/O, for batches it writes itself.
        let batch_io = || {
            BatchIo::new(
                self.metrics.clone(),
                write_failed.clone(),
                direct_refused.clone(),
                self.config.slow_threshold,
            )
        };
        let mut inline = InlineIo {
            written: written.clone(),
            poisoned: poisoned.clone(),
            io: batch_io(),
        };
        let threads = syncer.and_then(|syncer| {
            let io = WriteThread {
                syncs: jobs_tx,
                free: free_tx,
                io: batch_io(),
                unsynced,
                in_flight: in_flight.clone(),
                poisoned: poisoned.clone(),
                written: written.clone(),
            };
            std::thread::Builder::new()
                .name("journal-write".into())
                .spawn(move || io.run(writes_rx))
                .map(|writer| (syncer, writer))
        });
        let (syncer, io) = match threads {
            Ok(t) => t,
            Err(e) => {
                error!(error = %e, "cannot start the journal's write and sync threads");
                while let Ok(req) = rx.recv() {
                    req.fail(BookieError::JournalFailed("no journal I/O threads".into()));
                }
                return;
            }
        };
        let mut batch: Vec<Pending> = Vec::new();
        let mut stop = false;
        while !stop {
            let first = match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            };
            let deadline = Instant::now() + self.config.max_group_wait;
            self.buf.clear();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                if req.records.is_empty() {
                    stop = true;
                    break;
                }
                self.lay_out(req, &mut batch);
                if self.buf.len() >= MAX_BATCH_BYTES {
                    break;
                }
                // A group's worth goes as soon as the write thread is idle
                // (its buffer is back): what is still queued is laid out
                // while this batch is written. Draining a deep queue first
                // left the disk idle for the copy of up to 16 MiB (gaps of
                // 0.8 ms on average between writes at 1 GB/s).
                if self.buf.len() >= self.config.group_bytes {
                    if spare.is_none() {
                        spare = free_rx.try_recv().ok();
                    }
                    if spare.is_some() {
                        break;
                    }
                }
                // Otherwise whatever is already queued joins the batch; only
                // waiting for more is bounded by the group size and wait.
                next = match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(_)
                        if self.config.flush_when_queue_empty
                            || self.buf.len() >= self.config.group_bytes =>
                    {
                        None
                    }
                    Err(_) => {
                        let now = Instant::now();
                        if now >= deadline {
                            None
                        } else {
                            rx.recv_timeout(deadline - now).ok()
                        }
                    }
                };
            }
            if batch.is_empty() {
                continue;
            }
            // Below a group's worth this thread writes, syncs and completes
            // the batch itself, once nothing earlier is in flight: the
            // pipeline would only add wake-ups to its path (one per request
            // while the batch waited for a buffer, and two hand-overs), and
            // on a disk that serves one request at a time a write
            // overlapping an fsync only makes that fsync longer. What
            // arrives while the pipeline drains joins the batch.
            let small = !stop && self.buf.len() < self.config.group_bytes;
            if small && in_flight.load(Ordering::Acquire) != 0 {
                while in_flight.load(Ordering::Acquire) != 0 {
                    if idle_rx.recv().is_err() {
                        break;
                    }
                }
                while self.buf.len() < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(req) if !req.records.is_empty() => self.lay_out(req, &mut batch),
                        Ok(_) => {
                            stop = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            let write_here = small && !stop && in_flight.load(Ordering::Acquire) == 0;
            // Otherwise the other buffer, back once the previous batch is
            // written: so a failed write of it is known below. Requests that
            // arrive meanwhile still join this batch, as they joined the
            // next one when a single thread built and wrote: a batch closed
            // early would leave them to wait for two writes.
            let fresh = match spare.take() {
                Some(b) => Some(b),
                None if write_here => None,
                None => loop {
                    if stop || self.buf.len() >= MAX_BATCH_BYTES {
                        break free_rx.recv().ok();
                    }
                    let arrived = flume::Selector::new()
                        .recv(&free_rx, Arrival::Buffer)
                        .recv(&rx, Arrival::Request)
                        .wait();
                    match arrived {
                        Arrival::Buffer(b) => break b.ok(),
                        Arrival::Request(Ok(req)) if !req.records.is_empty() => {
                            self.lay_out(req, &mut batch);
                        }
                        // A stop request, or no more requests at all.
                        Arrival::Request(_) => stop = true,
                    }
                },
            };
            if fresh.is_none() && !write_here {
                for p in batch.drain(..) {
                    p.fail(BookieError::ShuttingDown);
                }
                break;
            }
            if direct_refused.load(Ordering::Acquire) && self.direct.is_some() {
                warn!("journal direct I/O refused; using buffered writes");
                self.direct = None;
            }
            // After a failed write or fsync nothing more goes into that file.
            let failed = self.seq + 1;
            if poisoned.load(Ordering::Acquire) == failed
                || write_failed.load(Ordering::Acquire) == failed
            {
                let (old_offset, old_mask) = (self.offset, self.mask);
                self.roll_or_log();
                rebase(&mut batch, self.offset, old_offset);
                remask(self.buf.as_mut_slice(), old_mask ^ self.mask);
            }
            if self.direct.is_some() {
                pad_to_alignment(&mut self.buf, self.mask);
            }
            let len = self.buf.len() as u64;
            self.metrics.journal_batch_bytes.observe(len as f64);
            if let Err(e) = self.ensure_allocated(len) {
                // The storage turns the bookie read-only on this error.
                error!(error = %e, "journal allocation failed; failing the batch");
                for p in batch.drain(..) {
                    p.fail(BookieError::JournalFailed(e.to_string()));
                }
                spare = fresh;
                self.roll_or_log();
                continue;
            }
            match fresh {
                Some(fresh) if !write_here => {
                    let job = WriteJob {
                        buf: std::mem::replace(&mut self.buf, fresh),
                        file: self.file.clone(),
                        direct: self.direct.clone(),
                        seq: self.seq,
                        at: self.offset,
                        batch: std::mem::take(&mut batch),
                    };
                    self.offset += len;
                    // Counted before the hand-over: the write thread may
                    // complete the batch before `send` returns.
                    in_flight.fetch_add(1, Ordering::AcqRel);
                    if let Err(e) = writes_tx.send(job) {
                        in_flight.done(1);
                        for p in e.into_inner().batch {
                            p.fail(BookieError::ShuttingDown);
                        }
                        break;
                    }
                }
                fresh => {
                    spare = fresh;
                    let at = self.offset;
                    self.offset += len;
                    inline.write(self, at, std::mem::take(&mut batch));
                }
            }
            if self.offset >= self.config.max_file_size {
                // On failure keep appending to the current file; the next
                // batch tries to roll again. The batch just handed over may
                // still be on its way into the old file: below its new end.
                self.roll_or_log();
            }
        }
        // The write thread writes what was handed over, the syncer completes
        // it, then both stop.
        drop(writes_tx);
        let _ = io.join();
        let _ = syncer.join();
        // Let a spare file being prepared finish, so a journal reopened in
        // this process never races its creation.
        if let Some(rx) = self.spare.take() {
            let _ = rx.recv();
        }
        // Complete whatever is still queued after a stop request as failed.
        while let Ok(req) = rx.try_recv() {
            req.fail(BookieError::ShuttingDown);
        }
        for p in batch.drain(..) {
            p.fail(BookieError::ShuttingDown);
        }
    }

    /// Appends `req`'s records to the batch being laid out in `buf`, at
    /// their place in the current file.
    fn lay_out(&mut self, req: Request, batch: &mut Vec<Pending>) {
        self.metrics
            .journal_queue_seconds
            .observe(req.queued.elapsed().as_secs_f64());
        let mut placements = Vec::new();
        let mut head_start = 0;
        for r in req.records {
            let start = self.offset + self.buf.len() as u64;
            let at = self.buf.len();
            self.buf
                .extend_from_slice(&req.heads[head_start..r.head_end]);
            // Callers frame with plain CRCs; the mask is this file's.
            xor_crc(&mut self.buf.as_mut_slice()[at..], self.mask);
            self.buf.extend_from_slice(&r.tail);
            head_start = r.head_end;
            if let Some(p) = r.placement {
                placements.push((p, start));
            }
        }
        batch.push(Pending {
            done: req.done,
            placements,
            end: self.offset + self.buf.len() as u64,
        });
    }

    fn roll_or_log(&mut self) {
        if let Err(e) = self.roll() {
            error!(error = %e, "cannot open a new journal file");
        }
    }
}

/// XORs the checksum field of the record that starts `record` with `mask`.
fn xor_crc(record: &mut [u8], mask: u32) {
    let field = &mut record[4..RECORD_HEADER];
    let crc = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
    field.copy_from_slice(&(crc ^ mask).to_le_bytes());
}

/// XORs the checksum of every record in `batch` (records back to back, no
/// padding yet) with `xor`: moves a batch masked for one file to another.
fn remask(batch: &mut [u8], xor: u32) {
    let mut pos = 0;
    while pos + RECORD_HEADER <= batch.len() {
        let len = u32::from_le_bytes([batch[pos], batch[pos + 1], batch[pos + 2], batch[pos + 3]]);
        xor_crc(&mut batch[pos..], xor);
        pos += RECORD_HEADER + len as usize;
    }
}

/// Moves a batch's record positions to a new file offset (the batch was laid
/// out for a file it will not be written to).
fn rebase(batch: &mut [Pending], offset: u64, old_offset: u64) {
    for p in batch {
        for (_, start) in &mut p.placements {
            *start = *start - old_offset + offset;
        }
        p.end = p.end - old_offset + offset;
    }
}

/// The write thread (see [`WriteThread::run`]) and what it shares with the
/// writer and the syncer.
/// Batches the writer handed to the write thread and nobody completed (or
/// failed) yet, with a signal each time the count falls to zero.
struct InFlight {
    count: AtomicUsize,
    idle: (flume::Sender<()>, flume::Receiver<()>),
}

impl InFlight {
    fn new(count: usize) -> InFlight {
        InFlight {
            count: AtomicUsize::new(count),
            idle: flume::bounded(1),
        }
    }

    /// Counts `n` batches out, once they are completed or failed; the last
    /// one out signals (a signal may be stale: the waiter checks the count).
    fn done(&self, n: usize) {
        if self.count.fetch_sub(n, Ordering::AcqRel) == n {
            let _ = self.idle.0.try_send(());
        }
    }
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight::new(0)
    }
}

impl std::ops::Deref for InFlight {
    type Target = AtomicUsize;

    fn deref(&self) -> &AtomicUsize {
        &self.count
    }
}

/// A batch's write and fdatasync, timed into the journal's metrics and
/// marking the file as failed the same way whichever thread does them: the
/// write thread, or the journal thread for a batch it writes itself.
struct BatchIo {
    metrics: Arc<Metrics>,
    /// 1 + the sequence number of a file a write to which failed (0: none).
    write_failed: Arc<AtomicU64>,
    direct_refused: Arc<AtomicBool>,
    slow_writes: SlowIo,
    slow_syncs: SlowIo,
}

impl BatchIo {
    fn new(
        metrics: Arc<Metrics>,
        write_failed: Arc<AtomicU64>,
        direct_refused: Arc<AtomicBool>,
        slow_threshold: Duration,
    ) -> BatchIo {
        BatchIo {
            metrics,
            write_failed,
            direct_refused,
            slow_writes: SlowIo::new("write", slow_threshold),
            slow_syncs: SlowIo::new("fdatasync", slow_threshold),
        }
    }

    /// Writes `buf`, a batch of file `seq`, at `at` (see [`write_at`]) and
    /// counts its bytes. A batch for a file a write to which failed fails
    /// too: it would follow bytes in an unknown state. A failed write marks
    /// its file so before this returns; the writer moves to a new file once
    /// it sees the mark.
    fn write(
        &mut self,
        file: &File,
        direct: Option<&File>,
        buf: &[u8],
        seq: u64,
        at: u64,
    ) -> Result<()> {
        let result = if self.write_failed.load(Ordering::Acquire) == seq + 1 {
            Err(BookieError::JournalFailed(
                "an earlier write to this journal file failed".into(),
            ))
        } else {
            let m = &self.metrics;
            self.slow_writes.time(
                &m.journal_write_seconds,
                &m.journal_slow_writes,
                seq,
                || write_at(file, direct, buf, at, &self.direct_refused),
            )
        };
        match &result {
            Ok(()) => self.metrics.journal_bytes.inc_by(buf.len() as u64),
            Err(e) => {
                // The storage turns the bookie read-only on this error.
                self.write_failed.store(seq + 1, Ordering::Release);
                error!(error = %e, seq, "journal write failed; failing the batch");
            }
        }
        result
    }

    /// fdatasyncs `file`, journal file `seq`, timed.
    fn sync(&mut self, file: &File, seq: u64) -> std::io::Result<()> {
        let m = &self.metrics;
        self.slow_syncs
            .time(&m.journal_fsync_seconds, &m.journal_slow_syncs, seq, || {
                file.sync_data()
            })
    }
}

/// What the writer needs to write, sync and complete a batch itself.
struct InlineIo {
    written: Arc<PositionCell>,
    /// 1 + the sequence number of a file whose fsync failed (0: none).
    poisoned: Arc<AtomicU64>,
    io: BatchIo,
}

impl InlineIo {
    /// Writes `w.buf` (laid out for `batch`) at `at` in the current file,
    /// syncs it and completes the batch, with nothing earlier in flight. A
    /// failed write or fsync marks the file as the write thread and the
    /// syncer do, so the writer moves to a new one, and fails the batch.
    fn write(&mut self, w: &mut Writer, at: u64, batch: Vec<Pending>) {
        let (seq, len) = (w.seq, w.buf.len() as u64);
        let wrote = self
            .io
            .write(&w.file, w.direct.as_deref(), w.buf.as_slice(), seq, at);
        w.buf.clear();
        if let Err(e) = wrote {
            for p in batch {
                p.fail(BookieError::JournalFailed(e.to_string()));
            }
            return;
        }
        if let Err(e) = self.io.sync(&w.file, seq) {
            error!(error = %e, seq, "journal fdatasync failed; failing its batch");
            self.poisoned.store(seq + 1, Ordering::Release);
            for p in batch {
                p.fail(BookieError::JournalFailed(format!(
                    "fdatasync journal: {e}"
                )));
            }
            return;
        }
        w.metrics.journal_unpipelined_batches.inc();
        complete(&self.written, seq, at + len, batch);
    }
}

/// Completes the durable `batch` of file `seq`, which ends at `end`: its
/// records' placements first, then `written`, then each request.
fn complete(written: &PositionCell, seq: u64, end: u64, batch: Vec<Pending>) {
    for p in &batch {
        for (pl, start) in &p.placements {
            let _ = pl.set(Ok(JournalPos {
                seq,
                offset: *start,
            }));
        }
    }
    written.set(JournalPos { seq, offset: end });
    for p in batch {
        let _ = p.done.send(Ok(JournalPos { seq, offset: p.end }));
    }
}

struct WriteThread {
    syncs: flume::Sender<SyncJob>,
    free: flume::Sender<fileio::AlignedBuf>,
    io: BatchIo,
    /// Batches handed to the syncer whose fsync has not completed yet.
    unsynced: Arc<AtomicUsize>,
    /// Batches handed to this thread by the writer and not yet completed
    /// (or failed), by it or by the syncer.
    in_flight: Arc<InFlight>,
    /// 1 + the sequence number of a file whose fsync failed (0: none).
    poisoned: Arc<AtomicU64>,
    written: Arc<PositionCell>,
}

impl WriteThread {
    /// Writes each laid-out batch where the writer placed it, gives its
    /// buffer back and hands the batch to the syncer, which completes
    /// batches in order. A batch for a file a write to which failed fails
    /// too (it would follow bytes in an unknown state); the writer moves to
    /// a new file once it sees `write_failed`, which is set before the
    /// failed batch's buffer goes back to it.
    ///
    /// When the syncer has no fsync to do and no other batch waits to be
    /// written, this thread makes the batch durable itself before handing it
    /// over: the fsync starts at once, with no wake-up in between, and does
    /// not overlap a write. Under load (a batch waiting, or an fsync in
    /// flight) the fsync is left to the syncer, so that the next batch is
    /// written meanwhile. Below peak this saves a wake-up per batch and
    /// shortens the journal's tail (figures in the README's storage
    /// section). Such a batch is completed here too when nothing handed
    /// over before it is left to complete; otherwise the syncer completes
    /// it, after the earlier ones, so completions stay in order.
    fn run(mut self, jobs: flume::Receiver<WriteJob>) {
        while let Ok(job) = jobs.recv() {
            let WriteJob {
                mut buf,
                file,
                direct,
                seq,
                at,
                batch,
            } = job;
            let len = buf.len() as u64;
            let result = self
                .io
                .write(&file, direct.as_deref(), buf.as_slice(), seq, at);
            buf.clear();
            let _ = self.free.send(buf);
            if let Err(e) = result {
                for p in batch {
                    p.fail(BookieError::JournalFailed(e.to_string()));
                }
                self.in_flight.done(1);
                continue;
            }
            let synced = if self.unsynced.load(Ordering::Acquire) == 0 && jobs.is_empty() {
                Some(self.io.sync(&file, seq).map_err(|e| e.to_string()))
            } else {
                self.unsynced.fetch_add(1, Ordering::AcqRel);
                None
            };
            // Durable, and everything before it completed (the syncer
            // counts its batches out only once it has completed them; a
            // failed fsync of this file marks it before that).
            if synced == Some(Ok(()))
                && self.in_flight.load(Ordering::Acquire) == 1
                && self.poisoned.load(Ordering::Acquire) != seq + 1
            {
                complete(&self.written, seq, at + len, batch);
                self.in_flight.done(1);
                continue;
            }
            let job = SyncJob {
                file,
                seq,
                end: at + len,
                batch,
                synced,
            };
            if let Err(e) = self.syncs.send(job) {
                for p in e.into_inner().batch {
                    p.fail(BookieError::ShuttingDown);
                }
                self.in_flight.done(1);
            }
        }
    }
}

/// Writes `buf` at `at`: through `direct` (one call for the whole batch, so
/// the block layer has all of it in flight at once) or, without it, through
/// the page cache.
fn write_at(
    file: &File,
    direct: Option<&File>,
    buf: &[u8],
    at: u64,
    direct_refused: &AtomicBool,
) -> Result<()> {
    let wrote = fileio::write_at_direct(file, direct, buf, at)
        .map_err(|e| BookieError::io("write journal", e))?;
    if wrote == fileio::Wrote::DirectRefused {
        // Through the page cache from now on.
        direct_refused.store(true, Ordering::Release);
    }
    Ok(())
}

/// The syncer: makes written batches durable and completes them, in order.
struct Syncer {
    written: Arc<PositionCell>,
    metrics: Arc<Metrics>,
    /// 1 + the sequence number of a file whose fsync failed (0: none).
    poisoned: Arc<AtomicU64>,
    /// Batches handed to the syncer that wait for its fsync.
    unsynced: Arc<AtomicUsize>,
    /// Batches the writer handed over and nobody completed yet; the syncer
    /// counts its own out once they are completed.
    in_flight: Arc<InFlight>,
    slow: SlowIo,
}

impl Syncer {
    fn run(mut self, jobs: flume::Receiver<SyncJob>) {
        let Syncer {
            written,
            metrics,
            poisoned,
            unsynced,
            in_flight,
            slow,
        } = &mut self;
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            group.extend(jobs.try_iter());
            // One fsync per file, for its last batch (which covers the
            // others); none for a batch the write thread made durable
            // already, after every earlier write to its file.
            let mut failed: Vec<(u64, String)> = Vec::new();
            let mut started = None;
            for (i, job) in group.iter().enumerate() {
                // Checked first, and for every batch: after a failed fsync,
                // a later one of the same file can succeed with the data
                // lost.
                if poisoned.load(Ordering::Acquire) == job.seq + 1 {
                    failed.push((job.seq, "an earlier fsync of this file failed".into()));
                    continue;
                }
                let outcome = match &job.synced {
                    Some(synced) => synced.clone(),
                    None if group.get(i + 1).is_none_or(|n| n.seq != job.seq) => {
                        started.get_or_insert_with(Instant::now);
                        job.file.sync_data().map_err(|e| e.to_string())
                    }
                    None => continue,
                };
                if let Err(e) = outcome {
                    error!(error = %e, seq = job.seq, "journal fdatasync failed; failing its batches");
                    poisoned.store(job.seq + 1, Ordering::Release);
                    failed.push((job.seq, format!("fdatasync journal: {e}")));
                }
            }
            if let Some(started) = started {
                let took = started.elapsed();
                metrics.journal_fsync_seconds.observe(took.as_secs_f64());
                if let Some(last) = group.last() {
                    slow.observe(took, &metrics.journal_slow_syncs, last.seq);
                }
            }
            let waited = group.iter().filter(|j| j.synced.is_none()).count();
            unsynced.fetch_sub(waited, Ordering::AcqRel);
            let handled = group.len();
            for job in group {
                if let Some((_, why)) = failed.iter().find(|(s, _)| *s == job.seq) {
                    for p in job.batch {
                        p.fail(BookieError::JournalFailed(why.clone()));
                    }
                    continue;
                }
                complete(written, job.seq, job.end, job.batch);
            }
            in_flight.done(handled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> JournalConfig {
        JournalConfig {
            dir: dir.to_path_buf(),
            group_bytes: 512 << 10,
            max_group_wait: Duration::from_millis(1),
            flush_when_queue_empty: false,
            preallocate: 1 << 20,
            max_file_size: 4 << 20,
            queue_capacity: 1024,
            recycler: Arc::new(Recycler::new(dir, 0, Arc::new(Metrics::default()))),
            slow_threshold: SLOW_THRESHOLD,
        }
    }

    fn replay_all(dir: &Path, from: JournalPos) -> (Journal, Vec<Vec<u8>>) {
        open_with(config(dir), from)
    }

    fn open_with(config: JournalConfig, from: JournalPos) -> (Journal, Vec<Vec<u8>>) {
        let mut got = Vec::new();
        let j = Journal::open(config, from, Arc::new(Metrics::default()), |r| {
            got.push(r.body);
            Ok(())
        })
        .unwrap();
        (j, got)
    }

    fn write_thread(
        syncs: flume::Sender<SyncJob>,
        free: flume::Sender<fileio::AlignedBuf>,
    ) -> WriteThread {
        WriteThread {
            syncs,
            free,
            io: BatchIo::new(
                Arc::new(Metrics::default()),
                Arc::new(AtomicU64::new(0)),
                Arc::new(AtomicBool::new(false)),
                SLOW_THRESHOLD,
            ),
            unsynced: Arc::new(AtomicUsize::new(0)),
            // As if earlier batches were still being completed: the thread
            // then hands every batch to the syncer.
            in_flight: Arc::new(InFlight::new(100)),
            poisoned: Arc::new(AtomicU64::new(0)),
            written: Arc::new(PositionCell::default()),
        }
    }

    /// A batch of 100 bytes of `seq` at `at` in `file`, and the receiver of
    /// its outcome.
    fn write_job(
        file: &Arc<File>,
        seq: u64,
        at: u64,
    ) -> (WriteJob, oneshot::Receiver<Result<JournalPos>>) {
        let (tx, rx) = oneshot::channel();
        let mut buf = fileio::AlignedBuf::with_capacity(4096);
        buf.extend_from_slice(&[seq as u8; 100]);
        let job = WriteJob {
            buf,
            file: file.clone(),
            direct: None,
            seq,
            at,
            batch: vec![Pending {
                done: tx,
                placements: Vec::new(),
                end: at + 100,
            }],
        };
        (job, rx)
    }

    fn writable(path: &Path) -> Arc<File> {
        Arc::new(
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(path)
                .unwrap(),
        )
    }

    /// The write thread makes a batch durable itself when nothing else is
    /// waiting (no batch queued behind it, no fsync owed by the syncer), and
    /// otherwise leaves its fsync to the syncer and counts it as owed.
    #[test]
    fn the_write_thread_syncs_a_batch_itself_only_when_nothing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let file = writable(&dir.path().join("f"));
        let (jobs_tx, jobs_rx) = flume::unbounded();
        let (syncs_tx, syncs_rx) = flume::unbounded::<SyncJob>();
        let (free_tx, _free_rx) = flume::unbounded();
        // Two batches queued at once, then a third once the first two are
        // handed over and the syncer owes nothing any more.
        let (a, _ra) = write_job(&file, 1, 0);
        let (b, _rb) = write_job(&file, 1, 100);
        jobs_tx.send(a).unwrap();
        jobs_tx.send(b).unwrap();
        let io = write_thread(syncs_tx, free_tx);
        let unsynced = io.unsynced.clone();
        let thread = std::thread::spawn(move || io.run(jobs_rx));
        let first = syncs_rx.recv().unwrap();
        assert!(first.synced.is_none(), "a batch waited behind it");
        let second = syncs_rx.recv().unwrap();
        assert!(second.synced.is_none(), "the syncer owed the first's fsync");
        assert_eq!(unsynced.load(Ordering::Acquire), 2);
        // The syncer catches up.
        unsynced.store(0, Ordering::Release);
        let (c, _rc) = write_job(&file, 1, 200);
        jobs_tx.send(c).unwrap();
        let third = syncs_rx.recv().unwrap();
        assert_eq!(third.synced, Some(Ok(())), "nothing waited: synced inline");
        assert_eq!(unsynced.load(Ordering::Acquire), 0);
        drop(jobs_tx);
        thread.join().unwrap();
    }

    /// The write thread on its own: a failed write fails its batch and
    /// marks its file, so a later batch of that file fails unwritten (it
    /// would follow bytes in an unknown state), while other files' batches
    /// are written and go on to the syncer; every buffer comes back, and
    /// the file's mark is set before its buffer does.
    #[test]
    fn a_failed_write_fails_its_file_and_only_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        // Read-only: every write to it fails (EBADF).
        let broken = Arc::new(File::open(&path).unwrap());
        let good_path = dir.path().join("g");
        let good = Arc::new(
            OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .open(&good_path)
                .unwrap(),
        );
        let (jobs_tx, jobs_rx) = flume::unbounded();
        let (syncs_tx, syncs_rx) = flume::unbounded::<SyncJob>();
        let (free_tx, free_rx) = flume::unbounded();
        let mut done = Vec::new();
        let mut send = |file: &Arc<File>, seq: u64, at: u64| {
            let (job, rx) = write_job(file, seq, at);
            done.push(rx);
            jobs_tx.send(job).unwrap();
        };
        send(&broken, 7, 16);
        // File 7 again, through a handle that could write: the mark alone
        // keeps it out.
        send(&good, 7, 400);
        send(&good, 8, 16);
        drop(jobs_tx);
        let thread = write_thread(syncs_tx, free_tx);
        let (write_failed, metrics) = (thread.io.write_failed.clone(), thread.io.metrics.clone());
        thread.run(jobs_rx);
        assert_eq!(write_failed.load(Ordering::Acquire), 8);
        assert_eq!(free_rx.try_iter().filter(|b| b.is_empty()).count(), 3);
        let outcomes: Vec<_> = done.into_iter().map(|mut rx| rx.try_recv()).collect();
        for (i, o) in outcomes[..2].iter().enumerate() {
            assert!(
                matches!(o, Ok(Err(BookieError::JournalFailed(_)))),
                "batch {i} of the broken file: {o:?}"
            );
        }
        // The good file's batch is written, and waits for its fsync.
        assert!(outcomes[2].is_err(), "not completed before its fsync");
        let synced: Vec<SyncJob> = syncs_rx.try_iter().collect();
        assert_eq!(synced.len(), 1);
        assert_eq!((synced[0].seq, synced[0].end), (8, 116));
        let mut on_disk = vec![0u8; 100];
        good.read_exact_at(&mut on_disk, 16).unwrap();
        assert_eq!(on_disk, vec![8u8; 100]);
        assert_eq!(
            good.metadata().unwrap().len(),
            116,
            "file 7's batch unwritten"
        );
        assert_eq!(metrics.journal_bytes.get(), 100);
    }

    /// The syncer completes batches in order: one the write thread made
    /// durable completes without an fsync of the syncer's, one whose fsync
    /// failed there fails with its file's later batches, and only the
    /// batches that waited for the syncer's fsync leave its count.
    #[test]
    fn the_syncer_completes_batches_synced_before_it_and_fails_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (
            writable(&dir.path().join("1")),
            writable(&dir.path().join("2")),
        );
        let (tx, rx) = flume::unbounded();
        let mut outcomes = Vec::new();
        let mut send = |file: &Arc<File>, seq: u64, end: u64, synced| {
            let (done, outcome) = oneshot::channel();
            outcomes.push(outcome);
            let batch = vec![Pending {
                done,
                placements: Vec::new(),
                end,
            }];
            tx.send(SyncJob {
                file: file.clone(),
                seq,
                end,
                batch,
                synced,
            })
            .unwrap();
        };
        send(&one, 1, 100, None);
        send(&one, 1, 200, Some(Ok(())));
        send(&two, 2, 100, Some(Err("disk on fire".to_string())));
        send(&two, 2, 200, None);
        drop(tx);
        let written = PositionCell {
            seq: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            lock: parking_lot::Mutex::new(()),
        };
        let written = Arc::new(written);
        let (poisoned, unsynced) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(2)));
        // The four batches, and one the write thread still holds.
        let in_flight = Arc::new(InFlight::new(5));
        Syncer {
            written: written.clone(),
            metrics: Arc::new(Metrics::default()),
            poisoned: poisoned.clone(),
            unsynced: unsynced.clone(),
            in_flight: in_flight.clone(),
            slow: SlowIo::new("fdatasync", SLOW_THRESHOLD),
        }
        .run(rx);
        let got: Vec<_> = outcomes
            .into_iter()
            .map(|mut o| o.try_recv().unwrap())
            .collect();
        assert_eq!(
            got[0].as_ref().unwrap(),
            &JournalPos {
                seq: 1,
                offset: 100
            }
        );
        assert_eq!(
            got[1].as_ref().unwrap(),
            &JournalPos {
                seq: 1,
                offset: 200
            }
        );
        for o in &got[2..] {
            let e = o.as_ref().unwrap_err().to_string();
            assert!(e.contains("disk on fire"), "{e}");
        }
        assert_eq!(poisoned.load(Ordering::Acquire), 3);
        assert_eq!(
            written.get(),
            JournalPos {
                seq: 1,
                offset: 200
            }
        );
        assert_eq!(unsynced.load(Ordering::Acquire), 0);
        assert_eq!(in_flight.load(Ordering::Acquire), 1, "its four counted out");
    }

    /// A batch the write thread synced itself is completed there when
    /// nothing handed over before it is left to complete, and otherwise
    /// left to the syncer, which completes batches in order; so is a batch
    /// of a file whose fsync failed.
    #[test]
    fn the_write_thread_completes_a_synced_batch_only_when_nothing_earlier_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let file = writable(&dir.path().join("f"));
        let (jobs_tx, jobs_rx) = flume::unbounded();
        let (syncs_tx, syncs_rx) = flume::unbounded::<SyncJob>();
        let (free_tx, _free_rx) = flume::unbounded();
        let io = write_thread(syncs_tx, free_tx);
        let (in_flight, poisoned, written) = (
            io.in_flight.clone(),
            io.poisoned.clone(),
            io.written.clone(),
        );
        let thread = std::thread::spawn(move || io.run(jobs_rx));
        // Another batch is still to be completed: the syncer completes this
        // one after it.
        in_flight.store(2, Ordering::Release);
        let (a, mut ra) = write_job(&file, 1, 0);
        jobs_tx.send(a).unwrap();
        let handed = syncs_rx.recv().unwrap();
        assert_eq!(handed.synced, Some(Ok(())));
        assert!(ra.try_recv().is_err(), "not completed by the write thread");
        assert_eq!(in_flight.load(Ordering::Acquire), 2);
        // Nothing before it: completed at once, written moved, counted out.
        in_flight.store(1, Ordering::Release);
        let (b, rb) = write_job(&file, 1, 100);
        jobs_tx.send(b).unwrap();
        let done = rb.blocking_recv().unwrap().unwrap();
        assert_eq!(
            done,
            JournalPos {
                seq: 1,
                offset: 200
            }
        );
        assert_eq!(
            written.get(),
            JournalPos {
                seq: 1,
                offset: 200
            }
        );
        // Counted out right after its waiters are told (so that "nothing in
        // flight" always means "all completed"): wait for it, boundedly.
        let deadline = Instant::now() + Duration::from_secs(5);
        while in_flight.load(Ordering::Acquire) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(in_flight.load(Ordering::Acquire), 0);
        assert!(syncs_rx.try_recv().is_err(), "nothing for the syncer");
        // The file's fsync failed earlier: the syncer fails the batch.
        poisoned.store(2, Ordering::Release);
        in_flight.store(1, Ordering::Release);
        let (c, mut rc) = write_job(&file, 1, 200);
        jobs_tx.send(c).unwrap();
        assert!(syncs_rx.recv().is_ok());
        assert!(rc.try_recv().is_err());
        drop(jobs_tx);
        thread.join().unwrap();
    }

    /// A batch below the group size is written, synced and completed by
    /// the journal thread itself (after whatever is still in flight); a
    /// group's worth goes through the pipeline; every record reads back in
    /// order either way.
    #[tokio::test]
    async fn the_journal_thread_writes_small_batches_itself_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut cfg = config(dir.path());
        cfg.flush_when_queue_empty = true;
        let j = Journal::open(cfg.clone(), JournalPos::default(), metrics.clone(), |_| {
            Ok(())
        })
        .unwrap();
        // One at a time: each finds the journal idle.
        for i in 0..20u32 {
            j.append(format!("one-{i}").into_bytes()).await.unwrap();
        }
        let alone = metrics.journal_unpipelined_batches.get();
        assert_eq!(alone, 20, "every lone record written by the journal thread");
        // A group's worth at once (one request of 16 × 64 KiB) goes
        // through the pipeline.
        let tails: Vec<Bytes> = (0..16u8).map(|i| Bytes::from(vec![i; 64 << 10])).collect();
        let group = j.append_many(
            tails
                .iter()
                .map(|t| RecordIn {
                    head: b"",
                    tail: t.clone(),
                    tail_crc: None,
                    placement: None,
                })
                .collect(),
        );
        group.await.unwrap();
        assert_eq!(metrics.journal_batch_bytes.count(), 21);
        assert_eq!(
            metrics.journal_unpipelined_batches.get(),
            20,
            "the group was pipelined"
        );
        // Then lone records again: the first may find the group not yet
        // counted out (that happens just after its completion), and waits
        // for it; none goes through the pipeline.
        for i in 20..84u32 {
            j.append(format!("one-{i}").into_bytes()).await.unwrap();
        }
        j.shutdown();
        drop(j);
        let (_j, got) = replay_all(dir.path(), JournalPos::default());
        assert_eq!(got.len(), 100);
        for (i, r) in got.iter().enumerate() {
            match i {
                0..20 => assert_eq!(r, format!("one-{i}").as_bytes()),
                20..36 => assert_eq!(r, &vec![(i - 20) as u8; 64 << 10]),
                _ => assert_eq!(r, format!("one-{}", i - 16).as_bytes()),
            }
        }
        assert_eq!(metrics.journal_unpipelined_batches.get(), 84);
    }

    #[tokio::test]
    async fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (j, got) = replay_all(dir.path(), JournalPos::default());
        assert!(got.is_empty());
        let mut futs = Vec::new();
        for i in 0..500u32 {
            futs.push(j.append(i.to_le_bytes().repeat(i as usize % 50 + 1)));
        }
        let positions = futures::future::try_join_all(futs).await.unwrap();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        drop(j);
        let (_j, got) = replay_all(dir.path(), JournalPos::default());
        assert_eq!(got.len(), 500);
        for (i, body) in got.iter().enumerate() {
            let i = i as u32;
            assert_eq!(body, &i.to_le_bytes().repeat(i as usize % 50 + 1));
        }
    }

    #[tokio::test]
    async fn writes_and_syncs_over_the_slow_threshold_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let open = |threshold: Duration| {
            Journal::open(
                JournalConfig {
                    slow_threshold: threshold,
                    ..config(dir.path())
                },
                JournalPos::default(),
                metrics.clone(),
                |_| Ok(()),
            )
            .unwrap()
        };
        // Nothing on this disk takes an hour.
        let j = open(Duration::from_secs(3600));
        for i in 0..5u8 {
            j.append(vec![i; 100]).await.unwrap();
        }
        drop(j);
        assert_eq!(metrics.journal_slow_writes.get(), 0);
        assert_eq!(metrics.journal_slow_syncs.get(), 0);
        // Every operation takes at least a nanosecond: each one is slow.
        let j = open(Duration::from_nanos(1));
        for i in 0..5u8 {
            j.append(vec![i; 100]).await.unwrap();
        }
        drop(j);
        // Sequential appends: one write and one sync each.
        assert_eq!(
            (
                metrics.journal_slow_writes.get(),
                metrics.journal_slow_syncs.get()
            ),
            (5, 5)
        );
    }

    #[tokio::test]
    async fn replay_starts_at_checkpoint_and_trim_removes_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = replay_all(dir.path(), JournalPos::default());
        j.append(b"one".to_vec()).await.unwrap();
        let mid = j.append(b"two".to_vec()).await.unwrap();
        j.append(b"three".to_vec()).await.unwrap();
        drop(j);
        let (j, got) = replay_all(dir.path(), mid);
        assert_eq!(got, vec![b"three".to_vec()]);
        // Every open starts a new file and prepares the next one: trimming
        // before the newest written one removes the first open's two.
        let w = j.written();
        assert_eq!(j.trim(w, |_| false).unwrap().len(), 2);
        drop(j);
        let (_j, got) = replay_all(dir.path(), w);
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn torn_and_corrupt_tails_are_cut() {
        for v1 in [false, true] {
            for damage in ["truncate", "flip", "garbage-length"] {
                let why = format!("{damage}, v1 {v1}");
                let dir = tempfile::tempdir().unwrap();
                let (j, _) = replay_all(dir.path(), JournalPos::default());
                j.append(b"good-1".to_vec()).await.unwrap();
                let good = j.append(b"good-2".to_vec()).await.unwrap();
                let last = j.append(vec![7u8; 100]).await.unwrap();
                drop(j);
                let path = dir.path().join(file_name(good.seq));
                if v1 {
                    downgrade_to_v1(&path, good.seq);
                }
                let len = fs::metadata(&path).unwrap().len();
                let file = OpenOptions::new().write(true).open(&path).unwrap();
                match damage {
                    "truncate" => file.set_len(last.offset - 30).unwrap(),
                    "flip" => file.write_all_at(&[0xAA], last.offset - 10).unwrap(),
                    _ => file.write_all_at(&[0xFF; 4], good.offset).unwrap(),
                }
                drop(file);
                let (j, got) = replay_all(dir.path(), JournalPos::default());
                assert_eq!(got, vec![b"good-1".to_vec(), b"good-2".to_vec()], "{why}");
                let size = fs::metadata(&path).unwrap().len();
                if v1 {
                    // The cut is durable: the file now ends where the damaged
                    // record (or the padding record after the good ones)
                    // starts.
                    let last_start = last.offset - (RECORD_HEADER + 100) as u64;
                    let cut = if damage == "garbage-length" {
                        good.offset
                    } else {
                        last_start
                    };
                    assert_eq!(size, cut, "{why}");
                } else {
                    // A reused-format file is left as it is.
                    let expected = if damage == "truncate" {
                        last.offset - 30
                    } else {
                        len
                    };
                    assert_eq!(size, expected, "{why}");
                }
                // New records go to a new file and replay after the cut ones.
                j.append(b"after".to_vec()).await.unwrap();
                drop(j);
                let (_j, got) = replay_all(dir.path(), JournalPos::default());
                assert_eq!(got.last().unwrap(), b"after", "{why}");
                assert_eq!(got.len(), 3, "{why}");
            }
        }
    }

    /// Rewrites journal file `seq` as the `STRJRNL1` format wrote it: the old
    /// magic, and checksums not masked.
    fn downgrade_to_v1(path: &Path, seq: u64) {
        let mut data = fs::read(path).unwrap();
        assert_eq!(header_mask(&data, seq), Some(crc_mask(seq)));
        data[..MAGIC_V1.len()].copy_from_slice(MAGIC_V1);
        let mut pos = HEADER_LEN as usize;
        while pos + RECORD_HEADER <= data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap());
            if len == 0 {
                break;
            }
            let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap());
            data[pos + 4..pos + 8].copy_from_slice(&(crc ^ crc_mask(seq)).to_le_bytes());
            pos += RECORD_HEADER + (len & !PAD_FLAG) as usize;
        }
        fs::write(path, data).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placements_point_at_durable_records() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = replay_all(dir.path(), JournalPos::default());
        let j = Arc::new(j);
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                let placement: Placement = Arc::new(OnceLock::new());
                let body = i.to_le_bytes().repeat(i as usize * 7 % 5000 + 1);
                let end = j
                    .append_placed(
                        &body[..3],
                        Bytes::copy_from_slice(&body[3..]),
                        Some(placement.clone()),
                    )
                    .await
                    .unwrap();
                // Resolved before the append completed, and before the
                // journal's written position passed the record.
                let start = placement.get().unwrap().unwrap();
                assert_eq!(start.seq, end.seq);
                assert_eq!(
                    end.offset - start.offset,
                    (RECORD_HEADER + body.len()) as u64
                );
                assert!(j.written() >= end);
                (start, body)
            }));
        }
        for t in tasks {
            let (start, body) = t.await.unwrap();
            let file = File::open(dir.path().join(file_name(start.seq))).unwrap();
            let mut buf = vec![0u8; RECORD_HEADER + body.len()];
            file.read_exact_at(&mut buf, start.offset).unwrap();
            let mut header = [0u8; HEADER_LEN as usize];
            file.read_exact_at(&mut header, 0).unwrap();
            let mask = header_mask(&header, start.seq).unwrap();
            assert_eq!(mask, crc_mask(start.seq));
            assert_eq!(check_record(&buf, mask).unwrap(), &body[..]);
            // Read as another file's record, it fails its check.
            assert!(check_record(&buf, crc_mask(start.seq + 1)).is_err());
        }
        // A damaged record is refused, not returned.
        let mut bad = vec![0u8; RECORD_HEADER + 4];
        bad[..4].copy_from_slice(&4u32.to_le_bytes());
        assert!(check_record(&bad, 0).is_err());
    }

    #[tokio::test]
    async fn rolls_to_new_files_past_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = replay_all(dir.path(), JournalPos::default());
        for _ in 0..12 {
            j.append(vec![1u8; 1 << 20]).await.unwrap();
        }
        assert!(j.written().seq >= 3);
        drop(j);
        let (_j, got) = replay_all(dir.path(), JournalPos::default());
        assert_eq!(got.len(), 12);
    }

    /// A file that rolls at its size holds nothing past its last batch, with
    /// more preallocation asked for than a file holds: files are allocated
    /// no further than their size, and a roll does not truncate (which
    /// would wait for the last batch's write).
    #[tokio::test]
    async fn files_that_roll_at_their_size_have_no_allocated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            preallocate: 16 << 20,
            ..config(dir.path())
        };
        let (j, _) = open_with(config.clone(), JournalPos::default());
        for i in 0..40u8 {
            j.append(vec![i; 300 << 10]).await.unwrap();
        }
        let current = j.written().seq;
        assert!(current >= 2, "{current}");
        drop(j);
        for (seq, path) in list_files(dir.path()).unwrap() {
            if seq >= current {
                continue;
            }
            let data = fs::read(&path).unwrap();
            let mut last_end = 0;
            replay_bytes(seq, &data, HEADER_LEN, &mut |r: ReplayedRecord| {
                last_end = r.end.offset;
                Ok(())
            })
            .unwrap();
            let len = data.len() as u64;
            assert!(
                last_end >= config.max_file_size,
                "file {seq} rolled early at {last_end}"
            );
            // Only the last batch's padding to a direct-I/O block follows.
            assert!(
                len >= last_end && len - last_end < (fileio::DIRECT_ALIGN + MAX_PAD) as u64,
                "file {seq}: {len} bytes, records end at {last_end}"
            );
        }
    }

    /// Files released after a checkpoint become the next journal files. What
    /// they held before is still in them past the new records (and fills a
    /// spare file that never got any), and none of it replays.
    #[tokio::test]
    async fn released_files_are_reused_and_their_older_records_never_replay() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let config = JournalConfig {
            max_file_size: 256 << 10,
            recycler: Arc::new(
                Recycler::new(dir.path(), 8, metrics.clone()).with_grace(Duration::ZERO),
            ),
            ..config(dir.path())
        };
        let body = |life: &str, i: usize, len: usize| {
            let mut b = format!("{life}-{i:04}-").into_bytes();
            b.resize(len, life.as_bytes()[0]);
            b
        };
        let (j, _) = open_with(config.clone(), JournalPos::default());
        for i in 0..60 {
            j.append(body("old", i, 20_000)).await.unwrap();
        }
        let mark = j.written();
        let released = j.trim(mark, |_| false).unwrap();
        assert!(released.len() >= 3, "{released:?}");
        // Shorter records: the reused files keep old records past the new.
        let new: Vec<Vec<u8>> = (0..150).map(|i| body("new", i, 5_000)).collect();
        for b in &new {
            j.append(b.clone()).await.unwrap();
        }
        let last = j.written();
        assert!(last.seq >= mark.seq + 2, "{mark:?} {last:?}");
        assert!(metrics.journal_reused_files.get() >= 2);
        drop(j);

        // Files after the checkpoint hold old records, intact.
        let old_in_new_files = list_files(dir.path())
            .unwrap()
            .into_iter()
            .filter(|(seq, _)| *seq > mark.seq)
            .filter(|(_, path)| {
                let data = fs::read(path).unwrap();
                data.windows(4).any(|w| w == b"old-")
            })
            .count();
        assert!(old_in_new_files >= 1);

        let (j, got) = open_with(config.clone(), mark);
        assert_eq!(got.len(), new.len());
        assert!(got == new, "replayed something other than the new records");
        // Appends after the restart land in order after them.
        j.append(b"after".to_vec()).await.unwrap();
        drop(j);
        let (_j, got) = open_with(config, mark);
        assert_eq!(got.len(), new.len() + 1);
        assert_eq!(got.last().unwrap(), b"after");
    }

    /// A batch masked for one file and moved to another (after a failed
    /// fsync) replays there, and only there.
    #[test]
    fn a_remasked_batch_is_valid_in_its_new_file_only() {
        let mut batch = Vec::new();
        for body in [&b"one"[..], &[7u8; 5000], b"three"] {
            let at = batch.len();
            batch.extend_from_slice(&(body.len() as u32).to_le_bytes());
            batch.extend_from_slice(&strata_proto::crc::crc32c(body).to_le_bytes());
            batch.extend_from_slice(body);
            xor_crc(&mut batch[at..], crc_mask(3));
        }
        remask(&mut batch, crc_mask(3) ^ crc_mask(4));
        let file = |seq: u64| {
            let mut f = MAGIC.to_vec();
            f.extend_from_slice(&seq.to_le_bytes());
            f.extend_from_slice(&batch);
            f
        };
        let count = |seq: u64| {
            replay_bytes(seq, &file(seq), HEADER_LEN, &mut |_| Ok(()))
                .unwrap()
                .records
        };
        assert_eq!(count(4), 3);
        assert_eq!(count(3), 0);
    }
}
