//! A local image registry: Debian's `docker-registry` (CNCF distribution v2) serving
//! on 127.0.0.1 from a temporary folder, for pull and deploy measurements.
//!
//! The Docker engine pushes to and pulls from a registry on 127.0.0.1 over plain HTTP
//! without configuration, because it treats loopback registries as insecure-allowed.
//! The registry process and its folder belong to one [`LocalRegistry`]: `stop` or drop
//! ends the process (SIGTERM, then SIGKILL) and deletes the folder.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::image::{CreateImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::docker::{owner_is_alive, owner_label_value};
use crate::results::CheckRecord;

/// The registry program, from Debian's `docker-registry` package.
pub const REGISTRY_PROGRAM: &str = "docker-registry";

/// Prefix of the temporary folders that hold a registry's configuration, storage and log.
const FOLDER_PREFIX: &str = "deploybench-registry-";
/// File in the registry folder with the owner label value of the harness process.
const OWNER_FILE: &str = "owner";
/// File in the registry folder with the registry's process id.
const PID_FILE: &str = "registry.pid";
const LOG_FILE: &str = "registry.log";
const CONFIG_FILE: &str = "config.yml";

/// Time allowed from the spawn to the first 200 from `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const READY_POLL: Duration = Duration::from_millis(20);
/// Time allowed for one readiness request.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time allowed between SIGTERM and SIGKILL when the registry stops.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Spawn attempts: another process can take the free port between the check and the spawn.
const START_ATTEMPTS: u32 = 3;
/// Lines of the registry log quoted in errors.
const LOG_TAIL_LINES: usize = 15;

/// Media types of the single-platform manifests the registry may return.
pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot run {REGISTRY_PROGRAM}: {source}; install it with `apt-get install docker-registry` (or run scripts/setup.sh)")]
    ProgramMissing {
        #[source]
        source: io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the registry on {address} exited before it answered GET /v2/ ({status}); last log lines:\n{log}")]
    Exited { address: SocketAddr, status: String, log: String },
    #[error("the registry on {address} did not answer GET /v2/ with 200 within {limit:?} (last error: {last_error}); last log lines:\n{log}")]
    NotReady { address: SocketAddr, limit: Duration, last_error: String, log: String },
    #[error("GET {path} on the registry at {address} failed: {message}")]
    Request { address: SocketAddr, path: String, message: String },
    #[error("the registry at {address} returned an invalid manifest for {reference}: {message}")]
    InvalidManifest { address: SocketAddr, reference: String, message: String },
    #[error("cannot {action} {reference}: {source}")]
    Engine {
        action: &'static str,
        reference: String,
        #[source]
        source: BollardError,
    },
    #[error("cannot {action} {reference}: the engine reported: {message}")]
    Stream { action: &'static str, reference: String, message: String },
}

/// Duration and layer counts of one pull, from the engine's progress stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullStats {
    /// From the pull call to the end of the engine's progress stream, when the image
    /// is stored and ready to run.
    pub elapsed: Duration,
    /// Layers the engine downloaded and extracted (status `Pull complete`).
    pub layers_downloaded: usize,
    /// Layers the engine already had (status `Already exists`).
    pub layers_present: usize,
}

/// A running registry on 127.0.0.1 and its temporary folder.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Option<Child>,
    address: SocketAddr,
    /// Contains `config.yml`, `storage/`, `registry.log`, `registry.pid` and `owner`.
    folder: PathBuf,
}

/// A layer or configuration blob named in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    /// Bytes of the blob as stored and sent: compressed for layers.
    pub size: u64,
}

/// A single-platform image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    /// Returns the sum of the compressed layer sizes, the bytes a pull with no layer
    /// present downloads besides the manifest and the configuration blob.
    pub fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|layer| layer.size).sum()
    }

    /// Returns the compressed bytes of the layers that `present` does not contain, the
    /// bytes a pull downloads when the image `present` is already local.
    pub fn layer_bytes_missing_from(&self, present: &Manifest) -> u64 {
        self.layers
            .iter()
            .filter(|layer| !present.layers.iter().any(|other| other.digest == layer.digest))
            .map(|layer| layer.size)
            .sum()
    }
}

