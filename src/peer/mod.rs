//! Talking to the other members: the peer protocol's frames (`wire`, pure) and the transport
//! that carries them over TCP (`transport`).

pub mod join;
pub mod transport;
pub mod wire;
