//! The catalog: the one file that says which segments exist.
//!
//! `catalog.json` is replaced atomically (temp, fsync, rename, fsync dir), so
//! after a crash it names either the old or the new set of segments, never a
//! mix. A segment file not named by it is garbage from an interrupted flush.
//! `flushed_lsn` says which WAL records are already in segments, so replay
//! skips them and nothing is applied twice.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::objects::Objects;
use crate::schema::Signal;
use crate::{Error, Result};

/// One immutable Parquet segment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentMeta {
    pub signal: Signal,
    /// The hour partition, `2024-05-01T13` (UTC); retention drops whole partitions.
    pub partition: String,
    /// Path relative to the data directory.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Time range of the signal's time column, ns since the epoch, inclusive.
    pub min_time: i64,
    pub max_time: i64,
    /// WAL records `min_lsn..=max_lsn` (of this signal) are in this segment.
    pub min_lsn: u64,
    pub max_lsn: u64,
    /// Size of the segment's tantivy index bundle ([`SegmentMeta::index_path`]);
    /// 0 when the signal has no index or the segment was flushed and not yet
    /// compacted (flushed segments are searched by scan until then).
    #[serde(default)]
    pub index_bytes: u64,
    /// When the segment was written (ns since the epoch).
    #[serde(default)]
    pub created_ns: i64,
}

impl SegmentMeta {
    /// Where the segment's index bundle is, relative to the data directory.
    pub fn index_path(&self) -> Option<String> {
        (self.index_bytes > 0).then(|| index_path(&self.path))
    }

    /// Every file of the segment (Parquet, then the index if any).
    pub fn files(&self) -> Vec<String> {
        let mut v = vec![self.path.clone()];
        v.extend(self.index_path());
        v
    }
}

/// The index bundle next to a Parquet segment: `x.parquet` → `x.idx`.
pub(crate) fn index_path(parquet: &str) -> String {
    let stem = parquet.strip_suffix(".parquet").unwrap_or(parquet);
    format!("{stem}.idx")
}

/// The committed segments of the store in `data_dir` (for tools such as
/// `lumen inspect`; a running store has them in memory).
pub fn committed_segments(data_dir: &Path) -> Result<Vec<SegmentMeta>> {
    let path = Catalog::path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Catalog::parse(Some(&bytes))?.segments),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Catalog {
    pub(crate) version: u32,
    /// Highest LSN per signal (by `Signal::index`) that is in a committed segment.
    pub(crate) flushed_lsn: [u64; 3],
    pub(crate) segments: Vec<SegmentMeta>,
}

const FILE: &str = "catalog.json";

impl Catalog {
    pub(crate) fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    fn parse(bytes: Option<&[u8]>) -> Result<Catalog> {
        match bytes {
            Some(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{FILE}: {e}")))
            }
            None => Ok(Catalog {
                version: 1,
                ..Default::default()
            }),
        }
    }

    pub(crate) fn load(objects: &Objects) -> Result<Catalog> {
        Self::parse(objects.get(FILE)?.as_deref())
    }

    pub(crate) fn store(&self, objects: &Objects) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Corrupt(e.to_string()))?;
        objects.put_atomic(FILE, bytes)
    }
}
