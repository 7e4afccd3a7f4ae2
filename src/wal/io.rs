//! The file seam of the log: the only place the log touches the operating system.
//!
//! [`LogDir`] and [`SegmentFile`] are what the log needs from a directory and its segment
//! files. [`DmaDir`] implements them with glommio (io_uring, O_DIRECT writes) and read-only
//! memory maps; `sim::SimDir` implements them in memory with a crash model for tests.
//!
//! Coherence between direct-I/O writes and mapped reads: the log only asks
//! [`SegmentFile::read_stable`] for bytes that no later write touches (whole pages below the
//! durable end; the partial last page is served from memory by the writer). Mappings are
//! advised `MADV_RANDOM` so the kernel does not read ahead into pages a later write replaces,
//! and recovery scans through a temporary mapping that is dropped, with its cached pages past
//! the durable end released, before any write.

#![allow(async_fn_in_trait)]

use std::cell::OnceCell;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{Directory, DmaFile, OpenOptions};

use super::format::{align_down, PAGE_SIZE};

/// A directory holding one log.
pub trait LogDir {
    /// Its segment files.
    type File: SegmentFile;

    /// Path of the directory, for messages.
    fn path(&self) -> &Path;

    /// Names of the entries in the directory (files and anything else).
    fn list(&self) -> io::Result<Vec<String>>;

    /// Opens an existing segment for reading and writing.
    async fn open_segment(&self, name: &str) -> io::Result<Self::File>;

    /// Creates a new file of `size` bytes, preallocated (its bytes read as zeros). Fails if
    /// `name` exists. Nothing is synced.
    async fn create_segment(&self, name: &str, size: u64) -> io::Result<Self::File>;

    /// Waits a moment between chunks of background writes, leaving the disk to the commit path.
    async fn pause_background(&self);

    /// Renames a file within the directory (not durable until [`LogDir::sync_dir`]).
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file (not durable until [`LogDir::sync_dir`]).
    async fn remove(&self, name: &str) -> io::Result<()>;

    /// Makes creations, renames and removals durable.
    async fn sync_dir(&self) -> io::Result<()>;
}

/// Which half of a write-and-sync failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteSyncError {
    /// The write (nothing of it is durable).
    #[error("write failed: {0}")]
    Write(io::Error),
    /// The fdatasync after a whole write (what was written may or may not be durable).
    #[error("fdatasync failed: {0}")]
    Sync(io::Error),
}

/// `file.write_at` and then `file.sync_data`, one after the other.
async fn write_then_sync<F: SegmentFile + ?Sized>(
    file: &F,
    data: &[u8],
    offset: u64,
) -> Result<(), WriteSyncError> {
    file.write_at(data, offset)
        .await
        .map_err(WriteSyncError::Write)?;
    file.sync_data().await.map_err(WriteSyncError::Sync)
}

/// One segment file.
pub trait SegmentFile {
    /// Size of the file in bytes.
    fn size(&self) -> u64;

    /// Writes `data` at `offset`; both are multiples of [`PAGE_SIZE`]. Not durable until
    /// [`SegmentFile::sync_data`].
    async fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every completed write durable (fdatasync).
    async fn sync_data(&self) -> io::Result<()>;

    /// Writes `data` at `offset` (as `write_at`) and makes it durable (as `sync_data`); a file
    /// on a real disk does both in one io_uring write with `RWF_DSYNC`, which completes once
    /// the data is durable (the file system flushes the device's cache from the write's
    /// completion, or writes with FUA), so a commit costs one request and one completion.
    async fn write_and_sync(&self, data: &[u8], offset: u64) -> Result<(), WriteSyncError> {
        write_then_sync(self, data, offset).await
    }

    /// Writes `len` zero bytes at `offset` (page multiples): a preallocated block that was
    /// written once is overwritten later without extent conversion in the journal.
    async fn write_zeros(&self, offset: u64, len: usize) -> io::Result<()>;

    /// Zero-copy view of `len` bytes at `offset`. The caller guarantees no later write touches
    /// them.
    fn read_stable(&self, offset: u64, len: usize) -> io::Result<Bytes>;

    /// The whole file, for a recovery scan; the view is dropped before the next write.
    fn read_for_scan(&self) -> io::Result<Bytes>;

    /// Drops cached pages from `offset` to the end: the region later writes will overwrite.
    fn release_cache_from(&self, offset: u64);
}

/// A log directory on a real file system, written with io_uring direct I/O.
pub struct DmaDir {
    path: PathBuf,
    directory: Directory,
    _lock: fs::File,
    /// Fault injection for tests: a file holding how many milliseconds every fdatasync of a
    /// segment waits first.
    sync_delay: Option<Rc<Path>>,
}

