//! Evaluates every node whose inputs are all constants and replaces it by its value. Exported
//! PyTorch graphs compute padding amounts and reshape targets this way (Shape, Gather,
//! ConstantOfShape, Concat, Reshape, Transpose, Cast, Slice). Subgraphs that read the shape of
//! an activation depend on the batch size and stay in the graph; they cost microseconds per
//! pass because they only touch a handful of integers.

use crate::error::Result;
use crate::graph::Graph;

pub(crate) fn fold_constants(g: &mut Graph) -> Result<()> {
    let mut kept = Vec::with_capacity(g.nodes.len());
    for node in std::mem::take(&mut g.nodes) {
        let all_const = node.inputs.iter().flatten().all(|&v| g.consts[v].is_some());
        if all_const && node.output != g.output {
            let ins: Vec<_> = node
                .inputs
                .iter()
                .map(|i| i.and_then(|v| g.consts[v].as_ref()))
                .collect();
            let t = node.op.forward(&ins).map_err(|e| e.in_node(&node.name))?;
            g.consts[node.output] = Some(t);
        } else {
            kept.push(node);
        }
    }
    g.nodes = kept;
    Ok(())
}
