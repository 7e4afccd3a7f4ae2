//! The channel mesh between cores: one bounded FIFO channel per ordered pair of cores, built
//! on the main thread before the executors start and handed to each core whole.
//!
//! lode builds this from glommio's shared channels rather than glommio's `MeshBuilder`:
//! `MeshBuilder` keeps its peer list behind an `Rc` that every executor clones and drops
//! concurrently while joining, and the racing reference count corrupted the heap at startup
//! (found by lode's restart tests). Here nothing is shared between threads but the channels
//! themselves, and a core's index is fixed when the mesh is built.

use std::sync::Mutex;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

/// One core's ends of the mesh, not yet connected (they may cross threads).
pub struct CoreEnds<T: Send + 'static> {
    /// This core's index.
    pub core: usize,
    /// To every core (`None` for this one), by index.
    senders: Vec<Option<SharedSender<T>>>,
    /// From every core (`None` for this one), by index.
    receivers: Vec<Option<SharedReceiver<T>>>,
}

/// One core's connected ends: what its router sends with and its message loops read.
pub struct CoreChannels<T: Send + 'static> {
    /// This core's index.
    pub core: usize,
    /// To every core (`None` for this one), by index.
    pub senders: Vec<Option<ConnectedSender<T>>>,
    /// From every other core: the sending core's index and the channel.
    pub receivers: Vec<(usize, ConnectedReceiver<T>)>,
}

/// The ends of every core, taken once each by the executor that runs that core.
pub struct Mesh<T: Send + 'static> {
    cores: Mutex<Vec<Option<CoreEnds<T>>>>,
}

impl<T: Send + 'static> Mesh<T> {
    /// A full mesh of `cores` cores whose channels hold `capacity` messages each.
    pub fn new(cores: usize, capacity: usize) -> Mesh<T> {
        let mut ends: Vec<CoreEnds<T>> = (0..cores)
            .map(|core| CoreEnds {
                core,
                senders: (0..cores).map(|_| None).collect(),
                receivers: (0..cores).map(|_| None).collect(),
            })
            .collect();
        for from in 0..cores {
            for to in 0..cores {
                if from != to {
                    let (sender, receiver) = shared_channel::new_bounded(capacity);
                    ends[from].senders[to] = Some(sender);
                    ends[to].receivers[from] = Some(receiver);
                }
            }
        }
        Mesh {
            cores: Mutex::new(ends.into_iter().map(Some).collect()),
        }
    }

    /// Takes the ends of the lowest-numbered core not yet taken (each executor calls this
    /// once; which executor gets core 0 does not matter). `None` when every core is taken.
    pub fn take_next(&self) -> Option<CoreEnds<T>> {
        let mut cores = self.cores.lock().ok()?;
        cores.iter_mut().find_map(Option::take)
    }
}

impl<T: Send + 'static> CoreEnds<T> {
    /// Connects every channel end on the calling executor. Completes once every other core
    /// has connected its ends too.
    pub async fn connect(self) -> CoreChannels<T> {
        let senders: Vec<_> = self
            .senders
            .into_iter()
            .map(|sender| sender.map(|sender| glommio::spawn_local(sender.connect()).detach()))
            .collect();
        let receivers: Vec<_> = self
            .receivers
            .into_iter()
            .map(|receiver| {
                receiver.map(|receiver| glommio::spawn_local(receiver.connect()).detach())
            })
            .collect();
        let mut connected_senders = Vec::with_capacity(senders.len());
        for sender in senders {
            connected_senders.push(match sender {
                Some(task) => task.await,
                None => None,
            });
        }
        let mut connected_receivers = Vec::with_capacity(receivers.len());
        for (from, receiver) in receivers.into_iter().enumerate() {
            if let Some(task) = receiver {
                if let Some(receiver) = task.await {
                    connected_receivers.push((from, receiver));
                }
            }
        }
        CoreChannels {
            core: self.core,
            senders: connected_senders,
            receivers: connected_receivers,
        }
    }
}
