//! Where segments, their indexes and the catalog live: an `object_store`
//! (the local file system under the data directory by default, or an
//! S3-compatible bucket), so that several nodes can later share one bucket.
//! The WAL stays on local disk: it is the fsync'd front of the store.
//!
//! Files are written in full to a local staging file first (Parquet and the
//! index are streamed there), then committed under their key:
//! - local: fsync, rename into place, fsync the directories. Lumen does the
//!   rename itself because `object_store`'s `LocalFileSystem` never fsyncs,
//!   and an acknowledged record must survive power loss once the WAL that
//!   held it is trimmed;
//! - remote: uploaded (multipart for large files; a PUT is atomic, so
//!   readers never see half an object), then the staging file is removed.
//!
//! Reads (DataFusion scans, index bundles), listing and deletes go through
//! `object_store` in both cases. The store's own threads are not async: they
//! run object store calls on a small I/O runtime owned here.

use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::StreamExt;
use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{
    GetOptions, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

// The `ObjectStoreExt` shorthands return futures that are not `Send`; the
// trait's own methods (boxed, `Send`) are used so calls can run on the I/O runtime.

use crate::{Error, Result};

/// The URL DataFusion reads segments under (registered with each session).
pub const URL: &str = "lumen://store";

/// Where the store keeps segments and the catalog.
#[derive(Clone, Default)]
pub enum Storage {
    /// The local file system, under the data directory.
    #[default]
    Local,
    /// An S3-compatible bucket.
    S3(S3Config),
    /// Any other object store (tests use `object_store::memory::InMemory`
    /// to run the remote code path without a server).
    Remote(Arc<dyn ObjectStore>),
}

impl Storage {
    /// The same storage for tenant `t`: under the prefix `tenants/t`.
    pub fn for_tenant(&self, t: &str) -> Storage {
        match self {
            Storage::Local => Storage::Local,
            Storage::S3(c) => {
                let mut c = c.clone();
                c.prefix = if c.prefix.is_empty() {
                    format!("tenants/{t}")
                } else {
                    format!("{}/tenants/{t}", c.prefix)
                };
                Storage::S3(c)
            }
            Storage::Remote(s) => Storage::Remote(Arc::new(
                object_store::prefix::PrefixStore::new(Arc::clone(s), format!("tenants/{t}")),
            )),
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Local => write!(f, "Local"),
            Storage::S3(c) => write!(f, "S3({c:?})"),
            Storage::Remote(s) => write!(f, "Remote({s})"),
        }
    }
}

/// An S3-compatible bucket. Credentials come from the standard `AWS_*`
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`, ...), as AWS tools read them.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    /// Endpoint of a non-AWS service (MinIO, R2, ...): `http://host:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain HTTP (for a local MinIO).
    pub allow_http: bool,
}

impl S3Config {
    /// Parses `s3://bucket/optional/prefix`.
    pub fn from_url(url: &str) -> Result<S3Config> {
        let bad = |why: &str| Error::Config(format!("object store URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("only s3://bucket/prefix is supported"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
            allow_http: false,
        })
    }
}

/// The object store of one Lumen store.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The data directory when objects are local files there.
    local: Option<PathBuf>,
    /// Where remote objects are staged before upload.
    staging: PathBuf,
    /// Always `Some` but in `drop`: a runtime dropped on an async thread
    /// panics, so it is shut down in the background instead.
    rt: Option<tokio::runtime::Runtime>,
}

/// Scratch directory (in the data directory) for index builds.
const SCRATCH: &str = "scratch";

/// Largest object uploaded with one PUT; larger ones go in parts.
const SINGLE_PUT_BYTES: u64 = 32 << 20;
const PART_BYTES: usize = 16 << 20;

impl Objects {
    pub(crate) fn open(data_dir: &Path, storage: &Storage) -> Result<Objects> {
        let (store, local): (Arc<dyn ObjectStore>, _) = match storage {
            Storage::Local => (
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(data_dir)
                        .map_err(Error::from)?,
                ),
                Some(data_dir.to_owned()),
            ),
            Storage::S3(c) => (s3(c)?, None),
            Storage::Remote(s) => (Arc::clone(s), None),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lumen-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the object store runtime", data_dir, e))?;
        let staging = data_dir.join("staging");
        if local.is_none() {
            // Left over from uploads a crash interrupted: never committed.
            let _ = std::fs::remove_dir_all(&staging);
        }
        // Index builds a crash interrupted.
        let _ = std::fs::remove_dir_all(data_dir.join(SCRATCH));
        Ok(Objects {
            store,
            local,
            staging,
            rt: Some(rt),
        })
    }

