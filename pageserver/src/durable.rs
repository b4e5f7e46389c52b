//! The two durability primitives every file of the page server goes
//! through. A failed fsync ends the process: after one the kernel may have
//! dropped the dirty pages and marked them clean, so a retry would "succeed"
//! over lost data (the PostgreSQL fsyncgate lesson). The process restarts
//! from its manifest and the log instead.

use std::fs::File;
use std::path::Path;

use crate::error::{PageServerError, Result};

/// Aborts the process if an fsync failed.
pub fn must_sync(result: std::io::Result<()>, path: &Path) {
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "fsync failed; aborting");
        std::process::abort();
    }
}

/// Makes a file's data and metadata durable.
pub fn sync_file(file: &File, path: &Path) {
    must_sync(file.sync_all(), path);
}

/// Makes the entries of directory `dir` (creations, renames, deletions)
/// durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(PageServerError::io(format!(
        "opening directory {}",
        dir.display()
    )))?;
    must_sync(d.sync_all(), dir);
    Ok(())
}
