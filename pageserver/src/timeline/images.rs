//! Page images in delta layers: which pages get one when a layer is
//! written, and building them.
//!
//! A page gets an image at its last LSN in the layer once the records
//! piled on it since its last image (or `Init`/`FullImage`) reach the
//! limit, so a rebuild never replays many more than that. The counts live
//! in memory; a page this process has not counted (after a restart) is
//! taken to be due, which costs one image and keeps the bound.
//!
//! An image is taken from the newest-page cache when it holds the page's
//! version at that LSN (a flush follows its layer by about a second, so a
//! cached page usually still has it). Otherwise it is rebuilt from the
//! layer map the flush started with (which still holds the layer being
//! written, as a frozen in-memory layer), on a few scoped threads. Reading
//! those chains from older layer files was the bulk of a flush's CPU:
//! taking images from the cache halved the flush threads' CPU in the page
//! server soak. A page whose image cannot be built
//! keeps its records only (and is counted as still due);
//! the error is logged, the flush goes on. One whose chain needs a layer
//! evicted to the bucket is reported ([`Built::Evicted`]): the flusher
//! downloads it and tries again, keeping the images already built
//! ([`FlushImages`]).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_wal::op::PageOp;
use strata_wal::page::Page;
use strata_wal::{Lsn, PageId};
use tracing::warn;

use super::read::{self, LayerMap};
use crate::error::PageServerError;
use crate::layer::frame_starts_page;

/// A flush's image work kept between tries of the same frozen layer (a
/// try that stops for downloads): which pages were due (counted once) and
/// the images already built. An image is a function of the log alone, so
/// one built from an older layer map is still right.
#[derive(Default)]
pub struct FlushImages {
    /// The frozen layer these belong to (its LSN range).
    pub(crate) range: Option<crate::layer::LsnRange>,
    pub(crate) due: Vec<usize>,
    pub(crate) built: HashMap<usize, Bytes>,
}

/// Records per page since its last image, as far as this process knows.
#[derive(Default)]
pub struct ChainLens {
    lens: Mutex<HashMap<PageId, u32>>,
}

/// A page's records in the layer being written.
pub type PageRecords = (PageId, Vec<(Lsn, Bytes)>);

impl ChainLens {
    /// Counts each page's records in; returns the index (in `pages`) of
    /// every page now due an image.
    pub fn due(&self, pages: &[PageRecords], limit: u32) -> Vec<usize> {
        let mut lens = self.lens.lock();
        let mut due = Vec::new();
        for (i, (page, records)) in pages.iter().enumerate() {
            let restart = records.iter().rposition(|(_, f)| frame_starts_page(f));
            let chain = match restart {
                Some(at) => (records.len() - 1 - at) as u32,
                None => lens.get(page).copied().unwrap_or(limit) + records.len() as u32,
            };
            lens.insert(*page, chain);
            if chain >= limit {
                due.push(i);
            }
        }
        due
    }

    /// Records that `page` has an image at its last record.
    pub fn imaged(&self, page: PageId) {
        self.lens.lock().insert(page, 0);
    }
}

/// What building one page's image came to.
pub enum Built {
    Image(Bytes),
    /// An older layer the page's chain needs is only in the bucket.
    Evicted(String),
    /// Any other error (logged): the page keeps its records only.
    Failed,
}

/// A version of a page held in memory: `cached(page, lsn)` is the page
/// whose last record is `lsn`, if it is held (the newest-page cache).
pub type Cached<'a> = &'a (dyn Fn(PageId, Lsn) -> Option<Arc<Page>> + Sync);

/// The images of `pages[i]` for each `i` in `due`, at each page's last
/// LSN in the layer: from `cached` where it holds that version, else
/// rebuilt from the layers.
pub fn build(map: &LayerMap, pages: &[PageRecords], due: &[usize], cached: Cached) -> Vec<Built> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let per_worker = due.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = due
            .chunks(per_worker)
            .map(|chunk| {
                s.spawn(move || {
                    // A fresh thread: background work (see crate::background).
                    crate::background::lower_priority();
                    chunk
                        .iter()
                        .map(|&i| image(map, &pages[i], cached))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an image thread panicked"))
            .collect()
    })
}

/// A page as an image value: lz4-compressed, as `PageOp::full_image` makes it.
pub fn compress(page: &Page) -> Bytes {
    let PageOp::FullImage { compressed } = PageOp::full_image(page) else {
        unreachable!("full_image makes a FullImage")
    };
    Bytes::from(compressed)
}

fn image(map: &LayerMap, (page, records): &PageRecords, cached: Cached) -> Built {
    let (lsn, _) = *records.last().expect("a page in a layer has records");
    if let Some(held) = cached(*page, lsn) {
        return Built::Image(compress(&held));
    }
    match read::rebuild(map, *page, lsn) {
        Ok(img) => Built::Image(compress(&img)),
        // An older layer is only in the bucket: the flush downloads it and
        // tries again, or (without downloads) the page gets its image at a
        // later flush (its chain is still counted).
        Err(PageServerError::LayerEvicted { file }) => Built::Evicted(file),
        Err(e) => {
            warn!(%page, %lsn, error = %e, "cannot write an image for the page; keeping its records only");
            Built::Failed
        }
    }
}
