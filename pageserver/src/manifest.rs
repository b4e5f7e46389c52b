//! The manifest: which layer files are live, and the durable LSN.
//!
//! One small file, [`MANIFEST_FILE_NAME`], in the page server's data
//! directory, replaced whole and atomically by [`Manifest::store`]: write
//! `manifest.tmp`, fsync it, rename it over `manifest`, fsync the directory.
//! A crash at any point leaves either the old or the new manifest; a stray
//! `manifest.tmp` is ignored by [`Manifest::load`] and overwritten by the
//! next store.
//!
//! Format, little-endian; the crc32 sits at the end:
//!
//! ```text
//! magic          8   b"STRATMAN"
//! version        u32 MANIFEST_FORMAT_VERSION (2)
//! cluster_id     u32 length + UTF-8 bytes
//! durable_lsn    u64
//! gc_cutoff      u64 (version 2 only; 0 when read from version 1)
//! layers         u32 count, then count x (file_name: u32 length + UTF-8,
//!                    kind u8 (version 2 only: 0 L0, 1 L1, 2 image),
//!                    range.start u64, range.end u64,
//!                    keys.first u64, keys.last u64 (version 2 only),
//!                    file_bytes u64)
//! dropped_spaces u32 count, then count x (space u32, lsn u64)
//! crc32          u32 of every byte before it
//! ```
//!
//! Version 1 (before compaction) is still read: its layers are L0 deltas
//! over every page, and nothing was ever collected.
//!
//! Invariants ([`Manifest::validate`], checked before every store and after
//! every load): layers are in [`LayerDesc::order`]; delta runs (the deltas
//! sharing one LSN range) do not overlap in LSN, and within a run the page
//! ranges are disjoint; an L0 covers every page; an image layer's LSN is
//! never inside a delta run; each range is non-empty; file names are unique
//! plain names; `durable_lsn` is at or past every layer's end and the GC
//! cutoff is at or below it. Decoding never trusts a
//! byte before the crc has vouched for it, never panics and never allocates
//! more than the file holds; anything wrong with the file, including another
//! cluster's id, is [`PageServerError::Corrupt`] naming it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use strata_wal::Lsn;

use crate::durable;
use crate::error::{PageServerError, Result};
use crate::layer::LsnRange;
use crate::layer::delta_file::ByteReader;
use crate::layer::desc::{KeyRange, LayerDesc, LayerKind};

pub const MANIFEST_FILE_NAME: &str = "manifest";
/// Where a new manifest is written before it is renamed over the old one.
pub const MANIFEST_TMP_FILE_NAME: &str = "manifest.tmp";
pub const MANIFEST_MAGIC: [u8; 8] = *b"STRATMAN";
pub const MANIFEST_FORMAT_VERSION: u32 = 2;
/// The format before compaction, still read.
const MANIFEST_V1: u32 = 1;
/// Magic, version and crc: the smallest file worth decoding.
const MIN_FILE_BYTES: usize = 8 + 4 + 4;

/// One live layer file, as the manifest names it.
pub type ManifestLayer = LayerDesc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub cluster_id: String,
    pub durable_lsn: Lsn,
    /// Reads below it are refused: the history under it may be gone.
    pub gc_cutoff: Lsn,
    pub layers: Vec<ManifestLayer>,
    pub dropped_spaces: Vec<(u32, Lsn)>,
}

impl Manifest {
    pub fn new(cluster_id: &str) -> Manifest {
        Manifest {
            cluster_id: cluster_id.to_string(),
            durable_lsn: Lsn::ZERO,
            gc_cutoff: Lsn::ZERO,
            layers: Vec::new(),
            dropped_spaces: Vec::new(),
        }
    }