impl LocalRegistry {
    /// Starts a registry with its folder in the system's temporary directory.
    pub async fn start() -> Result<LocalRegistry, RegistryError> {
        LocalRegistry::start_in(&std::env::temp_dir()).await
    }

    /// Starts a registry on a free 127.0.0.1 port with its folder inside `parent`, and
    /// waits until `GET /v2/` returns 200.
    pub async fn start_in(parent: &Path) -> Result<LocalRegistry, RegistryError> {
        LocalRegistry::start_on(parent, free_port).await
    }

    /// Like [`LocalRegistry::start_in`], with the port of each attempt from `next_port`.
    async fn start_on(
        parent: &Path,
        mut next_port: impl FnMut() -> io::Result<u16>,
    ) -> Result<LocalRegistry, RegistryError> {
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let folder = create_folder(parent)?;
            let port = next_port().map_err(|source| RegistryError::Io {
                action: "find a free port on",
                path: PathBuf::from("127.0.0.1"),
                source,
            })?;
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let mut registry = LocalRegistry { child: None, address, folder };
            registry.spawn()?;
            match registry.wait_ready().await {
                Ok(()) => {
                    tracing::info!(%address, folder = %registry.folder.display(), "local registry started");
                    return Ok(registry);
                }
                Err(error @ RegistryError::Exited { .. }) if attempt < START_ATTEMPTS => {
                    // Most likely another process took the port; try a new one.
                    tracing::warn!(%address, attempt, %error, "local registry exited early, retrying on another port");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("the loop runs at least once"))
    }

    /// Returns the address the registry listens on, always on 127.0.0.1.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Reads from /proc every TCP address the registry process listens on: the
    /// sockets among its open files that are in the LISTEN state, IPv4 and IPv6.
    pub fn listening_addresses(&self) -> Result<Vec<SocketAddr>, String> {
        let pid = self.child.as_ref().ok_or("the registry is not running")?.id();
        let process = procfs::process::Process::new(pid as i32).map_err(|error| format!("process {pid}: {error}"))?;
        let inodes: Vec<u64> = process
            .fd()
            .map_err(|error| format!("open files of process {pid}: {error}"))?
            .filter_map(|fd| match fd.ok()?.target {
                procfs::process::FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect();
        let mut entries = procfs::net::tcp().map_err(|error| format!("/proc/net/tcp: {error}"))?;
        entries.extend(procfs::net::tcp6().map_err(|error| format!("/proc/net/tcp6: {error}"))?);
        Ok(entries
            .into_iter()
            .filter(|entry| entry.state == procfs::net::TcpState::Listen && inodes.contains(&entry.inode))
            .map(|entry| entry.local_address)
            .collect())
    }

    /// Returns `127.0.0.1:PORT/repository`, the repository as the engine names it.
    pub fn repository(&self, repository: &str) -> String {
        format!("{}/{repository}", self.address)
    }

    /// Returns the folder with the registry's configuration, storage and log.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Fetches the manifest of `repository:tag` over HTTP from the registry itself.
    pub async fn manifest(&self, repository: &str, tag: &str) -> Result<Manifest, RegistryError> {
        let reference = format!("{repository}:{tag}");
        let path = format!("/v2/{repository}/manifests/{tag}");
        let accept = format!("{MANIFEST_V2}, {OCI_MANIFEST}");
        let (status, body) = http_get(self.address, &path, Some(&accept))
            .await
            .map_err(|message| RegistryError::Request { address: self.address, path: path.clone(), message })?;
        if status != 200 {
            let message = format!("status {status}: {}", String::from_utf8_lossy(&body).trim());
            return Err(RegistryError::Request { address: self.address, path, message });
        }
        let invalid = |message: String| RegistryError::InvalidManifest {
            address: self.address,
            reference: reference.clone(),
            message,
        };
        let manifest: Manifest = serde_json::from_slice(&body).map_err(|error| invalid(error.to_string()))?;
        if manifest.media_type != MANIFEST_V2 && manifest.media_type != OCI_MANIFEST {
            return Err(invalid(format!(
                "media type {:?} is not a single-platform image manifest",
                manifest.media_type
            )));
        }
        Ok(manifest)
    }

    /// Tags the local image `local` as `127.0.0.1:PORT/repository:tag` and pushes it.
    /// The tag stays; remove it with [`remove_image`].
    pub async fn push(&self, docker: &Docker, local: &str, repository: &str, tag: &str) -> Result<(), RegistryError> {
        let remote = self.repository(repository);
        let reference = format!("{remote}:{tag}");
        let engine_error = |action, source| RegistryError::Engine { action, reference: reference.clone(), source };
        docker
            .tag_image(local, Some(TagImageOptions { repo: remote.as_str(), tag }))
            .await
            .map_err(|source| engine_error("tag an image as", source))?;
        // The registry has no authentication; bollard sends empty credentials.
        let mut results =
            docker.push_image(&remote, Some(PushImageOptions { tag }), Some(DockerCredentials::default()));
        while let Some(result) = results.next().await {
            match result {
                Ok(info) => {
                    if let Some(status) = info.status.as_deref().filter(|_| info.progress.is_none()) {
                        tracing::debug!(reference = %reference, "{status}");
                    }
                }
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(RegistryError::Stream { action: "push", reference, message: error.trim().to_string() });
                }
                Err(source) => return Err(engine_error("push", source)),
            }
        }
        Ok(())
    }

    /// Pulls `127.0.0.1:PORT/repository:tag` and times it to the end of the engine's
    /// progress stream.
    pub async fn pull(&self, docker: &Docker, repository: &str, tag: &str) -> Result<PullStats, RegistryError> {
        let remote = self.repository(repository);
        let reference = format!("{remote}:{tag}");
        let options = CreateImageOptions { from_image: remote.as_str(), tag, ..Default::default() };
        let mut layers_downloaded = 0;
        let mut layers_present = 0;
        let started = Instant::now();
        let mut results = docker.create_image(Some(options), None, None);
        while let Some(result) = results.next().await {
            let info = match result {
                Ok(info) => info,
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(RegistryError::Stream { action: "pull", reference, message: error.trim().to_string() });
                }
                Err(source) => return Err(RegistryError::Engine { action: "pull", reference, source }),
            };
            if let Some(message) = info.error_detail.and_then(|detail| detail.message) {
                return Err(RegistryError::Stream { action: "pull", reference, message: message.trim().to_string() });
            }
            match info.status.as_deref() {
                Some("Pull complete") => layers_downloaded += 1,
                Some("Already exists") => layers_present += 1,
                _ => {}
            }
        }
        let elapsed = started.elapsed();
        Ok(PullStats { elapsed, layers_downloaded, layers_present })
    }

    /// Stops the registry (SIGTERM, then SIGKILL after a grace period) and deletes its
    /// folder. Drop does the same and logs what it could not do.
    pub fn stop(mut self) -> Result<(), RegistryError> {
        self.shut_down()
    }

    fn spawn(&mut self) -> Result<(), RegistryError> {
        let io_error = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { action, path, source }
        };
        let storage = self.folder.join("storage");
        fs::create_dir(&storage).map_err(io_error("create", &storage))?;
        let config = self.folder.join(CONFIG_FILE);
        fs::write(&config, config_yaml(self.address, &storage)).map_err(io_error("write", &config))?;
        let log_path = self.folder.join(LOG_FILE);
        let log = fs::File::create(&log_path).map_err(io_error("create", &log_path))?;
        let log_copy = log.try_clone().map_err(io_error("open", &log_path))?;

        let mut command = Command::new(REGISTRY_PROGRAM);
        command.arg("serve").arg(&config).stdin(Stdio::null()).stdout(log).stderr(log_copy);
        // REGISTRY_* variables override the configuration file, so none may leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().map_err(|source| RegistryError::ProgramMissing { source })?;
        let pid_path = self.folder.join(PID_FILE);
        let pid = child.id();
        self.child = Some(child);
        fs::write(&pid_path, format!("{pid}\n")).map_err(io_error("write", &pid_path))?;
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<(), RegistryError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                self.child = None;
                return Err(RegistryError::Exited {
                    address: self.address,
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            // Another process on the port may accept and never respond, so each probe has a timeout.
            let probe = tokio::time::timeout(READY_PROBE_TIMEOUT, http_get(self.address, "/v2/", None)).await;
            let last_error = match probe {
                Ok(Ok((200, _))) => return Ok(()),
                Ok(Ok((status, _))) => format!("status {status}"),
                Ok(Err(message)) => message,
                Err(_) => format!("no answer within {READY_PROBE_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                return Err(RegistryError::NotReady {
                    address: self.address,
                    limit: READY_TIMEOUT,
                    last_error,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.folder.join(LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        if tail.trim().is_empty() {
            "(no log output)".to_string()
        } else {
            tail
        }
    }

    fn shut_down(&mut self) -> Result<(), RegistryError> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
            tracing::info!(address = %self.address, "local registry stopped");
        }
        if self.folder.as_os_str().is_empty() {
            return Ok(());
        }
        let folder = std::mem::take(&mut self.folder);
        match fs::remove_dir_all(&folder) {
            Err(source) if source.kind() != io::ErrorKind::NotFound => {
                Err(RegistryError::Io { action: "delete the registry folder", path: folder, source })
            }
            _ => Ok(()),
        }
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!(%error, "local registry cleanup incomplete");
        }
    }
}

/// Removes the image reference `reference` (a tag, or an id) from the engine without
/// force, so an image that a container uses is kept and reported. Untagged parent
/// images are pruned, as `docker rmi` does. Returns false when the engine had no
/// such reference.
pub async fn remove_image(docker: &Docker, reference: &str) -> Result<bool, RegistryError> {
    let options = RemoveImageOptions { force: false, noprune: false };
    match docker.remove_image(reference, Some(options), None).await {
        Ok(_) => Ok(true),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
        Err(source) => {
            Err(RegistryError::Engine { action: "remove the image", reference: reference.to_string(), source })
        }
    }
}

/// Builds the run-time check that a registry listens on 127.0.0.1 and nowhere else,
/// from the addresses its process listens on.
pub fn loopback_only_check(model: &str, listening: Result<Vec<SocketAddr>, String>) -> CheckRecord {
    let check = "local registry listens on 127.0.0.1 only".to_string();
    let (passed, detail) = match listening {
        Err(message) => (false, format!("cannot read the registry's sockets: {message}")),
        Ok(addresses) if addresses.is_empty() => (false, "the registry process holds no listening socket".to_string()),
        Ok(addresses) => {
            let list = addresses.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(", ");
            let others: Vec<String> = addresses
                .iter()
                .filter(|address| address.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map(SocketAddr::to_string)
                .collect();
            if others.is_empty() {
                (true, format!("listening on {list}, read from /proc"))
            } else {
                (false, format!("listening on {list}; not on 127.0.0.1: {}", others.join(", ")))
            }
        }
    };
    CheckRecord { model: model.to_string(), check, passed, detail }
}

/// Sends SIGTERM, waits up to [`STOP_GRACE`] for the exit, then kills and reaps.
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet, so it names our child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while std::time::Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    tracing::warn!(pid = child.id(), "local registry ignored SIGTERM, killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Creates the registry folder inside `parent` and records this process as its owner.
fn create_folder(parent: &Path) -> Result<PathBuf, RegistryError> {
    let folder = tempfile::Builder::new()
        .prefix(FOLDER_PREFIX)
        .tempdir_in(parent)
        .map_err(|source| RegistryError::Io {
            action: "create a registry folder in",
            path: parent.to_path_buf(),
            source,
        })?
        .keep();
    write_owner_file(&folder).map_err(|source| RegistryError::Io {
        action: "write",
        path: folder.join(OWNER_FILE),
        source,
    })?;
    Ok(folder)
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Renders the registry configuration: filesystem storage in `storage`, HTTP on
/// `address` only, no access log, and a fixed HTTP secret because the registry warns
/// about a missing one.
fn config_yaml(address: SocketAddr, storage: &Path) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: \"{address}\"\n  secret: deploybench-local-registry\n",
        storage.display()
    )
}

/// Sends one `GET path` to `address` and returns the status and the body.
async fn http_get(address: SocketAddr, path: &str, accept: Option<&str>) -> Result<(u16, Bytes), String> {
    let stream = TcpStream::connect(address).await.map_err(|error| format!("connect: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, address.to_string());
    if let Some(accept) = accept {
        request = request.header(hyper::header::ACCEPT, accept);
    }
    let request = request.body(Empty::<Bytes>::new()).map_err(|error| error.to_string())?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|error| format!("request: {error}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|error| format!("body: {error}"))?.to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

/// Stops registries and deletes registry folders in `parent` that a harness process
/// which no longer runs left behind; returns how many folders it deleted. Registries
/// of running harness processes are kept.
pub fn remove_leftover_registries(parent: &Path) -> usize {
    remove_dead_owner_folders(parent, FOLDER_PREFIX, |folder| {
        if let Some(pid) = leftover_registry_pid(folder) {
            // SAFETY: kill(2) on a pid whose command line names this folder's configuration.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    })
}

/// Writes the owner label value of this process into `folder`, so that a later run
/// can tell a leftover of a dead harness from a folder in use.
pub fn write_owner_file(folder: &Path) -> io::Result<()> {
    fs::write(folder.join(OWNER_FILE), owner_label_value())
}

/// Deletes the folders in `parent` whose name starts with `prefix` and whose owner file
/// names a process that is gone, and returns how many it deleted. `before_delete` runs
/// on each first. A folder without an owner file is kept, because its harness may be
/// about to write one.
pub fn remove_dead_owner_folders(parent: &Path, prefix: &str, mut before_delete: impl FnMut(&Path)) -> usize {
    let Ok(entries) = fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let folder = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(prefix) || !folder.is_dir() {
            continue;
        }
        let Ok(owner) = fs::read_to_string(folder.join(OWNER_FILE)) else { continue };
        if owner_is_alive(owner.trim()) {
            continue;
        }
        before_delete(&folder);
        match fs::remove_dir_all(&folder) {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(folder = %folder.display(), %error, "cannot delete a leftover folder"),
        }
    }
    removed
}

/// Returns the pid recorded in a registry folder if that process still runs the
/// registry with this folder's configuration, so a reused pid is never signalled.
fn leftover_registry_pid(folder: &Path) -> Option<libc::pid_t> {
    let pid: libc::pid_t = fs::read_to_string(folder.join(PID_FILE)).ok()?.trim().parse().ok()?;
    let command_line = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = folder.join(CONFIG_FILE);
    let names_config = command_line
        .split(|byte| *byte == 0)
        .any(|argument| Path::new(std::ffi::OsStr::from_bytes(argument)) == config);
    names_config.then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1500, "digest": "sha256:c"},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 70000000, "digest": "sha256:base"},
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1500000, "digest": "sha256:app1"}
        ]
    }"#;

    /// A port that another process took between the check and the spawn makes the
    /// registry exit; the start then tries the next port.
    #[tokio::test]
    async fn start_skips_taken_port() {
        if Command::new(REGISTRY_PROGRAM).arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI installs {REGISTRY_PROGRAM}");
            eprintln!("skipped: {REGISTRY_PROGRAM} is not installed");
            return;
        }
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut ports = vec![free_port().unwrap(), taken_port];
        let parent = tempfile::tempdir().unwrap();

        let registry = LocalRegistry::start_on(parent.path(), || Ok(ports.pop().unwrap())).await.unwrap();
        assert_ne!(registry.address().port(), taken_port);
        assert_eq!(registry.listening_addresses(), Ok(vec![registry.address()]));
        registry.stop().unwrap();
        assert!(ports.is_empty(), "the second port was used");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0, "the failed attempt's folder is removed");
    }

    #[test]
    fn loopback_check_names_other_addresses() {
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let passed = loopback_only_check("distroless", Ok(vec![loopback]));
        assert!(passed.passed);
        assert_eq!(passed.detail, "listening on 127.0.0.1:5000, read from /proc");

        let wide = loopback_only_check("distroless", Ok(vec![loopback, "0.0.0.0:5001".parse().unwrap()]));
        assert!(!wide.passed);
        assert_eq!(wide.detail, "listening on 127.0.0.1:5000, 0.0.0.0:5001; not on 127.0.0.1: 0.0.0.0:5001");

        let ipv6 = loopback_only_check("distroless", Ok(vec!["[::]:5000".parse().unwrap()]));
        assert!(!ipv6.passed, "{ipv6:?}");
        assert!(!loopback_only_check("distroless", Ok(Vec::new())).passed);
        let unreadable = loopback_only_check("distroless", Err("process 7: gone".to_string()));
        assert_eq!((unreadable.passed, unreadable.detail.as_str()), (false, "cannot read the registry's sockets: process 7: gone"));
    }

    #[test]
    fn manifest_layer_bytes_summed() {
        let manifest: Manifest = serde_json::from_str(MANIFEST).unwrap();
        assert_eq!(manifest.layer_bytes(), 71_500_000);
        assert_eq!(manifest.config.size, 1500);
    }

    #[test]
    fn missing_layers_exclude_shared_base() {
        let first: Manifest = serde_json::from_str(MANIFEST).unwrap();
        let second: Manifest =
            serde_json::from_str(&MANIFEST.replace("sha256:app1", "sha256:app2").replace("1500000", "1600000"))
                .unwrap();
        assert_eq!(second.layer_bytes_missing_from(&first), 1_600_000);
        assert_eq!(first.layer_bytes_missing_from(&first), 0);
    }

    #[test]
    fn config_listens_on_loopback_only() {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, 5123));
        let yaml = config_yaml(address, Path::new("/tmp/x/storage"));
        assert!(yaml.contains("addr: \"127.0.0.1:5123\""), "{yaml}");
        assert!(yaml.contains("rootdirectory: \"/tmp/x/storage\""), "{yaml}");
    }

