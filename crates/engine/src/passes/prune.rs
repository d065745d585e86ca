//! Drops nodes whose outputs the graph output does not depend on (and constants nobody reads),
//! so that unused branches cost nothing.

use crate::graph::Graph;

pub(crate) fn prune(g: &mut Graph) {
    let mut live = vec![false; g.names.len()];
    live[g.output] = true;
    for node in g.nodes.iter().rev() {
        if live[node.output] {
            for &v in node.inputs.iter().flatten() {
                live[v] = true;
            }
        }
    }
    g.nodes.retain(|n| live[n.output]);
    for (v, c) in g.consts.iter_mut().enumerate() {
        if !live[v] {
            *c = None;
        }
    }
}