    /// The object store, to register with a DataFusion session under [`URL`].
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    pub fn url() -> ObjectStoreUrl {
        // A constant, valid URL.
        ObjectStoreUrl::parse(URL).unwrap_or_else(|_| ObjectStoreUrl::local_filesystem())
    }

    /// The file holding object `key`, when objects are local files.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local.as_ref().map(|d| d.join(key))
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Runs an object store future to completion from a plain thread (or a
    /// blocking section of an async one) on the I/O runtime.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self.rt.as_ref().ok_or(Error::Closed)?;
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| Error::Closed)
    }

    /// Where work files (index builds) go; emptied on start.
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        match &self.local {
            Some(dir) => dir.join(SCRATCH),
            None => self.staging.join(SCRATCH),
        }
    }

    /// The local file a new object `key` is written to before [`Self::commit_file`].
    pub(crate) fn staging_path(&self, key: &str) -> PathBuf {
        match &self.local {
            Some(dir) => dir.join(format!("{key}.tmp")),
            None => self.staging.join(format!("{}.tmp", key.replace('/', "__"))),
        }
    }

    /// [`Self::staging_path`] of `key`, with its directory created.
    pub(crate) fn staging_file(&self, key: &str) -> Result<PathBuf> {
        let tmp = self.staging_path(key);
        if let Some(dir) = tmp.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        Ok(tmp)
    }

    /// Makes the finished, closed staging file of `key` the object `key`.
    pub(crate) fn commit_file(&self, key: &str) -> Result<u64> {
        let tmp = self.staging_path(key);
        let len = std::fs::File::open(&tmp)
            .and_then(|f| {
                f.sync_all()?;
                f.metadata()
            })
            .map_err(|e| Error::io("syncing", &tmp, e))?
            .len();
        match &self.local {
            Some(dir) => {
                let path = dir.join(key);
                std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))?;
                sync_parents(dir, &path)?;
            }
            None => {
                self.upload(&tmp, key, len)?;
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(len)
    }

    fn upload(&self, file: &Path, key: &str, len: u64) -> Result<()> {
        let store = Arc::clone(&self.store);
        let location = Key::from(key);
        let mut f = std::fs::File::open(file).map_err(|e| Error::io("opening", file, e))?;
        if len <= SINGLE_PUT_BYTES {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf)
                .map_err(|e| Error::io("reading", file, e))?;
            self.run(async move {
                store
                    .put_opts(&location, PutPayload::from(buf), PutOptions::default())
                    .await
            })??;
            return Ok(());
        }
        let upload = self.run(async move {
            store
                .put_multipart_opts(&location, PutMultipartOptions::default())
                .await
        })??;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Error::io("reading", file, e))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]);
        }
        self.run(async move { writer.finish().await })??;
        Ok(())
    }

    /// Replaces object `key` with `bytes` atomically (the catalog).
    pub(crate) fn put_atomic(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.local {
            Some(dir) => crate::fsutil::write_atomic(&dir.join(key), &bytes),
            None => {
                let (store, location) = (Arc::clone(&self.store), Key::from(key));
                self.run(async move {
                    store
                        .put_opts(&location, PutPayload::from(bytes), PutOptions::default())
                        .await
                })??;
                Ok(())
            }
        }
    }

    /// The whole object `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let (store, location) = (Arc::clone(&self.store), Key::from(key));
        let got = self.run(async move {
            match store.get_opts(&location, GetOptions::default()).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })??;
        Ok(got)
    }

    /// Deletes object `key`; a missing one is not an error.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let (store, location) = (Arc::clone(&self.store), Key::from(key));
        self.run(async move {
            let mut done =
                store.delete_stream(futures::stream::once(async { Ok(location) }).boxed());
            while let Some(r) = done.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })??;
        if let (Some(dir), Some((parent, _))) = (&self.local, key.rsplit_once('/')) {
            // The partition directory goes once it is empty (fails harmlessly otherwise).
            let _ = std::fs::remove_dir(dir.join(parent));
        }
        Ok(())
    }

    /// Every key under `prefix` (e.g. `segments/`).
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let (store, prefix) = (Arc::clone(&self.store), Key::from(prefix));
        let metas =
            self.run(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })??;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// fsyncs the directories from `path`'s parent up to `root`, so a rename
/// and any directory it needed are durable.
fn sync_parents(root: &Path, path: &Path) -> Result<()> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        crate::fsutil::sync_dir(d)?;
        if d == root || !d.starts_with(root) {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

fn s3(c: &S3Config) -> Result<Arc<dyn ObjectStore>> {
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&c.bucket)
        .with_allow_http(c.allow_http);
    if let Some(e) = &c.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &c.region {
        b = b.with_region(r);
    }
    let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
    Ok(if c.prefix.is_empty() {
        s3
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(
            s3,
            c.prefix.as_str(),
        ))
    })
}