    #[test]
    fn leftover_folder_of_dead_owner_removed() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join(format!("{FOLDER_PREFIX}dead"));
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(OWNER_FILE), "4294967295:5").unwrap();
        let alive = parent.path().join(format!("{FOLDER_PREFIX}alive"));
        fs::create_dir(&alive).unwrap();
        fs::write(alive.join(OWNER_FILE), owner_label_value()).unwrap();
        let unrelated = parent.path().join("unrelated");
        fs::create_dir(&unrelated).unwrap();

        assert_eq!(remove_leftover_registries(parent.path()), 1);
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn owned_folders_need_owner_file() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join("deploybench-vm-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(OWNER_FILE), "4294967295:5").unwrap();
        let mine = parent.path().join("deploybench-vm-mine");
        fs::create_dir(&mine).unwrap();
        write_owner_file(&mine).unwrap();
        let unowned = parent.path().join("deploybench-vm-unowned");
        fs::create_dir(&unowned).unwrap();

        let mut seen = Vec::new();
        let removed = remove_dead_owner_folders(parent.path(), "deploybench-vm-", |folder| seen.push(folder.to_path_buf()));
        assert_eq!(removed, 1);
        assert_eq!(seen, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(mine.exists());
        assert!(unowned.exists(), "a folder without an owner file may be in use");
    }
}
