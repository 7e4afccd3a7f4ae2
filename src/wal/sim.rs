//! A simulated disk for deterministic tests of the log: the seam's other implementation.
//!
//! It models what survives a crash: file contents become durable at `sync_data`, directory
//! entries (creations, renames, removals) at `sync_dir`. [`SimDisk::crash_image`] builds the
//! disk a restarted process would find, under one of three [`CrashModel`]s. Faults are injected
//! by operation count: the disk "dies" before operation N (every later operation fails), or a
//! chosen `sync_data` reports EIO; and by state: a full disk (creating files fails with ENOSPC,
//! or every write does, as the server's `enospc` fault makes them), which a crash keeps.
//!
//! Operations complete without suspending, so a simple executor drives the log deterministically.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::io::{LogDir, SegmentFile};

/// Sector size of the simulated device: the unit that a torn write keeps or loses.
pub const SECTOR_SIZE: usize = 512;

/// What a crash keeps of the writes that were not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashModel {
    /// Only synced bytes survive (power loss with a volatile cache that lost everything).
    SyncedOnly,
    /// Every completed write survives (a process crash: the kernel had the data).
    AllWritten,
    /// Each unsynced sector independently survives or not, chosen by the seed (power loss
    /// with a device that reorders).
    Torn(u64),
}

#[derive(Clone, Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    dirty_sectors: BTreeSet<usize>,
}

#[derive(Default)]
struct DiskState {
    files: Vec<FileData>,
    names: BTreeMap<String, usize>,
    durable_names: BTreeMap<String, usize>,
    operations: u64,
    die_before: Option<u64>,
    dead: bool,
    fail_sync_at: Option<u64>,
    full: bool,
    no_space: bool,
}

impl DiskState {
    /// Counts one crash point; fails if the disk is (now) dead.
    fn step(&mut self) -> io::Result<u64> {
        if self.dead {
            return Err(dead());
        }
        let number = self.operations;
        self.operations += 1;
        if self.die_before == Some(number) {
            self.dead = true;
            return Err(dead());
        }
        Ok(number)
    }

    fn file(&self, name: &str) -> io::Result<usize> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file")))
    }
}

fn dead() -> io::Error {
    io::Error::other("simulated crash: the disk is gone")
}

/// Returns `Pending` once (waking itself), then `Ready`.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// A simulated disk shared by the log under test and the test itself.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Rc<RefCell<DiskState>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A directory view of this disk for the log.
    pub fn dir(&self) -> SimDir {
        SimDir {
            disk: self.clone(),
            path: PathBuf::from("/sim"),
        }
    }

    /// Crash points (writes, syncs, creations, renames, removals) performed so far.
    pub fn operations(&self) -> u64 {
        self.state.borrow().operations
    }

    /// The disk dies before crash point `operation`: it and every later operation fail.
    pub fn die_before(&self, operation: u64) {
        self.state.borrow_mut().die_before = Some(operation);
    }

    /// Crash point `operation`, if it is a `sync_data`, reports EIO (the disk stays alive).
    pub fn fail_sync_at(&self, operation: u64) {
        self.state.borrow_mut().fail_sync_at = Some(operation);
    }

    /// While `full`, creating a segment fails with ENOSPC (writes into segments that exist
    /// still succeed: their space was allocated when they were made).
    pub fn set_full(&self, full: bool) {
        self.state.borrow_mut().full = full;
    }

    /// While `no_space`, creating a segment and every write fail with ENOSPC before changing
    /// anything, as the server's `enospc` fault (`wal::io`) makes them: a disk with no room at
    /// all.
    pub fn set_no_space(&self, no_space: bool) {
        self.state.borrow_mut().no_space = no_space;
    }

    /// False while the disk is full ([`SimDisk::set_full`] or [`SimDisk::set_no_space`]).
    pub fn has_room(&self) -> bool {
        let state = self.state.borrow();
        !state.full && !state.no_space
    }

    /// The disk a restarted process finds after a crash now (still full if it was).
    pub fn crash_image(&self, model: CrashModel) -> SimDisk {
        let state = self.state.borrow();
        let mut rng = match model {
            CrashModel::Torn(seed) => seed | 1,
            _ => 1,
        };
        let mut files = Vec::new();
        let mut names = BTreeMap::new();
        for (name, &id) in &state.durable_names {
            let data = &state.files[id];
            let mut content = data.durable.clone();
            content.resize(data.current.len().max(content.len()), 0);
            for &sector in &data.dirty_sectors {
                let keep = match model {
                    CrashModel::SyncedOnly => false,
                    CrashModel::AllWritten => true,
                    CrashModel::Torn(_) => {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng & 1 == 1
                    }
                };
                if keep {
                    let start = sector * SECTOR_SIZE;
                    let end = (start + SECTOR_SIZE).min(data.current.len());
                    content[start..end].copy_from_slice(&data.current[start..end]);
                }
            }
            names.insert(name.clone(), files.len());
            files.push(FileData {
                current: content.clone(),
                durable: content,
                dirty_sectors: BTreeSet::new(),
            });
        }
        SimDisk {
            state: Rc::new(RefCell::new(DiskState {
                files,
                durable_names: names.clone(),
                names,
                full: state.full,
                no_space: state.no_space,
                ..DiskState::default()
            })),
        }
    }

    /// Names of the files, durable or not.
    pub fn file_names(&self) -> Vec<String> {
        self.state.borrow().names.keys().cloned().collect()
    }

    /// Places a file durably (for tests that plant foreign files).
    pub fn put_file(&self, name: &str, content: &[u8]) {
        let mut state = self.state.borrow_mut();
        let id = state.files.len();
        state.files.push(FileData {
            current: content.to_vec(),
            durable: content.to_vec(),
            dirty_sectors: BTreeSet::new(),
        });
        state.names.insert(name.to_string(), id);
        state.durable_names.insert(name.to_string(), id);
    }

    /// Changes a file's content durably (for tests that damage files).
    pub fn edit_file(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut state = self.state.borrow_mut();
        let Some(&id) = state.names.get(name) else {
            panic!("edit_file: no file {name}");
        };
        let data = &mut state.files[id];
        edit(&mut data.current);
        data.durable = data.current.clone();
        data.dirty_sectors.clear();
    }

    /// A file's current content.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        state
            .names
            .get(name)
            .map(|&id| state.files[id].current.clone())
    }
}

