//! The static graph: values (named, constant or computed), nodes in topological order, one
//! image input and one logits output. Built once by [`GraphBuilder`], which sorts and checks it;
//! optimised once by the load-time passes (`passes`), which [`crate::Model::prepare`] runs;
//! executed by `exec`. This module depends on neither: the passes and the executor build on it.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ops::Op;
use crate::tensor::Tensor;

/// Index of a value in the graph.
pub type ValueId = usize;

/// One operator application.
#[derive(Debug)]
pub struct Node {
    /// The node's name (or its output's name when the file gives none).
    pub name: String,
    /// The operator.
    pub op: Box<dyn Op>,
    /// Positional inputs; `None` for an absent optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// The single output.
    pub output: ValueId,
}

impl Clone for Node {
    fn clone(&self) -> Self {
        Node {
            name: self.name.clone(),
            op: self.op.clone_op(),
            inputs: self.inputs.clone(),
            output: self.output,
        }
    }
}

/// A classifier graph.
#[derive(Debug, Clone)]
pub struct Graph {
    pub(crate) names: Vec<String>,
    pub(crate) consts: Vec<Option<Tensor>>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) input: ValueId,
    pub(crate) output: ValueId,
}

impl Graph {
    /// Name of a value.
    pub fn value_name(&self, v: ValueId) -> &str {
        &self.names[v]
    }
    /// The value with this name, if it exists.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.names.iter().position(|n| n == name)
    }
    /// The nodes, in execution order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// The graph input.
    pub fn input(&self) -> ValueId {
        self.input
    }
    /// The graph output.
    pub fn output(&self) -> ValueId {
        self.output
    }
    /// The constant value `v`, if it is one.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.consts.get(v).and_then(|c| c.as_ref())
    }
    /// Adds a value slot.
    pub(crate) fn new_value(&mut self, name: String, c: Option<Tensor>) -> ValueId {
        self.names.push(name);
        self.consts.push(c);
        self.names.len() - 1
    }
    /// Inserts `ops` (each with optional constant second operands) in front of the input:
    /// `input' → op1 → … → opK → (old input)`. Used to adapt the layout of images and to
    /// apply a normalization the model expects outside its graph.
    pub(crate) fn prepend(&mut self, ops: Vec<(String, Box<dyn Op>, Vec<Tensor>)>) {
        if ops.is_empty() {
            return;
        }
        let old = self.input;
        let new_input = self.new_value(format!("faultline:{}", self.names[old]), None);
        let mut prev = new_input;
        let mut front = Vec::new();
        let k = ops.len();
        for (i, (name, op, operands)) in ops.into_iter().enumerate() {
            let mut inputs = vec![Some(prev)];
            for (j, t) in operands.into_iter().enumerate() {
                inputs.push(Some(
                    self.new_value(format!("faultline:{name}:{j}"), Some(t)),
                ));
            }
            let out = if i + 1 == k {
                old
            } else {
                self.new_value(format!("faultline:{name}"), None)
            };
            front.push(Node {
                name: format!("faultline:{name}"),
                op,
                inputs,
                output: out,
            });
            prev = out;
        }
        front.append(&mut self.nodes);
        self.nodes = front;
        self.input = new_input;
    }
}

/// Collects values and nodes in any order; [`GraphBuilder::build`] sorts and checks.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    names: Vec<String>,
    consts: Vec<Option<Tensor>>,
    by_name: HashMap<String, ValueId>,
    nodes: Vec<Node>,
    input: Option<ValueId>,
}

impl GraphBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }
    /// The value called `name`, created on first mention.
    pub fn value(&mut self, name: &str) -> ValueId {
        if let Some(&v) = self.by_name.get(name) {
            return v;
        }
        self.names.push(name.to_string());
        self.consts.push(None);
        let v = self.names.len() - 1;
        self.by_name.insert(name.to_string(), v);
        v
    }
    /// True when a value of that name has been mentioned.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
    /// Declares the image input.
    pub fn input(&mut self, name: &str) -> ValueId {
        let v = self.value(name);
        self.input = Some(v);
        v
    }
    /// Declares a constant (an initializer or a Constant node's value).
    pub fn constant(&mut self, name: &str, t: Tensor) -> ValueId {
        let v = self.value(name);
        self.consts[v] = Some(t);
        v
    }
    /// The constant value of `name`, if it is one already.
    pub fn constant_value(&self, name: &str) -> Option<&Tensor> {
        self.by_name
            .get(name)
            .and_then(|&v| self.consts[v].as_ref())
    }
    /// Adds a node computing `output` from `inputs` (names; `None` for absent optional inputs).
    pub fn node(
        &mut self,
        name: &str,
        op: Box<dyn Op>,
        inputs: &[Option<&str>],
        output: &str,
    ) -> ValueId {
        let ins = inputs.iter().map(|i| i.map(|n| self.value(n))).collect();
        let out = self.value(output);
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: ins,
            output: out,
        });
        out
    }
    /// Sorts the nodes topologically and checks that every value is defined, that no value is
    /// produced twice, that there is no cycle and that the output is computed (not a constant).
    ///
    /// The graph is returned as written: constant folding, BatchNormalization folding, pruning,
    /// Conv fusion and weight packing are load-time passes that [`crate::Model::prepare`] runs
    /// (once), so the nodes of a built graph are the ones added here.
    pub fn build(self, output: &str) -> Result<Graph> {
        let input = self
            .input
            .ok_or_else(|| Error::Graph("no input declared".into()))?;
        let output = *self
            .by_name
            .get(output)
            .ok_or_else(|| Error::Graph(format!("output '{output}' is never produced")))?;
        let mut g = Graph {
            names: self.names,
            consts: self.consts,
            nodes: self.nodes,
            input,
            output,
        };
        topo_sort(&mut g)?;
        if g.consts[g.output].is_some() {
            return Err(Error::Graph(
                "the output does not depend on the input".into(),
            ));
        }
        Ok(g)
    }
}

/// Kahn's algorithm; errors name an undefined value or report a cycle.
fn topo_sort(g: &mut Graph) -> Result<()> {
    let n = g.names.len();
    let mut producer = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        if producer[node.output].replace(i).is_some() {
            return Err(Error::Graph(format!(
                "value '{}' is produced twice",
                g.names[node.output]
            )));
        }
    }
    let defined = |v: ValueId, producer: &[Option<usize>]| {
        v == g.input || g.consts[v].is_some() || producer[v].is_some()
    };
    for node in &g.nodes {
        for &v in node.inputs.iter().flatten() {
            if !defined(v, &producer) {
                return Err(Error::Graph(format!(
                    "node '{}' ({}) reads '{}', which no node, initializer or input defines",
                    node.name,
                    node.op.name(),
                    g.names[v]
                )));
            }
        }
    }
    let mut indeg: Vec<usize> = g
        .nodes
        .iter()
        .map(|node| {
            node.inputs
                .iter()
                .flatten()
                .filter(|&&v| producer[v].is_some())
                .count()
        })
        .collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        for &v in node.inputs.iter().flatten() {
            if let Some(p) = producer[v] {
                users[p].push(i);
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..g.nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(g.nodes.len());
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() != g.nodes.len() {
        return Err(Error::Graph("the graph has a cycle".into()));
    }
    let mut slots: Vec<Option<Node>> = std::mem::take(&mut g.nodes).into_iter().map(Some).collect();
    g.nodes = order.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok(())
}
