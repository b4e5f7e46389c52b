//! The control file: a replica's [`Control`] state on disk.
//!
//! One small file, `control`, in the replica's data directory, replaced
//! whole and atomically by [`store`]: write `control.tmp`, fsync it, rename
//! it over `control`, fsync the directory. A crash leaves either the old or
//! the new state, never a mix; a stray `control.tmp` is simply overwritten
//! by the next store.
//!
//! Format, little endian; the crc32 sits at the end for every version:
//!
//! ```text
//! magic          8   b"STRATCTL"
//! version        u32 CONTROL_FORMAT_VERSION
//! cluster_id     u32 length + UTF-8 bytes
//! replica_id     u32
//! incarnation    u64
//! promised_term  u64
//! promised_writer u32 length + UTF-8 bytes
//! voter          u8  0 or 1
//! commit_lsn     u64
//! history        u32 count, then count x (term u64, start_lsn u64)
//! consumers      u32 count, then count x (name: u32 length + UTF-8, lsn u64)
//! crc32          u32 of every byte before it
//! ```
//!
//! Decoding never trusts a byte before the crc has vouched for it, never
//! panics and never allocates more than the file holds: anything malformed
//! is [`LogError::CorruptFile`], another cluster's file is
//! [`LogError::WrongCluster`].
//!
//! This module also holds what the segment store ([`crate::segment`])
//! shares with it: `ByteReader`, a bounds-checked cursor for bytes read
//! from disk, and the fsync rule (`must_sync`, `fsync_dir`): a failed
//! fsync ends the process. It depends on nothing else in the crate but the
//! [`Control`] and [`TermHistory`] types.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use strata_wal::Lsn;

use crate::error::{LogError, Result};
use crate::history::{TermEntry, TermHistory};
use crate::storage::Control;

pub const CONTROL_FILE_NAME: &str = "control";
const TMP_FILE_NAME: &str = "control.tmp";
pub const CONTROL_MAGIC: [u8; 8] = *b"STRATCTL";
pub const CONTROL_FORMAT_VERSION: u32 = 1;
/// Magic, version and crc: the smallest file worth decoding.
const MIN_FILE_BYTES: usize = 8 + 4 + 4;

/// Ends the process if an fsync failed; it is never retried: after a
/// failed fsync the kernel may have dropped the dirty pages, and a retry
/// would report a success that is not one (Postgres' "fsyncgate").
pub(crate) fn must_sync(result: std::io::Result<()>, path: &Path) {
    if let Err(e) = result {
        tracing::error!(path = %path.display(), error = %e, "fsync failed; aborting");
        std::process::abort();
    }
}

/// Makes the entries of directory `dir` (creations, renames, deletions)
/// durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let d =
        File::open(dir).map_err(LogError::io(format!("opening directory {}", dir.display())))?;
    must_sync(d.sync_all(), dir);
    Ok(())
}

/// Where the control file of the replica in `dir` lives.
pub fn control_path(dir: &Path) -> PathBuf {
    dir.join(CONTROL_FILE_NAME)
}

/// A fresh random, nonzero incarnation for a replica created on an empty
/// directory. Seeded from the OS through std's `RandomState`, mixed with
/// the clock, the pid and a counter, so two calls never repeat in practice.
pub fn new_incarnation() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

/// Reads the control file in `dir`: `None` if there is none (a new
/// replica). The file must belong to `cluster_id`.
pub fn load(dir: &Path, cluster_id: &str) -> Result<Option<Control>> {
    let path = control_path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(format!("reading {}", path.display()))(e)),
    };
    let control = decode(&bytes, &path.display().to_string())?;
    if control.cluster_id != cluster_id {
        return Err(LogError::WrongCluster {
            ours: control.cluster_id,
            theirs: cluster_id.to_string(),
        });
    }
    Ok(Some(control))
}

