//! A TLS configuration rebuilt when its files change (`Reloading`), shared by both sides, and
//! the handshake timeout.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::*;

/// When each watched file last changed, to know when to reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stamps(pub(super) Vec<Option<(SystemTime, u64, u64)>>);

impl Stamps {
    fn of(files: &[PathBuf]) -> Stamps {
        use std::os::unix::fs::MetadataExt;
        Stamps(
            files
                .iter()
                .map(|path| {
                    std::fs::metadata(path).ok().map(|m| {
                        (
                            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                            m.len(),
                            m.ino(),
                        )
                    })
                })
                .collect(),
        )
    }
}

/// A TLS configuration built from one side's settings and files, rebuilt when one of the
/// files changed (looked at each time the configuration is asked for, that is at each
/// handshake, as etcd re-reads at each); a rebuild that fails is logged once and the last good
/// configuration kept.
pub(super) struct Reloading<C> {
    pub(super) side: TlsSide,
    pub(super) common: TlsCommon,
    pub(super) files: Vec<PathBuf>,
    pub(super) build: fn(&TlsSide, &TlsCommon) -> Result<C, TlsError>,
    /// What the log says stays in use when new files do not load.
    pub(super) kept: &'static str,
    pub(super) state: Mutex<Loaded<C>>,
}

pub(super) struct Loaded<C> {
    pub(super) config: Arc<C>,
    /// The files as they were when `config` was built.
    pub(super) stamps: Stamps,
    /// The files as they were when a rebuild last failed (not retried until they change).
    pub(super) failed: Option<Stamps>,
}

impl<C> Reloading<C> {
    /// Checks the settings and builds the configuration once (errors here stop the start).
    pub(super) fn new(
        side: TlsSide,
        common: TlsCommon,
        build: fn(&TlsSide, &TlsCommon) -> Result<C, TlsError>,
        kept: &'static str,
    ) -> Result<Reloading<C>, TlsError> {
        side.check()?;
        common.check()?;
        let files = side.watched_files();
        let stamps = Stamps::of(&files);
        let config = Arc::new(build(&side, &common)?);
        Ok(Reloading {
            side,
            common,
            files,
            build,
            kept,
            state: Mutex::new(Loaded {
                config,
                stamps,
                failed: None,
            }),
        })
    }

    /// The configuration for the next handshake, rebuilt first if a file changed since.
    pub(super) fn current(&self) -> Arc<C> {
        let stamps = Stamps::of(&self.files);
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if stamps != state.stamps && state.failed.as_ref() != Some(&stamps) {
            match (self.build)(&self.side, &self.common) {
                Ok(config) => {
                    tracing::info!(side = self.side.name, "reloaded TLS certificates");
                    state.config = Arc::new(config);
                    state.stamps = stamps;
                    state.failed = None;
                }
                Err(error) => {
                    tracing::warn!(side = self.side.name, %error, "new TLS files do not load; {}", self.kept);
                    state.failed = Some(stamps);
                }
            }
        }
        state.config.clone()
    }
}

/// `handshake` within [`HANDSHAKE_TIMEOUT`].
pub(super) async fn within_handshake_timeout<T>(
    handshake: impl std::future::Future<Output = std::io::Result<T>> + Unpin,
) -> Result<T, String> {
    match futures::future::select(
        handshake,
        Box::pin(glommio::timer::sleep(HANDSHAKE_TIMEOUT)),
    )
    .await
    {
        futures::future::Either::Left((result, _)) => {
            result.map_err(|e| format!("TLS handshake failed: {e}"))
        }
        futures::future::Either::Right(_) => Err("TLS handshake timed out".into()),
    }
}