    /// Reads the manifest in `dir`: `None` if there is none (a new page
    /// server). It must belong to `cluster_id` and be valid.
    pub fn load(dir: &Path, cluster_id: &str) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PageServerError::io(format!("reading {}", path.display()))(
                    e,
                ));
            }
        };
        let corrupt = |detail: String| PageServerError::corrupt(&path, detail);
        let manifest = decode(&bytes).map_err(corrupt)?;
        if manifest.cluster_id != cluster_id {
            return Err(corrupt(format!(
                "belongs to cluster {:?}, not {cluster_id:?}",
                manifest.cluster_id
            )));
        }
        manifest.validate().map_err(corrupt)?;
        Ok(Some(manifest))
    }

    /// Replaces the manifest in `dir` durably and atomically. An invalid
    /// manifest is refused before anything is written.
    /// Stores into one directory must not run concurrently (they share
    /// `manifest.tmp`); the page server has one writer of its manifest.
    pub fn store(&self, dir: &Path) -> Result<()> {
        self.validate().map_err(|e| {
            PageServerError::BadRequest(format!("refusing to store an invalid manifest: {e}"))
        })?;
        let bytes = self.encode()?;
        let tmp = dir.join(MANIFEST_TMP_FILE_NAME);
        let path = dir.join(MANIFEST_FILE_NAME);
        let mut file = File::create(&tmp)
            .map_err(PageServerError::io(format!("creating {}", tmp.display())))?;
        file.write_all(&bytes)
            .map_err(PageServerError::io(format!("writing {}", tmp.display())))?;
        durable::sync_file(&file, &tmp);
        drop(file);
        fs::rename(&tmp, &path).map_err(PageServerError::io(format!(
            "renaming {} over {}",
            tmp.display(),
            path.display()
        )))?;
        durable::sync_dir(dir)
    }

    /// Checks the invariants every stored manifest keeps; says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut names = HashSet::new();
        let mut run: Option<(LsnRange, u64)> = None;
        let mut prev_end: Option<Lsn> = None;
        let mut last_end = Lsn::ZERO;
        for (i, layer) in self.layers.iter().enumerate() {
            let name = &layer.file_name;
            let at = |e: String| format!("layer {i} ({name}): {e}");
            check_file_name(name).map_err(|e| format!("layer {i}: {e}"))?;
            if !names.insert(name.as_str()) {
                return Err(format!("layer {i}: file name {name:?} appears twice"));
            }
            check_layer(layer).map_err(at)?;
            if i > 0 && layer.order() <= self.layers[i - 1].order() {
                return Err(at("out of order".into()));
            }
            last_end = last_end.max(layer.range.end);
            let range = layer.range;
            if !layer.kind.is_delta() {
                continue;
            }
            match run {
                Some((r, last_key)) if r == range => {
                    if layer.keys.first <= last_key {
                        return Err(at("its pages overlap the previous layer's".into()));
                    }
                }
                _ => {
                    if let Some(end) = prev_end.filter(|end| range.start < *end) {
                        return Err(at(format!(
                            "starts at {} before the previous layer's end {end}",
                            range.start
                        )));
                    }
                }
            }
            run = Some((range, layer.keys.last));
            prev_end = Some(range.end);
        }
        self.check_image_lsns()?;
        if self.durable_lsn < last_end {
            return Err(format!(
                "durable LSN {} is below the last layer's end {last_end}",
                self.durable_lsn
            ));
        }
        if self.gc_cutoff > self.durable_lsn {
            return Err(format!(
                "GC cutoff {} is above the durable LSN {}",
                self.gc_cutoff, self.durable_lsn
            ));
        }
        Ok(())
    }

    /// No image layer's LSN lies strictly inside a delta layer's range.
    fn check_image_lsns(&self) -> std::result::Result<(), String> {
        let deltas: Vec<_> = self.layers.iter().filter(|l| l.kind.is_delta()).collect();
        for image in self.layers.iter().filter(|l| !l.kind.is_delta()) {
            let at = image.range.end;
            if let Some(d) = deltas
                .iter()
                .find(|d| d.range.start < at && at < d.range.end)
            {
                return Err(format!(
                    "image layer {}: its LSN {at} is inside the delta run ({}, {}]",
                    image.file_name, d.range.start, d.range.end
                ));
            }
        }
        Ok(())
    }

    /// The file image. Fails only on a string or list too long to frame.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        // Destructured so that a field added to `Manifest` fails to compile
        // here until the format carries it.
        let Manifest {
            cluster_id,
            durable_lsn,
            gc_cutoff,
            layers,
            dropped_spaces,
        } = self;
        let mut out = Vec::with_capacity(64 + layers.len() * 64);
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        put_str(&mut out, cluster_id)?;
        out.extend_from_slice(&durable_lsn.0.to_le_bytes());
        out.extend_from_slice(&gc_cutoff.0.to_le_bytes());
        put_len(&mut out, layers.len())?;
        for layer in layers {
            put_str(&mut out, &layer.file_name)?;
            out.push(layer.kind.code());
            for v in [layer.range.start.0, layer.range.end.0] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [layer.keys.first, layer.keys.last, layer.file_bytes] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        put_len(&mut out, dropped_spaces.len())?;
        for (space, lsn) in dropped_spaces {
            out.extend_from_slice(&space.to_le_bytes());
            out.extend_from_slice(&lsn.0.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }
}

/// The rules one layer keeps on its own.
fn check_layer(layer: &LayerDesc) -> std::result::Result<(), String> {
    let (range, keys) = (layer.range, layer.keys);
    if range.start >= range.end {
        return Err(format!("empty range ({}, {}]", range.start, range.end));
    }
    if keys.first > keys.last {
        return Err(format!(
            "empty page range [{:#x}, {:#x}]",
            keys.first, keys.last
        ));
    }
    match layer.kind {
        LayerKind::L0 if keys != KeyRange::ALL => Err("an L0 layer must cover every page".into()),
        LayerKind::Image if range.start != Lsn::ZERO => {
            Err("an image layer's range must start at 0".into())
        }
        _ => Ok(()),
    }
}

/// A layer's file name must name a file in the manifest's own directory.
fn check_file_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("{name:?} is not a plain file name"));
    }
    Ok(())
}

