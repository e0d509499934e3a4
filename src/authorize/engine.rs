//! The policy set in force (stage 3, authorize) and its hot reload: a
//! changed `policies/` is loaded and swapped in whole, or refused whole
//! with the old set kept. The gateway holds one [`Engine`]; each call
//! decides under the [`Policies`] it started with.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Policies, PolicyErrors, dir_digest};

/// The policies in force, swapped atomically on reload.
pub struct Engine {
    current: ArcSwap<Policies>,
    pub dir: PathBuf,
}

impl Engine {
    pub fn new(policies: Policies, dir: PathBuf) -> Self {
        Self {
            current: ArcSwap::from_pointee(policies),
            dir,
        }
    }

    pub fn current(&self) -> Arc<Policies> {
        self.current.load_full()
    }

    /// Load `dir` again; on success swap it in (calls in flight finish
    /// under the set they started with), on failure keep the old set.
    /// Returns the new version.
    pub fn reload(&self) -> Result<u64, PolicyErrors> {
        let version = self.current.load().version + 1;
        let policies = Policies::load(&self.dir, version)?;
        self.current.store(Arc::new(policies));
        Ok(version)
    }

    /// Reload if the files changed since the set in force (or since the
    /// last refused attempt, in `refused`).
    pub fn reload_if_changed(&self, refused: &mut Option<[u8; 32]>) -> Reload {
        let digest = dir_digest(&self.dir);
        if digest == self.current.load().digest || Some(digest) == *refused {
            return Reload::Unchanged;
        }
        match self.reload() {
            Ok(version) => {
                *refused = None;
                tracing::info!(
                    version,
                    policies = self.current().len(),
                    dir = %self.dir.display(),
                    "policies reloaded"
                );
                Reload::Swapped
            }
            Err(errors) => {
                *refused = Some(digest);
                for e in &errors.0 {
                    tracing::error!(error = %e, "policy reload refused; the previous policies stay in force");
                }
                Reload::Refused(errors)
            }
        }
    }
}

/// What [`Engine::reload_if_changed`] did.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    /// A new set is in force.
    Swapped,
    /// The files changed but are invalid; the old set stays.
    Refused(PolicyErrors),
}