/// Replaces the control file in `dir` durably and atomically.
pub fn store(dir: &Path, control: &Control) -> Result<()> {
    let bytes = encode(control)?;
    let tmp = dir.join(TMP_FILE_NAME);
    let path = control_path(dir);
    let mut file =
        File::create(&tmp).map_err(LogError::io(format!("creating {}", tmp.display())))?;
    file.write_all(&bytes)
        .map_err(LogError::io(format!("writing {}", tmp.display())))?;
    must_sync(file.sync_all(), &tmp);
    drop(file);
    fs::rename(&tmp, &path).map_err(LogError::io(format!(
        "renaming {} over {}",
        tmp.display(),
        path.display()
    )))?;
    fsync_dir(dir)
}

/// The file image of `control`. Fails only on a name too long to frame.
pub fn encode(control: &Control) -> Result<Vec<u8>> {
    // Destructured so that a field added to `Control` fails to compile here
    // until the format carries it.
    let Control {
        cluster_id,
        replica_id,
        incarnation,
        promised_term,
        promised_writer,
        history,
        voter,
        commit_lsn,
        consumers,
    } = control;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&CONTROL_MAGIC);
    out.extend_from_slice(&CONTROL_FORMAT_VERSION.to_le_bytes());
    put_str(&mut out, cluster_id)?;
    out.extend_from_slice(&replica_id.to_le_bytes());
    out.extend_from_slice(&incarnation.to_le_bytes());
    out.extend_from_slice(&promised_term.to_le_bytes());
    put_str(&mut out, promised_writer)?;
    out.push(u8::from(*voter));
    out.extend_from_slice(&commit_lsn.0.to_le_bytes());
    put_len(&mut out, history.entries().len())?;
    for e in history.entries() {
        out.extend_from_slice(&e.term.to_le_bytes());
        out.extend_from_slice(&e.start.0.to_le_bytes());
    }
    put_len(&mut out, consumers.len())?;
    for (name, lsn) in consumers {
        put_str(&mut out, name)?;
        out.extend_from_slice(&lsn.0.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes a control file image; `what` names the file in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<Control> {
    let corrupt = |detail: String| LogError::CorruptFile {
        what: what.to_string(),
        detail,
    };
    if bytes.len() < MIN_FILE_BYTES {
        return Err(corrupt(format!(
            "{} bytes is too short for a control file",
            bytes.len()
        )));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    if body[..8] != CONTROL_MAGIC {
        return Err(corrupt("bad magic: not a Strata control file".into()));
    }
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(corrupt(format!(
            "crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let mut r = ByteReader::new(&body[8..]);
    let version = r.u32().map_err(|e| corrupt(e.into()))?;
    if version != CONTROL_FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported format version {version} (this build reads {CONTROL_FORMAT_VERSION})"
        )));
    }
    let control = decode_fields(&mut r).map_err(|e| corrupt(e.into()))?;
    if !r.is_empty() {
        return Err(corrupt(format!(
            "{} unexpected bytes after the last field",
            r.remaining()
        )));
    }
    Ok(control)
}

/// The fields after the version, in file order.
fn decode_fields(r: &mut ByteReader<'_>) -> Result<Control, &'static str> {
    let cluster_id = r.string()?;
    let replica_id = r.u32()?;
    let incarnation = r.u64()?;
    let promised_term = r.u64()?;
    let promised_writer = r.string()?;
    let voter = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err("voter flag is neither 0 nor 1"),
    };
    let commit_lsn = Lsn(r.u64()?);
    let mut entries = Vec::new();
    for _ in 0..r.u32()? {
        entries.push(TermEntry {
            term: r.u64()?,
            start: Lsn(r.u64()?),
        });
    }
    let history = TermHistory::from_entries(entries)?;
    let mut consumers = BTreeMap::new();
    for _ in 0..r.u32()? {
        let name = r.string()?;
        if consumers.insert(name, Lsn(r.u64()?)).is_some() {
            return Err("a consumer is registered twice");
        }
    }
    Ok(Control {
        cluster_id,
        replica_id,
        incarnation,
        promised_term,
        promised_writer,
        history,
        voter,
        commit_lsn,
        consumers,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| LogError::BadRequest(format!("{len} is too long for the control file")))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A bounds-checked little-endian cursor over bytes read from disk: every
/// read either returns a value or says the input is truncated.
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        ByteReader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.remaining() {
            return Err("truncated: a field runs past the end");
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, &'static str> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, &'static str> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, &'static str> {
        self.array().map(u64::from_le_bytes)
    }

    /// A UTF-8 string behind a u32 length.
    fn string(&mut self) -> Result<String, &'static str> {
        let len = self.u32()? as usize;
        let bytes = self.bytes(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a name is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Control {
        let e = |term, start| TermEntry {
            term,
            start: Lsn(start),
        };
        Control {
            cluster_id: "c1".into(),
            replica_id: 2,
            incarnation: 0xdead_beef_0042,
            promised_term: 9,
            promised_writer: "w1".into(),
            history: TermHistory::from_entries(vec![e(1, 0), e(4, 300), e(9, 900)]).unwrap(),
            voter: true,
            commit_lsn: Lsn(880),
            consumers: [
                ("pageserver".to_string(), Lsn(512)),
                ("dms".to_string(), Lsn(0)),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn assert_corrupt(r: Result<Control>) {
        assert!(matches!(r, Err(LogError::CorruptFile { .. })), "{r:?}");
    }

    #[test]
    fn encode_decode_round_trip() {
        for c in [
            sample(),
            Control {
                cluster_id: "x".into(),
                ..Control::default()
            },
        ] {
            assert_eq!(decode(&encode(&c).unwrap(), "t").unwrap(), c);
        }
    }

    #[test]
    fn store_load_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "c1").unwrap(), None);
        store(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path(), "c1").unwrap(), Some(sample()));
        let newer = Control {
            promised_term: 10,
            ..sample()
        };
        store(dir.path(), &newer).unwrap();
        assert_eq!(load(dir.path(), "c1").unwrap(), Some(newer));
        assert!(!dir.path().join(TMP_FILE_NAME).exists());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_corrupt() {
        let bytes = encode(&sample()).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_corrupt(decode(&bad, "t"));
            assert_corrupt(decode(&bytes[..i], "t"));
        }
    }

    #[test]
    fn flipped_byte_on_disk_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &sample()).unwrap();
        let path = control_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = load(dir.path(), "c1").unwrap_err();
        assert!(matches!(&err, LogError::CorruptFile { what, .. } if what.contains("control")));
    }

    /// Re-seals `bytes` with a valid crc after an edit.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn unknown_version_and_bad_fields_are_corrupt_even_with_a_good_crc() {
        let bytes = encode(&sample()).unwrap();
        let mut v2 = bytes.clone();
        v2[8] = 2;
        let err = decode(&reseal(v2), "t").unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        let mut voter = bytes.clone();
        voter[8 + 4 + 4 + 2 + 4 + 8 + 8 + 4 + 2] = 7;
        assert_corrupt(decode(&reseal(voter), "t"));
        let mut trailing = bytes.clone();
        trailing.insert(bytes.len() - 4, 0);
        assert_corrupt(decode(&reseal(trailing), "t"));
        let mut huge_count = encode(&Control {
            cluster_id: "c".into(),
            ..Control::default()
        })
        .unwrap();
        let at = huge_count.len() - 8;
        huge_count[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_corrupt(decode(&reseal(huge_count), "t"));
    }

    #[test]
    fn another_clusters_file_is_wrong_cluster() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &sample()).unwrap();
        let err = load(dir.path(), "c2").unwrap_err();
        assert!(
            matches!(&err, LogError::WrongCluster { ours, theirs } if ours == "c1" && theirs == "c2")
        );
    }

    #[test]
    fn incarnations_are_nonzero_and_differ() {
        let a = new_incarnation();
        let b = new_incarnation();
        assert!(a != 0 && b != 0);
        assert_ne!(a, b);
    }
}
