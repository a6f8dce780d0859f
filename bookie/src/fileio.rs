//! File-writing helpers shared by the journal and the entry logs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes per write syscall. Measured on the development VM (ext4 on virtio,
/// `dd ... conv=fdatasync`): 1 GiB in 256 KiB writes costs 0.3 s of system
/// time, in 1–8 MiB writes 0.6–1.1 s, so large buffers are cut up.
const WRITE_PIECE: usize = 256 << 10;

/// `write_all_at` in pieces of [`WRITE_PIECE`] bytes.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    for piece in buf.chunks(WRITE_PIECE) {
        file.write_all_at(piece, offset + done as u64)?;
        done += piece.len();
    }
    Ok(())
}

/// How [`write_at_direct`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrote {
    /// As asked: through the `O_DIRECT` handle, or through the page cache
    /// when none was given.
    AsAsked,
    /// The filesystem took `O_DIRECT` at open but refused the write
    /// (`EINVAL`): the bytes went through the page cache instead, and later
    /// writes should too.
    DirectRefused,
}

/// Writes `buf` at `at` through `direct` (one call for the whole buffer, so
/// the block layer has all of it in flight at once), or through the page
/// cache without it or when the filesystem refuses the direct write.
pub fn write_at_direct(
    file: &File,
    direct: Option<&File>,
    buf: &[u8],
    at: u64,
) -> io::Result<Wrote> {
    let Some(d) = direct else {
        return write_all_at(file, buf, at).map(|()| Wrote::AsAsked);
    };
    match d.write_all_at(buf, at) {
        Ok(()) => Ok(Wrote::AsAsked),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            write_all_at(file, buf, at).map(|()| Wrote::DirectRefused)
        }
        Err(e) => Err(e),
    }
}

/// Starts (does not wait for) writeback of a written range, so that a later
/// `fdatasync` has little left to do. Advisory: a failure changes nothing,
/// the caller's `fdatasync` is what makes data durable.
pub fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Allocates `len` bytes from `offset` so later writes there need no
/// allocation and `fdatasync` need not persist a size change.
pub fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset as i64, len as i64) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // Filesystems without fallocate: extend with zeros instead.
        return file.set_len(offset + len);
    }
    Err(err)
}

/// Offsets, lengths and memory of O_DIRECT writes are multiples of this.
pub const DIRECT_ALIGN: usize = 4096;

/// Appends bytes to a file in aligned blocks, so that the file can be opened
/// with `O_DIRECT` and the bytes go from this buffer to the device without a
/// copy into the page cache (the bookie's flush is memory-bandwidth bound:
/// that copy was its largest cost). Appending starts at an aligned offset,
/// and [`BlockWriter::finish`] pads the last block with zeros, so the next
/// append starts aligned again; the padding is never referenced.
pub struct BlockWriter {
    /// `piece + DIRECT_ALIGN` bytes, never reallocated; the block buffer
    /// is the aligned window `storage[start..start + piece]`.
    storage: Vec<u8>,
    start: usize,
    piece: usize,
    fill: usize,
    file_off: u64,
    /// Not direct: start page-cache writeback as data is written.
    buffered: bool,
    unsynced: usize,
}