/// Decodes a manifest file image: magic, crc, version, then the fields.
pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
    if bytes.len() < MIN_FILE_BYTES {
        return Err(format!("{} bytes is too short for a manifest", bytes.len()));
    }
    if bytes[..8] != MANIFEST_MAGIC {
        return Err("bad magic: not a Strata manifest".into());
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(format!(
            "crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let mut r = ByteReader::new(&body[8..]);
    let version = r.u32()?;
    if version != MANIFEST_FORMAT_VERSION && version != MANIFEST_V1 {
        return Err(format!(
            "unsupported format version {version} (this build reads {MANIFEST_FORMAT_VERSION})"
        ));
    }
    let manifest = decode_fields(&mut r, version)?;
    if !r.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the last field",
            r.remaining()
        ));
    }
    Ok(manifest)
}

/// The fields after the version, in file order.
fn decode_fields(r: &mut ByteReader<'_>, version: u32) -> std::result::Result<Manifest, String> {
    let v2 = version >= MANIFEST_FORMAT_VERSION;
    let cluster_id = get_str(r)?;
    let durable_lsn = Lsn(r.u64()?);
    let gc_cutoff = if v2 { Lsn(r.u64()?) } else { Lsn::ZERO };
    // No capacity from the counts: a count is only believed as far as the
    // bytes after it go.
    let mut layers = Vec::new();
    for _ in 0..r.u32()? {
        layers.push(decode_layer(r, v2)?);
    }
    let mut dropped_spaces = Vec::new();
    for _ in 0..r.u32()? {
        dropped_spaces.push((r.u32()?, Lsn(r.u64()?)));
    }
    Ok(Manifest {
        cluster_id,
        durable_lsn,
        gc_cutoff,
        layers,
        dropped_spaces,
    })
}

