//! What the commands share: dialling (TLS, login, --dial-timeout), deadlines, executors, the
//! status request, and failing with etcdctl's "Error: ..." line.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use glommio::Placement;
use lode::api::native::{Request, Response, StatusResponse};
use lode::client::Client;
use lode::ctl::flags;

/// Runs a lock or election session on an executor with SIGINT and SIGTERM caught (`work` gets
/// the flag they set); its result is the exit status.
pub(crate) fn run_session<W, F>(work: W) -> ExitCode
where
    W: FnOnce(Arc<AtomicBool>) -> F + Send + 'static,
    F: std::future::Future<Output = Result<u8, String>> + 'static,
{
    let signals = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(error) = signal_hook::flag::register(signal, signals.clone()) {
            eprintln!("Error: catching signals: {error}");
            return ExitCode::from(1);
        }
    }
    let outcome = lode::executor::builder(Placement::Unbound)
        .spawn(move || async move { work(signals).await })
        .map_err(|e| e.to_string())
        .and_then(|handle| handle.join().map_err(|e| e.to_string()))
        .and_then(|result| result);
    match outcome {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("Error: {error}");
            ExitCode::from(1)
        }
    }
}

pub(crate) async fn fetch_status(client: &Client) -> Result<StatusResponse, String> {
    match client.request(&Request::Status).await {
        Ok(Response::Status(status)) => Ok(status),
        Ok(response) => Err(format!("unexpected response {response:?}")),
        Err(error) => Err(error.to_string()),
    }
}

/// `--dial-timeout`, set once at start.
pub(crate) static DIAL_TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// etcdctl's default dial timeout.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// `work`'s output, or `None` if `limit` passed first.
pub(crate) async fn within<F: std::future::Future>(limit: Duration, work: F) -> Option<F::Output> {
    let expired = glommio::timer::sleep(limit);
    match futures::future::select(Box::pin(work), Box::pin(expired)).await {
        futures::future::Either::Left((output, _)) => Some(output),
        futures::future::Either::Right(_) => None,
    }
}

/// `work`'s result, or etcdctl's "context deadline exceeded" once `limit` passed.
pub(crate) async fn deadline<T, F: std::future::Future<Output = Result<T, String>>>(
    limit: Duration,
    work: F,
) -> Result<T, String> {
    within(limit, work)
        .await
        .unwrap_or_else(|| Err("context deadline exceeded".into()))
}

/// The `host:port` of an endpoint given as host:port or as a client URL.
/// An endpoint's `host:port`, and whether it is dialled over TLS: `https://` always,
/// `http://` never, a bare `host:port` when `tls_by_default` (etcdctl's rules).
fn endpoint_address(
    endpoint: &str,
    tls_by_default: bool,
) -> Result<(String, String, bool), String> {
    if endpoint.contains("://") {
        lode::urls::parse_url(endpoint).map(|url| (url.authority(), url.host, url.tls))
    } else {
        let host = match endpoint.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => endpoint,
        };
        Ok((endpoint.to_string(), host.to_string(), tls_by_default))
    }
}

/// How lodectl dials: etcdctl's TLS settings (`--cacert`, `--cert`, `--key`,
/// `--insecure-skip-tls-verify`, `--insecure-transport`).
pub(crate) struct Dialer {
    security: flags::Security,
    /// Built at the first TLS dial.
    tls: OnceLock<Result<Arc<lode::tls::ClientTls>, String>>,
    /// The user and password to authenticate as (asked for once, at the first dial).
    login: OnceLock<Result<Option<(String, String)>, String>>,
}

impl Dialer {
    pub(crate) fn new(security: flags::Security) -> Dialer {
        Dialer {
            security,
            tls: OnceLock::new(),
            login: OnceLock::new(),
        }
    }

    fn login(&self) -> Result<Option<(String, String)>, String> {
        self.login
            .get_or_init(|| match self.security.login() {
                None => Ok(None),
                Some((user, Some(password))) => Ok(Some((user, password))),
                // As etcdctl: asked for on the terminal, not echoed.
                Some((user, None)) => rpassword::prompt_password("Password: ")
                    .map(|password| Some((user, password)))
                    .map_err(|e| format!("reading the password: {e}")),
            })
            .clone()
    }

