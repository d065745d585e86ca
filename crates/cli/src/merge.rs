//! `faultline merge`: joins the run directories of a sharded run, then runs the shards' command
//! again on the joined directory so that it recomputes every aggregate from the records.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use faultline::run::merge::{self, MergeConfig};

/// Arguments of `faultline merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' run directories (`--shard 1/N` … `N/N` of one command), in any order
    #[arg(required = true, value_name = "DIR")]
    pub shards: Vec<PathBuf>,
    /// Directory for the joined run (what the unsharded run would have written)
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace a run already in --out
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: &MergeArgs) -> Result<()> {
    // Absolute paths: the command runs again in the shards' working directory.
    let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let cfg = MergeConfig {
        shards: a.shards.iter().map(abs).collect(),
        out: abs(&a.out),
        overwrite: a.overwrite,
    };
    let merged = merge::run(&cfg)?;
    eprintln!(
        "merge: {} shards of `{}` ({} samples) joined in {}; recomputing the results",
        merged.shards,
        merged.command,
        merged.samples,
        cfg.out.display()
    );
    let args = merged.invocation.unsharded(&cfg.out);
    std::env::set_current_dir(&merged.invocation.cwd).with_context(|| {
        format!(
            "the shards ran in {}, which relative paths of their command line need",
            merged.invocation.cwd.display()
        )
    })?;
    crate::run_args(&args)
}