impl BlockWriter {
    /// `piece` is rounded up to a multiple of [`DIRECT_ALIGN`].
    pub fn new(piece: usize, buffered: bool) -> BlockWriter {
        let piece = piece.div_ceil(DIRECT_ALIGN).max(1) * DIRECT_ALIGN;
        let storage = vec![0u8; piece + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        BlockWriter {
            storage,
            start,
            piece,
            fill: 0,
            file_off: 0,
            buffered,
            unsynced: 0,
        }
    }

    /// Continues at `offset` (a multiple of [`DIRECT_ALIGN`]), dropping
    /// anything buffered.
    pub fn reset(&mut self, offset: u64) {
        debug_assert_eq!(offset % DIRECT_ALIGN as u64, 0);
        self.file_off = offset;
        self.fill = 0;
        self.unsynced = 0;
    }

    /// File offset the next pushed byte will have.
    pub fn position(&self) -> u64 {
        self.file_off + self.fill as u64
    }

    pub fn push(&mut self, file: &File, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(self.piece - self.fill);
            let at = self.start + self.fill;
            self.storage[at..at + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == self.piece {
                self.write_block(file, self.piece)?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered, zero-padded to an aligned length; returns the
    /// (aligned) offset where the next append starts.
    pub fn finish(&mut self, file: &File) -> io::Result<u64> {
        if self.fill > 0 {
            let padded = self.fill.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
            let (from, to) = (self.start + self.fill, self.start + padded);
            self.storage[from..to].fill(0);
            self.write_block(file, padded)?;
        }
        Ok(self.file_off)
    }

    fn write_block(&mut self, file: &File, len: usize) -> io::Result<()> {
        file.write_all_at(&self.storage[self.start..self.start + len], self.file_off)?;
        self.file_off += len as u64;
        self.fill = 0;
        if self.buffered {
            self.unsynced += len;
            if self.unsynced >= WRITEBACK_EVERY {
                start_writeback(file, self.file_off - self.unsynced as u64, self.unsynced);
                self.unsynced = 0;
            }
        }
        Ok(())
    }
}

/// Huge pages are 2 MiB on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with
/// transparent huge pages, for a large buffer not touched yet. An `O_DIRECT`
/// write pins every page of its buffer for the device; one huge page is pinned
/// at the cost of one small page, and the copies into the buffer miss the TLB
/// 512 times less. Advisory: where THP is off (or `never`), nothing changes.
fn ask_for_huge_pages(buf: &[u8]) {
    let addr = buf.as_ptr() as usize;
    let start = addr.next_multiple_of(HUGE_PAGE);
    let end = (addr + buf.len()) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return;
    }
    // SAFETY: the range lies inside `buf`, which this process owns; the
    // advice changes how its pages are backed, never their contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// A growable byte buffer whose contents start at a [`DIRECT_ALIGN`]-aligned
/// address, so it can be handed to an `O_DIRECT` write as it is.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        // Zeroed allocations come from fresh pages: untouched capacity costs
        // no memory.
        let storage = vec![0u8; capacity + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        ask_for_huge_pages(&storage);
        AlignedBuf {
            storage,
            start,
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.storage.len() - self.start
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let need = self.len + data.len();
        if need > self.capacity() {
            // Rare (a record larger than the usual batch): move to a bigger,
            // again aligned, buffer.
            let mut bigger = AlignedBuf::with_capacity(need.max(self.capacity() * 2));
            bigger.extend_from_slice(self.as_slice());
            *self = bigger;
        }
        let at = self.start + self.len;
        self.storage[at..at + data.len()].copy_from_slice(data);
        self.len = need;
    }

    /// Appends `n` zero bytes.
    pub fn extend_zeros(&mut self, n: usize) {
        let need = self.len + n;
        if need > self.capacity() {
            self.extend_from_slice(&vec![0u8; n]);
            return;
        }
        let at = self.start + self.len;
        self.storage[at..at + n].fill(0);
        self.len = need;
    }
}

/// Creates `path` (emptying it if it exists), open for reading and writing.
pub fn create_empty(path: &std::path::Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
}

/// Opens `path` for `O_DIRECT` writes, if the filesystem allows it.
pub fn open_direct(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// Buffered bulk writes start writeback every this many bytes, so that the
/// closing `fdatasync` is short and does not stall the journal's syncs.
const WRITEBACK_EVERY: usize = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct write the filesystem refuses (here: an unaligned one, which
    /// `O_DIRECT` rejects with `EINVAL`) goes through the page cache, and
    /// says so; an aligned one goes direct.
    #[test]
    fn a_refused_direct_write_lands_through_the_page_cache() {
        // On the checkout's disk: /tmp may be a tmpfs, which refuses
        // O_DIRECT at open. The working directory (the package's, as cargo
        // and nextest run unit tests), not the path compiled in: a test
        // binary cargo reused from a checkout elsewhere names a directory
        // that may not exist here.
        let dir = tempfile::tempdir_in(".").unwrap();
        let path = dir.path().join("f");
        let file = create_empty(&path).unwrap();
        let direct = open_direct(&path).expect("the test directory takes O_DIRECT");
        let mut aligned = AlignedBuf::with_capacity(DIRECT_ALIGN);
        aligned.extend_from_slice(&[1u8; DIRECT_ALIGN]);
        let wrote = write_at_direct(&file, Some(&direct), aligned.as_slice(), 0).unwrap();
        assert_eq!(wrote, Wrote::AsAsked);
        let odd = [2u8; 100];
        let wrote = write_at_direct(&file, Some(&direct), &odd, DIRECT_ALIGN as u64 + 1).unwrap();
        assert_eq!(wrote, Wrote::DirectRefused);
        let wrote = write_at_direct(&file, None, &odd, 0).unwrap();
        assert_eq!(wrote, Wrote::AsAsked);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(&data[..100], &odd[..]);
        assert!(data[100..DIRECT_ALIGN].iter().all(|&b| b == 1));
        assert_eq!(&data[DIRECT_ALIGN + 1..], &odd[..]);
    }

    #[test]
    fn aligned_buf_stays_aligned_when_it_grows() {
        let mut b = AlignedBuf::with_capacity(10);
        b.extend_from_slice(b"hello");
        b.extend_zeros(3);
        b.extend_from_slice(&[7u8; 5000]);
        assert_eq!(b.len(), 5008);
        assert_eq!(&b.as_slice()[..8], b"hello\0\0\0");
        assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_ALIGN, 0);
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn block_writer_pads_and_continues_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_empty(&dir.path().join("f")).unwrap();
        let mut w = BlockWriter::new(8192, true);
        w.reset(4096);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + 1).collect();
        w.push(&file, &data[..100]).unwrap();
        w.push(&file, &data[100..]).unwrap();
        assert_eq!(w.position(), 4096 + 20_000);
        let end = w.finish(&file).unwrap();
        assert_eq!(end, 4096 + 20_480);
        let mut back = vec![0u8; 20_480];
        file.read_exact_at(&mut back, 4096).unwrap();
        assert_eq!(&back[..20_000], &data[..]);
        assert!(back[20_000..].iter().all(|b| *b == 0));
        w.push(&file, b"next").unwrap();
        assert_eq!(w.position(), end + 4);
        w.finish(&file).unwrap();
        let mut next = [0u8; 4];
        file.read_exact_at(&mut next, end).unwrap();
        assert_eq!(&next, b"next");
    }
}
