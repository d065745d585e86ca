//! Time per graph node, for finding where a model's passes spend their time (`faultline bench
//! --profile`). Off by default; while off, a node costs one relaxed atomic load. While on, each
//! node's forward and backward calls are timed and summed per node and direction.
//! The table is process-wide: a profile taken while other passes run counts theirs too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Vec<NodeTime>> = Mutex::new(Vec::new());

/// The summed time of one node in one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// The node's name.
    pub node: String,
    /// Its operator (ONNX name, or the engine's fused name).
    pub op: &'static str,
    /// `false`: forward calls; `true`: backward (vector-Jacobian) calls.
    pub backward: bool,
    /// How many calls were timed.
    pub calls: u64,
    /// Their summed wall time.
    pub time: Duration,
}

/// Starts (or restarts, clearing the table) timing every node.
pub fn start() {
    TABLE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ON.store(true, Ordering::Relaxed);
}

/// Stops timing and returns the table, in the order the nodes were first timed.
pub fn stop() -> Vec<NodeTime> {
    ON.store(false, Ordering::Relaxed);
    std::mem::take(&mut *TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, adding its time to `node`'s row when profiling is on.
pub(crate) fn timed<R>(node: &str, op: &'static str, backward: bool, f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t0 = Instant::now();
    let r = f();
    let dt = t0.elapsed();
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match table
        .iter_mut()
        .find(|e| e.backward == backward && e.node == node)
    {
        Some(e) => {
            e.calls += 1;
            e.time += dt;
        }
        None => table.push(NodeTime {
            node: node.to_string(),
            op,
            backward,
            calls: 1,
            time: dt,
        }),
    }
    r
}
