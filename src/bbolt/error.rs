use std::fmt;

/// Where a page lives: a real page id, or the inline page stored in a bucket value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageLoc {
    Id(u64),
    Inline,
}

impl fmt::Display for PageLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageLoc::Id(id) => write!(f, "page {id}"),
            PageLoc::Inline => write!(f, "inline page"),
        }
    }
}

/// Why a meta page was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("meta page lies beyond the end of the file")]
    Truncated,
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported version {0}")]
    BadVersion(u32),
    #[error("checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    BadChecksum { stored: u64, computed: u64 },
    #[error("unsupported or inconsistent page size {0}")]
    BadPageSize(u32),
    #[error("invalid field: {0}")]
    BadField(&'static str),
}

/// Every error this crate returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("file too small to be a bbolt database ({len} bytes)")]
    FileTooSmall { len: usize },
    #[error("no valid meta page (meta 0: {meta0}; meta 1: {meta1})")]
    NoValidMeta { meta0: MetaError, meta1: MetaError },
    #[error("file truncated: meta says {pages} pages of {page_size} bytes, file has {len} bytes")]
    Truncated {
        pages: u64,
        page_size: u32,
        len: usize,
    },
    #[error("page {id} out of bounds (high-water mark {max})")]
    PageOutOfBounds { id: u64, max: u64 },
    #[error("page {id}: header carries id {found}")]
    PageIdMismatch { id: u64, found: u64 },
    #[error("{page}: unexpected page flags {flags:#06x}, expected {expected}")]
    UnexpectedPageType {
        page: PageLoc,
        flags: u16,
        expected: &'static str,
    },
    #[error("{page}: {what}")]
    CorruptPage { page: PageLoc, what: &'static str },
    #[error("page {id} is referenced more than once (cycle or shared page)")]
    PageReferencedTwice { id: u64 },
    #[error("{page}: keys are not in strictly ascending order")]
    KeyOrder { page: PageLoc },
    #[error("invalid bucket value: {0}")]
    BadBucketValue(&'static str),
    #[error("entry is not a bucket")]
    NotABucket,
    #[error("buckets nested deeper than {0} levels")]
    TooDeep(u32),
    #[error("more entries than the file can hold (overlapping data)")]
    TooManyEntries,
    #[error("freelist: {what} (page {id})")]
    BadFreelist { what: &'static str, id: u64 },
    #[error("page {id} is neither reachable nor free")]
    UnreachablePage { id: u64 },
    #[error("page {id} is both reachable and free")]
    ReachableFreed { id: u64 },
    #[error("invalid writer input: {0}")]
    InvalidInput(String),
    #[error("snapshot has no sha256 trailer (length {len} is not 32 mod 512)")]
    MissingSnapshotHash { len: usize },
    #[error("snapshot sha256 mismatch")]
    SnapshotHashMismatch {
        expected: [u8; 32],
        actual: [u8; 32],
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