/// Environment variable naming a file that injects a fault into every log fdatasync while it
/// exists: a number of milliseconds is added to each (a slow disk, or one that hangs), `eio`
/// makes each fail with EIO (a dying disk), and `enospc` makes every write to a segment and
/// every segment's preallocation fail with ENOSPC (a full disk; removing the file frees the
/// space), switched on and off while lode runs, for tests. Unset in production.
pub const SYNC_DELAY_ENV: &str = "LODE_FAULT_SYNC_DELAY_FILE";

/// What the fault file asks of a sync now.
enum SyncFault {
    Delay(std::time::Duration),
    Fail,
    NoSpace,
}

fn injected_sync_fault(file: &Path) -> Option<SyncFault> {
    let text = fs::read_to_string(file).ok()?;
    let text = text.trim();
    if text == "eio" {
        return Some(SyncFault::Fail);
    }
    if text == "enospc" {
        return Some(SyncFault::NoSpace);
    }
    let millis: u64 = text.parse().ok()?;
    Some(SyncFault::Delay(std::time::Duration::from_millis(millis)))
}

/// ENOSPC when the fault file says the disk is full.
fn injected_no_space(file: Option<&Path>) -> io::Result<()> {
    match file.and_then(injected_sync_fault) {
        Some(SyncFault::NoSpace) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        _ => Ok(()),
    }
}

/// Name of the lock file that keeps a second process out of a log directory.
pub const LOCK_FILE: &str = "LOCK";

impl DmaDir {
    /// Opens `path`, which must be an existing directory, and locks it against other processes.
    pub async fn open(path: &Path) -> io::Result<DmaDir> {
        // glommio resolves relative paths against an invalid descriptor: make them absolute.
        let path = &fs::canonicalize(path)?;
        let meta = fs::metadata(path)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            return Err(io::Error::last_os_error());
        }
        let directory = Directory::open(path).await.map_err(io::Error::from)?;
        let sync_delay: Option<Rc<Path>> =
            std::env::var_os(SYNC_DELAY_ENV).map(|file| Rc::from(PathBuf::from(file).as_path()));
        if let Some(file) = &sync_delay {
            tracing::warn!(file = %file.display(), "fault injection: log fdatasyncs are delayed by what this file says");
        }
        Ok(DmaDir {
            sync_delay,
            path: path.to_path_buf(),
            directory,
            _lock: lock,
        })
    }
}

impl LogDir for DmaDir {
    type File = DmaSegment;

    fn path(&self) -> &Path {
        &self.path
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    async fn open_segment(&self, name: &str) -> io::Result<DmaSegment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(self.path.join(name))
            .await
            .map_err(io::Error::from)?;
        let size = fs::metadata(self.path.join(name))?.len();
        Ok(DmaSegment::new(file, size, self.sync_delay.clone()))
    }

    async fn create_segment(&self, name: &str, size: u64) -> io::Result<DmaSegment> {
        injected_no_space(self.sync_delay.as_deref())?;
        let path = self.path.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(&path)
            .await
            .map_err(io::Error::from)?;
        if let Err(error) = file.pre_allocate(size, false).await {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(io::Error::from(error));
        }
        Ok(DmaSegment::new(file, size, self.sync_delay.clone()))
    }

    async fn pause_background(&self) {
        glommio::timer::sleep(BACKGROUND_WRITE_PAUSE).await;
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        glommio::io::rename(self.path.join(from), self.path.join(to))
            .await
            .map_err(io::Error::from)
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        glommio::io::remove(self.path.join(name))
            .await
            .map_err(io::Error::from)
    }

    async fn sync_dir(&self) -> io::Result<()> {
        self.directory.sync().await.map_err(io::Error::from)
    }
}

/// Pause between chunks of background writes (segment zero-fill, snapshots): a 64 MiB burst
/// queued at once delays every fdatasync behind it (measured: 256-client puts fell by half).
pub const BACKGROUND_WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(16);

/// Chunk of background writes.
pub const BACKGROUND_WRITE_CHUNK: usize = 256 << 10;

/// Preallocates `size` bytes and writes zeros over them at once (the disk probe's file).
pub(crate) async fn zero_fill(file: &DmaFile, size: u64) -> io::Result<()> {
    const CHUNK: u64 = 256 << 10;
    file.pre_allocate(size, false)
        .await
        .map_err(io::Error::from)?;
    let mut offset = 0;
    while offset < size {
        let len = CHUNK.min(size - offset) as usize;
        write_zeros(file, offset, len).await?;
        offset += len as u64;
    }
    Ok(())
}