fn decode_layer(r: &mut ByteReader<'_>, v2: bool) -> std::result::Result<LayerDesc, String> {
    let file_name = get_str(r)?;
    let kind = match v2 {
        true => {
            let code = r.u8()?;
            LayerKind::from_code(code).ok_or_else(|| format!("unknown layer kind {code}"))?
        }
        false => LayerKind::L0,
    };
    let range = LsnRange {
        start: Lsn(r.u64()?),
        end: Lsn(r.u64()?),
    };
    let keys = match v2 {
        true => KeyRange {
            first: r.u64()?,
            last: r.u64()?,
        },
        false => KeyRange::ALL,
    };
    Ok(LayerDesc {
        file_name,
        kind,
        range,
        keys,
        file_bytes: r.u64()?,
    })
}

fn get_str(r: &mut ByteReader<'_>) -> std::result::Result<String, String> {
    let len = r.u32()? as usize;
    let bytes = r.bytes(len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not valid UTF-8".to_string())
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| PageServerError::BadRequest(format!("{len} is too long for the manifest")))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tempfile::TempDir;

    use super::*;

    const CLUSTER: &str = "test-cluster";

    fn layer(name: &str, start: u64, end: u64) -> ManifestLayer {
        ManifestLayer {
            file_name: name.to_string(),
            kind: LayerKind::L0,
            keys: KeyRange::ALL,
            range: LsnRange {
                start: Lsn(start),
                end: Lsn(end),
            },
            file_bytes: 4096 + end,
        }
    }

    fn sample() -> Manifest {
        Manifest {
            cluster_id: CLUSTER.to_string(),
            durable_lsn: Lsn(300),
            gc_cutoff: Lsn(120),
            layers: vec![
                layer("a", 0, 100),
                layer("b", 100, 250),
                layer("c", 260, 300),
            ],
            dropped_spaces: vec![(7, Lsn(120)), (9, Lsn(280))],
        }
    }

    /// An L0 turned into a run of two L1 files split at page key 9.
    fn split_run(l0: &ManifestLayer) -> (ManifestLayer, ManifestLayer) {
        let mut a = l0.clone();
        a.kind = LayerKind::L1;
        a.keys = KeyRange { first: 0, last: 9 };
        let mut b = a.clone();
        b.file_name.push_str("-b");
        b.keys = KeyRange {
            first: 10,
            last: u64::MAX,
        };
        (a, b)
    }

    #[test]
    fn runs_and_images_are_valid_and_round_trip() {
        let dir = TempDir::new().unwrap();
        let mut m = sample();
        let (a, b) = split_run(&m.layers[1]);
        m.layers[1] = a;
        m.layers.insert(2, b);
        let mut img = m.layers[1].clone();
        img.kind = LayerKind::Image;
        img.file_name = "img".into();
        img.range = LsnRange {
            start: Lsn(0),
            end: Lsn(250),
        };
        m.layers.insert(3, img);
        assert_eq!(m.validate(), Ok(()));
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), Some(m));
    }

    #[test]
    fn a_version_1_manifest_reads_as_l0_layers_never_collected() {
        let dir = TempDir::new().unwrap();
        let m = sample();
        let mut v1 = Vec::new();
        v1.extend_from_slice(&MANIFEST_MAGIC);
        v1.extend_from_slice(&MANIFEST_V1.to_le_bytes());
        put_str(&mut v1, CLUSTER).unwrap();
        v1.extend_from_slice(&m.durable_lsn.0.to_le_bytes());
        put_len(&mut v1, m.layers.len()).unwrap();
        for l in &m.layers {
            put_str(&mut v1, &l.file_name).unwrap();
            for v in [l.range.start.0, l.range.end.0, l.file_bytes] {
                v1.extend_from_slice(&v.to_le_bytes());
            }
        }
        put_len(&mut v1, 0).unwrap();
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join(MANIFEST_FILE_NAME), v1).unwrap();
        let loaded = Manifest::load(dir.path(), CLUSTER).unwrap().unwrap();
        assert_eq!(loaded.gc_cutoff, Lsn::ZERO);
        assert_eq!(loaded.layers, m.layers);
    }

    fn assert_corrupt<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
        match r {
            Err(PageServerError::Corrupt { file, detail }) => {
                assert!(file.ends_with(MANIFEST_FILE_NAME), "{file:?}");
                assert!(detail.contains(needle), "{detail:?} lacks {needle:?}")
            }
            other => panic!("expected Corrupt ({needle}), got {other:?}"),
        }
    }

    #[test]
    fn no_manifest_loads_as_none() {
        let dir = TempDir::new().unwrap();
        assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), None);
    }

    #[test]
    fn round_trips_and_replaces() {
        let dir = TempDir::new().unwrap();
        let empty = Manifest::new(CLUSTER);
        empty.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), Some(empty));
        let m = sample();
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), Some(m));
        assert!(!dir.path().join(MANIFEST_TMP_FILE_NAME).exists());
    }

    #[test]
    fn a_stale_tmp_file_does_not_matter() {
        let dir = TempDir::new().unwrap();
        let m = sample();
        m.store(dir.path()).unwrap();
        // A crash after writing the temp file, before the rename: a torn
        // or complete new manifest sits beside the old one.
        let tmp = dir.path().join(MANIFEST_TMP_FILE_NAME);
        std::fs::write(&tmp, b"STRATMAN torn").unwrap();
        assert_eq!(
            Manifest::load(dir.path(), CLUSTER).unwrap(),
            Some(m.clone())
        );
        // The next store overwrites it.
        let mut next = m;
        next.durable_lsn = Lsn(400);
        next.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), Some(next));
        // With no manifest yet, a stale temp file is still "no manifest".
        let fresh = TempDir::new().unwrap();
        std::fs::write(fresh.path().join(MANIFEST_TMP_FILE_NAME), b"x").unwrap();
        assert_eq!(Manifest::load(fresh.path(), CLUSTER).unwrap(), None);
    }

    #[test]
    fn load_refuses_another_cluster_bad_magic_version_and_truncation() {
        let dir = TempDir::new().unwrap();
        sample().store(dir.path()).unwrap();
        assert_corrupt(Manifest::load(dir.path(), "other"), "belongs to cluster");
        let path = dir.path().join(MANIFEST_FILE_NAME);
        let clean = std::fs::read(&path).unwrap();

        let mut bytes = clean.clone();
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt(
            Manifest::load(dir.path(), CLUSTER),
            "unsupported format version 3",
        );

        let mut bytes = clean.clone();
        bytes[1] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt(Manifest::load(dir.path(), CLUSTER), "bad magic");

        std::fs::write(&path, &clean[..clean.len() - 3]).unwrap();
        assert_corrupt(Manifest::load(dir.path(), CLUSTER), "crc mismatch");
        std::fs::write(&path, &clean[..10]).unwrap();
        assert_corrupt(Manifest::load(dir.path(), CLUSTER), "too short");
    }

    #[test]
    fn load_refuses_a_well_formed_but_invalid_manifest() {
        let dir = TempDir::new().unwrap();
        let mut m = sample();
        m.layers.swap(0, 1);
        std::fs::write(dir.path().join(MANIFEST_FILE_NAME), m.encode().unwrap()).unwrap();
        assert_corrupt(Manifest::load(dir.path(), CLUSTER), "layer 1 (a)");
    }

    #[test]
    fn store_refuses_an_invalid_manifest() {
        let dir = TempDir::new().unwrap();
        let mut m = sample();
        m.durable_lsn = Lsn(5);
        let r = m.store(dir.path());
        assert!(matches!(r, Err(PageServerError::BadRequest(_))), "{r:?}");
        assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), None);
    }

    #[test]
    fn validate_says_what_is_wrong() {
        assert_eq!(sample().validate(), Ok(()));
        assert_eq!(Manifest::new(CLUSTER).validate(), Ok(()));
        type Breaker = fn(&mut Manifest);
        let cases: Vec<(Breaker, &str)> = vec![
            (
                |m| m.layers[1].range.start = Lsn(99),
                "before the previous layer's end",
            ),
            (|m| m.layers.swap(1, 2), "out of order"),
            (|m| m.layers[1].keys.last = 7, "must cover every page"),
            (|m| m.gc_cutoff = Lsn(301), "above the durable LSN"),
            (
                |m| {
                    let (a, b) = split_run(&m.layers[1]);
                    m.layers[1] = a;
                    m.layers.insert(2, b);
                    m.layers[2].keys.first = 5;
                },
                "overlap the previous layer's",
            ),
            (
                |m| {
                    let mut img = m.layers[1].clone();
                    img.kind = LayerKind::Image;
                    img.file_name = "img".into();
                    img.range = LsnRange {
                        start: Lsn(0),
                        end: Lsn(270),
                    };
                    m.layers.insert(2, img);
                },
                "inside the delta run",
            ),
            (
                |m| m.layers[1].kind = LayerKind::Image,
                "image layer's range must start at 0",
            ),
            (|m| m.layers[2].range.end = Lsn(260), "empty range"),
            (
                |m| m.layers[0].range.start = Lsn(150), // start > end
                "empty range",
            ),
            (|m| m.layers[1].file_name.clear(), "empty file name"),
            (|m| m.layers[1].file_name = "a".into(), "appears twice"),
            (
                |m| m.layers[1].file_name = "x/y".into(),
                "not a plain file name",
            ),
            (
                |m| m.layers[1].file_name = ".".into(),
                "not a plain file name",
            ),
            (
                |m| m.layers[1].file_name = "..".into(),
                "not a plain file name",
            ),
            (|m| m.durable_lsn = Lsn(299), "below the last layer's end"),
        ];
        for (break_it, needle) in cases {
            let mut m = sample();
            break_it(&mut m);
            let e = m.validate().expect_err(needle);
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        }
    }

    #[test]
    fn every_flipped_bit_is_reported() {
        let dir = TempDir::new().unwrap();
        sample().store(dir.path()).unwrap();
        let path = dir.path().join(MANIFEST_FILE_NAME);
        let clean = std::fs::read(&path).unwrap();
        for at in 0..clean.len() {
            for bit in 0..8 {
                let mut bytes = clean.clone();
                bytes[at] ^= 1 << bit;
                std::fs::write(&path, &bytes).unwrap();
                let r = Manifest::load(dir.path(), CLUSTER);
                assert!(
                    matches!(r, Err(PageServerError::Corrupt { .. })),
                    "bit {bit} of byte {at}: {r:?}"
                );
            }
        }
    }

    /// Valid manifests: layers tiling with gaps, names unique.
    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let layers = proptest::collection::vec((0..50u64, 1..1000u64, any::<u64>()), 0..20);
        let dropped = proptest::collection::vec((any::<u32>(), any::<u64>()), 0..5);
        (layers, dropped, 0..100u64).prop_map(|(layers, dropped, extra)| {
            let mut end = 0;
            let layers: Vec<ManifestLayer> = layers
                .into_iter()
                .enumerate()
                .map(|(i, (gap, len, file_bytes))| {
                    let start = end + gap;
                    end = start + len;
                    ManifestLayer {
                        file_name: format!("layer-{i:04}-{start:016X}"),
                        kind: LayerKind::L0,
                        keys: KeyRange::ALL,
                        range: LsnRange {
                            start: Lsn(start),
                            end: Lsn(end),
                        },
                        file_bytes,
                    }
                })
                .collect();
            Manifest {
                cluster_id: CLUSTER.to_string(),
                durable_lsn: Lsn(end + extra),
                gc_cutoff: Lsn(end / 2),
                layers,
                dropped_spaces: dropped.into_iter().map(|(s, l)| (s, Lsn(l))).collect(),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_manifests_round_trip_and_any_flip_is_corrupt(
            m in arb_manifest(),
            at in any::<proptest::sample::Index>(),
            bit in 0..8u8,
        ) {
            let dir = TempDir::new().unwrap();
            m.store(dir.path()).unwrap();
            prop_assert_eq!(Manifest::load(dir.path(), CLUSTER).unwrap(), Some(m));
            let path = dir.path().join(MANIFEST_FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let r = Manifest::load(dir.path(), CLUSTER);
            prop_assert!(
                matches!(r, Err(PageServerError::Corrupt { .. })),
                "bit {} of byte {}: {:?}", bit, at, r
            );
        }
    }
}