    /// Authenticates `client` when a user was given (a server whose auth is off is used
    /// without a token, as etcd's clients do).
    async fn authenticated(&self, client: Client) -> Result<Client, String> {
        if let Some((user, password)) = self.login()? {
            client
                .authenticate(&user, &password)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(client)
    }

    fn tls(&self) -> Result<Arc<lode::tls::ClientTls>, String> {
        self.tls
            .get_or_init(|| {
                let path = |value: &Option<String>| value.as_ref().map(std::path::PathBuf::from);
                lode::tls::command_line_client_config(
                    path(&self.security.cacert).as_deref(),
                    path(&self.security.cert).as_deref(),
                    path(&self.security.key).as_deref(),
                    self.security.insecure_skip_tls_verify,
                )
                .map(lode::tls::ClientTls::fixed)
                .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// A plain or TLS connection to `endpoint` (for HTTP: the dashboard's feed).
    pub(crate) async fn open_stream(&self, endpoint: &str) -> Result<lode::tls::Stream, String> {
        let (address, host, tls) = endpoint_address(endpoint, self.security.tls_by_default())?;
        let tcp = glommio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        if !tls {
            return Ok(lode::tls::Stream::Plain(tcp));
        }
        let config = self.tls()?;
        let stream = config.connect(&host, tcp).await?;
        Ok(lode::tls::Stream::Client(Box::new(stream)))
    }

    async fn dial(&self, endpoint: &str) -> Result<Client, String> {
        let (address, host, tls) = endpoint_address(endpoint, self.security.tls_by_default())?;
        let client = if tls {
            let config = self.tls()?;
            Client::connect_secured(&address, Some((&config, &host))).await
        } else {
            Client::connect(&address).await
        };
        self.authenticated(client.map_err(|e| e.to_string())?).await
    }
}

/// The global flags' dialler (set once at start).
pub(crate) static DIALER: OnceLock<Dialer> = OnceLock::new();
/// make-mirror's `--dest-*` dialler.
pub(crate) static DEST_DIALER: OnceLock<Dialer> = OnceLock::new();

/// A client of the first endpoint that answers within the dial timeout, and that endpoint.
pub(crate) async fn connect(endpoints: &[String]) -> Result<(Client, String), String> {
    let dialer = DIALER.get_or_init(|| Dialer::new(flags::Security::default()));
    connect_with(endpoints, dialer).await
}

/// `connect` with a dialler of its own (make-mirror's destination).
pub(crate) async fn connect_with(
    endpoints: &[String],
    dialer: &Dialer,
) -> Result<(Client, String), String> {
    let dial_timeout = *DIAL_TIMEOUT.get().unwrap_or(&DEFAULT_DIAL_TIMEOUT);
    let mut last = String::from("no endpoints given");
    for endpoint in endpoints {
        match within(dial_timeout, dialer.dial(endpoint)).await {
            Some(Ok(client)) => return Ok((client, endpoint.clone())),
            Some(Err(error)) => last = format!("{endpoint}: {error}"),
            None => last = format!("{endpoint}: context deadline exceeded (--dial-timeout)"),
        }
    }
    Err(format!("cannot connect to any endpoint ({last})"))
}

/// Exit status 1, after `error` on standard error (nothing when it is empty: the command
/// said what went wrong already).
pub(crate) fn fail(error: &str) -> ExitCode {
    if !error.is_empty() {
        eprintln!("Error: {error}");
    }
    ExitCode::from(1)
}

/// Runs `work` on an executor; its result, or why it could not run.
pub(crate) fn on_executor<T, W, F>(work: W) -> Result<T, String>
where
    W: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<T, String>> + 'static,
    T: Send + 'static,
{
    lode::executor::builder(Placement::Unbound)
        .spawn(work)
        .map_err(|e| format!("cannot start an executor: {e}"))
        .and_then(|handle| handle.join().map_err(|e| e.to_string()))
        .and_then(|result| result)
}