/// The log directory view of a [`SimDisk`].
pub struct SimDir {
    disk: SimDisk,
    path: PathBuf,
}

/// A file on a [`SimDisk`].
pub struct SimFile {
    disk: SimDisk,
    id: usize,
    size: u64,
}

impl LogDir for SimDir {
    type File = SimFile;

    fn path(&self) -> &Path {
        &self.path
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let state = self.disk.state.borrow();
        if state.dead {
            return Err(dead());
        }
        Ok(state.names.keys().cloned().collect())
    }

    async fn open_segment(&self, name: &str) -> io::Result<SimFile> {
        let state = self.disk.state.borrow();
        if state.dead {
            return Err(dead());
        }
        let id = state.file(name)?;
        Ok(SimFile {
            disk: self.disk.clone(),
            id,
            size: state.files[id].current.len() as u64,
        })
    }

    async fn create_segment(&self, name: &str, size: u64) -> io::Result<SimFile> {
        let mut state = self.disk.state.borrow_mut();
        state.step()?;
        if state.full || state.no_space {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if state.names.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        let id = state.files.len();
        state.files.push(FileData {
            current: vec![0; size as usize],
            durable: vec![0; size as usize],
            dirty_sectors: BTreeSet::new(),
        });
        state.names.insert(name.to_string(), id);
        Ok(SimFile {
            disk: self.disk.clone(),
            id,
            size,
        })
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.disk.state.borrow_mut();
        state.step()?;
        let id = state.file(from)?;
        state.names.remove(from);
        state.names.insert(to.to_string(), id);
        Ok(())
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.disk.state.borrow_mut();
        state.step()?;
        state.file(name)?;
        state.names.remove(name);
        Ok(())
    }

    async fn pause_background(&self) {}

    async fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.disk.state.borrow_mut();
        state.step()?;
        state.durable_names = state.names.clone();
        Ok(())
    }
}

impl SegmentFile for SimFile {
    fn size(&self) -> u64 {
        self.size
    }

    async fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        // Like a real device, the write takes a turn: other tasks run meanwhile.
        YieldOnce(false).await;
        let mut state = self.disk.state.borrow_mut();
        state.step()?;
        if state.no_space {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let file = &mut state.files[self.id];
        let start = offset as usize;
        let end = start + data.len();
        if end > file.current.len() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        file.current[start..end].copy_from_slice(data);
        for sector in start / SECTOR_SIZE..end.div_ceil(SECTOR_SIZE) {
            file.dirty_sectors.insert(sector);
        }
        Ok(())
    }

    async fn sync_data(&self) -> io::Result<()> {
        YieldOnce(false).await;
        let mut state = self.disk.state.borrow_mut();
        let number = state.step()?;
        if state.fail_sync_at == Some(number) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let file = &mut state.files[self.id];
        let FileData {
            current,
            durable,
            dirty_sectors,
        } = file;
        for sector in std::mem::take(dirty_sectors) {
            let start = sector * SECTOR_SIZE;
            let end = (start + SECTOR_SIZE).min(current.len());
            durable[start..end].copy_from_slice(&current[start..end]);
        }
        Ok(())
    }

    async fn write_zeros(&self, offset: u64, len: usize) -> io::Result<()> {
        self.write_at(&vec![0u8; len], offset).await
    }

    fn read_stable(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let state = self.disk.state.borrow();
        let content = &state.files[self.id].current;
        let start = offset as usize;
        content
            .get(start..start + len)
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past file"))
    }

    fn read_for_scan(&self) -> io::Result<Bytes> {
        let state = self.disk.state.borrow();
        if state.dead {
            return Err(dead());
        }
        Ok(Bytes::copy_from_slice(&state.files[self.id].current))
    }

    fn release_cache_from(&self, _offset: u64) {}
}
