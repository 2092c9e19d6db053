//! One store per tenant: its own WAL, buffers, segments, catalog and live
//! tail, so a tenant's data is never read by a query of another. The
//! default tenant lives in the data directory itself (as before tenants);
//! tenant `t` in `<data_dir>/tenants/t`, and on object storage under the
//! prefix `tenants/t`. All share one memory budget.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::DEFAULT_TENANT;
use crate::{Budget, Result, Store, StoreConfig};

pub struct Tenants {
    stores: BTreeMap<String, Arc<Store>>,
    budget: Arc<Budget>,
}

impl Tenants {
    /// Opens the default tenant's store and those of `tenants` (names
    /// checked by [`crate::auth::Auth::new`]), replaying their WALs.
    pub fn open(config: StoreConfig, tenants: &[String]) -> Result<Tenants> {
        let budget = config
            .budget
            .clone()
            .unwrap_or_else(|| Budget::new(config.memory_budget));
        let mut stores = BTreeMap::new();
        let mut names: Vec<&str> = vec![DEFAULT_TENANT];
        names.extend(
            tenants
                .iter()
                .map(String::as_str)
                .filter(|t| *t != DEFAULT_TENANT),
        );
        for t in names {
            let mut c = config.clone();
            c.budget = Some(Arc::clone(&budget));
            if t != DEFAULT_TENANT {
                c.data_dir = config.data_dir.join("tenants").join(t);
                c.storage = config.storage.for_tenant(t);
            }
            stores.insert(t.to_owned(), Store::open(c)?);
        }
        Ok(Tenants { stores, budget })
    }

    /// The store of `tenant`, if it is one.
    pub fn get(&self, tenant: &str) -> Option<&Arc<Store>> {
        self.stores.get(tenant)
    }

    pub fn default_store(&self) -> &Arc<Store> {
        &self.stores[DEFAULT_TENANT]
    }

    /// Every tenant and its store, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Store>)> {
        self.stores.iter()
    }

    /// The memory budget all tenants share.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Flushes and closes every store; the first error is returned after
    /// all were tried.
    pub fn close(&self) -> Result<()> {
        let mut first = Ok(());
        for s in self.stores.values() {
            if let Err(e) = s.close()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}
