//! Building glommio executors the way lode needs them.
//!
//! glommio registers 10 MiB of I/O buffers by default, more than the common 8 MiB memlock
//! limit, and then only warns. lode sizes the registration explicitly below that limit.

use glommio::{LocalExecutorBuilder, Placement};

/// Bytes of I/O buffer memory each executor registers with io_uring.
pub const IO_MEMORY_BYTES: usize = 2 << 20;

/// A builder for one executor with lode's settings; `Placement::Unbound` leaves the thread to
/// the OS scheduler, `Placement::Fixed(core)` pins it.
pub fn builder(placement: Placement) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(placement).io_memory(IO_MEMORY_BYTES)
}
