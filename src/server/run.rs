//! What every executor of the `lode` process runs (`run_core`): a core of the node
//! (`node::run_node`) with etcd's front ends on its listeners: the gRPC services installed for
//! the core's handlers, every client connection told apart by `listener`, and the metrics
//! listeners served by `http`. The one place that knows both the node and its front ends.

use std::rc::Rc;

use super::node::{run_node, Bound, Node, NodeConfig};
use crate::shard::mesh::CoreEnds;
use crate::shard::CoreMessage;

/// Runs one core of the node until shutdown, serving clients on it.
pub async fn run_core(
    config: NodeConfig,
    ends: CoreEnds<CoreMessage>,
    cores: usize,
) -> Result<(), String> {
    let limits = config.limits;
    let serve = move |node: &Rc<Node>, listeners: Bound, metrics_listeners: Bound| {
        super::grpc::install(node.clone(), limits);
        super::dashboard::start(node);
        for (listener, listen) in listeners {
            glommio::spawn_local(super::listener::serve(
                listener,
                listen,
                node.clone(),
                limits,
            ))
            .detach();
        }
        for (listener, listen) in metrics_listeners {
            glommio::spawn_local(super::http::serve_monitoring(
                listener,
                listen,
                node.clone(),
            ))
            .detach();
        }
    };
    run_node(config, ends, cores, serve).await
}