/// Writes `len` zero bytes at `offset` with direct I/O.
async fn write_zeros(file: &DmaFile, offset: u64, len: usize) -> io::Result<()> {
    let mut buffer = file.alloc_dma_buffer(len);
    buffer.as_bytes_mut().fill(0);
    let written = file
        .write_at(buffer, offset)
        .await
        .map_err(io::Error::from)?;
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "short write while zero-filling a segment",
        ));
    }
    Ok(())
}

/// A segment file written with O_DIRECT and read through a read-only memory map.
pub struct DmaSegment {
    file: DmaFile,
    size: u64,
    map: OnceCell<Bytes>,
    sync_delay: Option<Rc<Path>>,
}

impl DmaSegment {
    fn new(file: DmaFile, size: u64, sync_delay: Option<Rc<Path>>) -> DmaSegment {
        DmaSegment {
            file,
            size,
            map: OnceCell::new(),
            sync_delay,
        }
    }

    fn map_whole(&self, advice: memmap2::Advice) -> io::Result<Bytes> {
        let len = usize::try_from(self.size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        // SAFETY: segment files are never truncated or shrunk while the log has them open
        // (they are only removed, which keeps mapped pages valid), and the log reads only
        // bytes that no later write changes, so the mapped memory behaves as immutable.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(len)
                .map(self.file.as_raw_fd())?
        };
        map.advise(advice)?;
        Ok(Bytes::from_owner(map))
    }

    /// `data` in a buffer direct I/O can write from.
    fn dma_copy(&self, data: &[u8]) -> glommio::io::DmaBuffer {
        let mut buffer = self.file.alloc_dma_buffer(data.len());
        buffer.as_bytes_mut().copy_from_slice(data);
        buffer
    }
}

/// A write of `wanted` bytes that wrote `written`: an error unless it wrote them all.
fn whole_write(written: usize, wanted: usize) -> io::Result<()> {
    if written == wanted {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {written} of {wanted} bytes"),
        ))
    }
}

impl SegmentFile for DmaSegment {
    fn size(&self) -> u64 {
        self.size
    }

    async fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        debug_assert_eq!(offset % PAGE_SIZE, 0);
        debug_assert_eq!(data.len() as u64 % PAGE_SIZE, 0);
        injected_no_space(self.sync_delay.as_deref())?;
        let written = self
            .file
            .write_at(self.dma_copy(data), offset)
            .await
            .map_err(io::Error::from)?;
        whole_write(written, data.len())
    }

    async fn sync_data(&self) -> io::Result<()> {
        match self.sync_delay.as_deref().and_then(injected_sync_fault) {
            Some(SyncFault::Delay(delay)) => glommio::timer::sleep(delay).await,
            Some(SyncFault::Fail) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(SyncFault::NoSpace) | None => {}
        }
        self.file.fdatasync().await.map_err(io::Error::from)
    }

    async fn write_and_sync(&self, data: &[u8], offset: u64) -> Result<(), WriteSyncError> {
        if self.sync_delay.is_some() {
            // Faults are injected between the two halves: keep them apart.
            return write_then_sync(self, data, offset).await;
        }
        debug_assert_eq!(offset % PAGE_SIZE, 0);
        debug_assert_eq!(data.len() as u64 % PAGE_SIZE, 0);
        let written = self
            .file
            .write_at_data_sync(self.dma_copy(data), offset)
            .await
            .map_err(|error| {
                let error = io::Error::from(error);
                // A full disk refuses the write before any of it reaches the disk; any other
                // failure may have come from the flush, so it counts as a failed sync.
                if error.raw_os_error() == Some(libc::ENOSPC) {
                    WriteSyncError::Write(error)
                } else {
                    WriteSyncError::Sync(error)
                }
            })?;
        whole_write(written, data.len()).map_err(WriteSyncError::Write)
    }

    async fn write_zeros(&self, offset: u64, len: usize) -> io::Result<()> {
        injected_no_space(self.sync_delay.as_deref())?;
        write_zeros(&self.file, offset, len).await
    }

    fn read_stable(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let map = match self.map.get() {
            Some(map) => map,
            None => {
                let map = self.map_whole(memmap2::Advice::Random)?;
                self.map.get_or_init(|| map)
            }
        };
        let start = offset as usize;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= map.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past segment"))?;
        Ok(map.slice(start..end))
    }

    fn read_for_scan(&self) -> io::Result<Bytes> {
        self.map_whole(memmap2::Advice::Sequential)
    }

    fn release_cache_from(&self, offset: u64) {
        let start = align_down(offset, PAGE_SIZE);
        // SAFETY: advisory call on a descriptor we own. A failure only leaves clean pages
        // cached, which the kernel also drops when the next direct write covers them.
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                start as libc::off_t,
                (self.size - start) as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }
}
