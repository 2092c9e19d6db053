//! One store per tenant: its own WAL, buffers, segments, catalog and live
//! tail, so a tenant's data is never read by a query of another. The
//! default tenant lives in the data directory itself (as before tenants);
//! tenant `t` in `<data_dir>/tenants/t`, and on object storage under the
//! prefix `tenants/t`. All share one memory budget.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::auth::DEFAULT_TENANT;
use crate::{Budget, Error, Result, Store, StoreConfig};

/// Whether `name` can name a tenant: 1-64 of `[A-Za-z0-9_-]`, so it is
/// always one plain path component.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The header Grafana's Loki, Tempo and Mimir data sources name a tenant in.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// The tenant an `X-Scope-OrgID` value names: the default one for no value
/// or a blank one; an error for one that is not text. (Whether the name is
/// valid is [`Tenants::open_async`]'s to say.)
pub fn from_header(value: Option<&[u8]>) -> std::result::Result<String, String> {
    let Some(raw) = value else {
        return Ok(DEFAULT_TENANT.to_owned());
    };
    let text = std::str::from_utf8(raw).map_err(|_| "X-Scope-OrgID is not text".to_owned())?;
    match text.trim() {
        "" => Ok(DEFAULT_TENANT.to_owned()),
        t => Ok(t.to_owned()),
    }
}

pub struct Tenants {
    default: Arc<Store>,
    stores: RwLock<BTreeMap<String, Arc<Store>>>,
    /// What a tenant opened later is configured with (the shared budget set).
    config: StoreConfig,
    budget: Arc<Budget>,
    /// Most tenants open at once, the default one included.
    max: usize,
    /// Serialises opening, so two first requests of a tenant open it once.
    opening: Mutex<()>,
}

impl Tenants {
    /// Opens the default tenant's store, those of `tenants` (names checked
    /// by [`crate::auth::Auth::new`]) and those found under
    /// `<data_dir>/tenants`, replaying their WALs. More may be opened later
    /// by [`Tenants::get_or_open`], up to `max` in all.
    pub fn open(config: StoreConfig, tenants: &[String], max: usize) -> Result<Tenants> {
        let budget = config
            .budget
            .clone()
            .unwrap_or_else(|| Budget::new(config.memory_budget));
        let mut config = config;
        config.budget = Some(Arc::clone(&budget));
        let mut names: Vec<String> = tenants
            .iter()
            .filter(|t| *t != DEFAULT_TENANT)
            .cloned()
            .collect();
        // Tenants that had data before (by header, or a token since
        // removed): their acknowledged data must be replayed and kept.
        let dir = config.data_dir.join("tenants");
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(|e| Error::io("listing", &dir, e))?;
                    if let Some(name) = e.file_name().to_str()
                        && valid_name(name)
                        && name != DEFAULT_TENANT
                        && e.path().is_dir()
                    {
                        names.push(name.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("listing", &dir, e)),
        }
        names.sort();
        names.dedup();
        let default = Store::open(config.clone())?;
        let mut stores = BTreeMap::new();
        stores.insert(DEFAULT_TENANT.to_owned(), Arc::clone(&default));
        for t in names {
            stores.insert(t.clone(), Store::open(Self::tenant_config(&config, &t))?);
        }
        Ok(Tenants {
            default,
            stores: RwLock::new(stores),
            config,
            budget,
            max: max.max(1),
            opening: Mutex::new(()),
        })
    }

    fn tenant_config(config: &StoreConfig, tenant: &str) -> StoreConfig {
        let mut c = config.clone();
        c.data_dir = config.data_dir.join("tenants").join(tenant);
        c.storage = config.storage.for_tenant(tenant);
        c
    }

    /// The store of `tenant`, if it is open.
    pub fn get(&self, tenant: &str) -> Option<Arc<Store>> {
        self.stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// The store of `tenant`, opened (created if new) when it is not yet.
    /// Blocks on the file system when it opens one. Refuses names that are
    /// not [`valid_name`]s and tenants past the limit.
    pub fn get_or_open(&self, tenant: &str) -> Result<Arc<Store>> {
        if let Some(s) = self.get(tenant) {
            return Ok(s);
        }
        if !valid_name(tenant) {
            return Err(Error::Tenant(format!(
                "invalid tenant {:?}: a tenant is 1-64 of [A-Za-z0-9_-]",
                tenant.chars().take(80).collect::<String>()
            )));
        }
        let _one = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = self.get(tenant) {
            return Ok(s);
        }
        if self.len() >= self.max {
            return Err(Error::Tenant(format!(
                "too many tenants: at most {} (--max-tenants)",
                self.max
            )));
        }
        let store = Store::open(Self::tenant_config(&self.config, tenant))?;
        self.stores
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_owned(), Arc::clone(&store));
        tracing::info!(tenant, "opened a new tenant");
        Ok(store)
    }

    /// [`Tenants::get_or_open`] from async code: the file system work of
    /// opening runs on the blocking pool.
    pub async fn open_async(self: &Arc<Self>, tenant: &str) -> Result<Arc<Store>> {
        if let Some(s) = self.get(tenant) {
            return Ok(s);
        }
        let (tenants, name) = (Arc::clone(self), tenant.to_owned());
        tokio::task::spawn_blocking(move || tenants.get_or_open(&name))
            .await
            .unwrap_or_else(|e| Err(Error::Config(format!("opening a tenant failed: {e}"))))
    }

    pub fn default_store(&self) -> &Arc<Store> {
        &self.default
    }

    /// Tenants open now.
    fn len(&self) -> usize {
        self.stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Every open tenant and its store, by name.
    pub fn all(&self) -> Vec<(String, Arc<Store>)> {
        self.stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(t, s)| (t.clone(), Arc::clone(s)))
            .collect()
    }

    /// The memory budget all tenants share.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Flushes and closes every store; the first error is returned after
    /// all were tried.
    pub fn close(&self) -> Result<()> {
        let mut first = Ok(());
        for (_, s) in self.all() {
            if let Err(e) = s.close()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}
