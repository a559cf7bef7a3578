//! Image operations on the Docker engine: look up a tag, import a rootfs tarball as a
//! one-layer base image, and build an image from an in-memory build context.
//!
//! The engine is reached only through bollard. A rootfs tarball is imported through
//! `POST /images/load` (bollard's `import_image_stream`), which takes an image archive in
//! the `docker save` layout. [`import_rootfs`] therefore wraps the tarball in such an
//! archive on the fly: `manifest.json`, the image configuration and the tarball as the
//! one layer.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::errors::Error as BollardError;
use bollard::image::{BuildImageOptions, ImportImageOptions};
use bollard::models::{BuildInfo, ImageInspect};
use bollard::Docker;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Size of the chunks in which a rootfs tarball is sent to the engine.
const IMPORT_CHUNK_BYTES: usize = 1 << 20;

/// The creation time written into imported base images. A fixed time makes the image
/// id depend only on the layer and the configuration, as reproducible-build tools do.
const FIXED_CREATED: &str = "1970-01-01T00:00:00Z";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot {action} {tag}: {source}")]
    Call {
        action: &'static str,
        tag: String,
        #[source]
        source: BollardError,
    },
    #[error("cannot {action} {tag}: the engine reported: {message}")]
    Stream {
        action: &'static str,
        tag: String,
        message: String,
    },
    #[error("cannot import base image {tag}: reading the rootfs tarball {path} failed: {source}; delete it so that the next run rebuilds it")]
    ReadLayer {
        tag: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {action} {tag}: the engine finished without error but has no image under that tag")]
    Missing { action: &'static str, tag: String },
}

/// The configuration of an imported base image.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImageConfig {
    /// Docker architecture name, for example `amd64`.
    pub architecture: String,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The history entry shown by `docker history`.
    pub created_by: String,
}

/// Inspects `tag`; returns `None` when the engine has no image under it.
pub async fn find_image(docker: &Docker, tag: &str) -> Result<Option<ImageInspect>, ImageError> {
    match docker.inspect_image(tag).await {
        Ok(image) => Ok(Some(image)),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(source) => Err(ImageError::Call { action: "inspect image", tag: tag.to_string(), source }),
    }
}

/// Imports the uncompressed rootfs tarball at `layer` as a one-layer image tagged `tag`
/// and returns the image id. `layer_sha256` is the tarball's SHA-256 in hex: it becomes
/// the layer's diff id, and the engine rejects the import if it does not match.
pub async fn import_rootfs(
    docker: &Docker,
    tag: &str,
    layer: &Path,
    layer_sha256: &str,
    config: &BaseImageConfig,
) -> Result<String, ImageError> {
    let read_error = |source| ImageError::ReadLayer { tag: tag.to_string(), path: layer.to_path_buf(), source };
    let file = tokio::fs::File::open(layer).await.map_err(read_error)?;
    let layer_size = file.metadata().await.map_err(read_error)?.len();

    let config_json = image_config_json(layer_sha256, config);
    let config_name = format!("{}.json", hex::encode(Sha256::digest(&config_json)));
    let layer_name = format!("{layer_sha256}/layer.tar");
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [layer_name],
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value always serializes");

    // The archive is: manifest.json, the configuration, then the layer's header, its
    // bytes streamed from the file, its padding and the two zero blocks that end a tar.
    let mut head = Vec::new();
    append_small_entry(&mut head, "manifest.json", &manifest);
    append_small_entry(&mut head, &config_name, &config_json);
    head.extend_from_slice(&entry_header(&layer_name, layer_size));
    let mut tail = vec![0u8; padding_for(layer_size)];
    tail.extend_from_slice(&[0u8; 1024]);

    let failure: Arc<Mutex<Option<io::Error>>> = Arc::default();
    let body = stream::once(async move { Bytes::from(head) })
        .chain(file_chunks(file, layer_size, Arc::clone(&failure)))
        .chain(stream::once(async move { Bytes::from(tail) }));

    let results = docker.import_image_stream(ImportImageOptions { quiet: true }, body, None);
    let outcome = drain_build_stream(results, "import base image", tag).await;
    if let Some(source) = failure.lock().expect("the lock is never poisoned").take() {
        return Err(read_error(source));
    }
    outcome?;
    image_id(docker, "import base image", tag).await
}

/// Builds the image `tag` with the classic builder from `context`, an uncompressed tar
/// holding a `Dockerfile` at its root, and returns the image id. Errors that the engine
/// reports inside the build output (a failed step, a missing base image) are returned as
/// [`ImageError::Stream`].
pub async fn build_from_context(
    docker: &Docker,
    tag: &str,
    context: Vec<u8>,
    labels: &BTreeMap<String, String>,
) -> Result<String, ImageError> {
    let options = BuildImageOptions::<String> {
        dockerfile: "Dockerfile".to_string(),
        t: tag.to_string(),
        rm: true,
        forcerm: true,
        // Every base is a local image: never contact a registry, and give steps no network.
        pull: false,
        networkmode: "none".to_string(),
        labels: labels.iter().map(|(key, value)| (key.clone(), value.clone())).collect::<HashMap<_, _>>(),
        ..Default::default()
    };
    let results = docker.build_image(options, None, Some(Bytes::from(context)));
    drain_build_stream(results, "build image", tag).await?;
    image_id(docker, "build image", tag).await
}

/// Consumes a build or load output stream and fails on the first error it carries.
/// Returns the image id if the stream announced one.
pub async fn drain_build_stream<S>(results: S, action: &'static str, tag: &str) -> Result<Option<String>, ImageError>
where
    S: Stream<Item = Result<BuildInfo, BollardError>>,
{
    let mut results = std::pin::pin!(results);
    let mut announced_id = None;
    while let Some(result) = results.next().await {
        let info = match result {
            Ok(info) => info,
            Err(BollardError::DockerStreamError { error }) => {
                return Err(ImageError::Stream { action, tag: tag.to_string(), message: error.trim().to_string() });
            }
            Err(source) => return Err(ImageError::Call { action, tag: tag.to_string(), source }),
        };
        if let Some(message) = info.error.or_else(|| info.error_detail.and_then(|detail| detail.message)) {
            return Err(ImageError::Stream { action, tag: tag.to_string(), message: message.trim().to_string() });
        }
        if let Some(line) = info.stream.as_deref().map(str::trim_end).filter(|line| !line.is_empty()) {
            tracing::debug!(tag, "{line}");
        }
        if let Some(id) = info.aux.and_then(|aux| aux.id) {
            announced_id = Some(id);
        }
    }
    Ok(announced_id)
}

async fn image_id(docker: &Docker, action: &'static str, tag: &str) -> Result<String, ImageError> {
    find_image(docker, tag)
        .await?
        .and_then(|image| image.id)
        .ok_or_else(|| ImageError::Missing { action, tag: tag.to_string() })
}

fn image_config_json(layer_sha256: &str, config: &BaseImageConfig) -> Vec<u8> {
    let document = serde_json::json!({
        "architecture": config.architecture,
        "os": "linux",
        "created": FIXED_CREATED,
        "config": {
            "Env": config.env,
            "Labels": config.labels,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": [format!("sha256:{layer_sha256}")],
        },
        "history": [{
            "created": FIXED_CREATED,
            "created_by": config.created_by,
        }],
    });
    serde_json::to_vec(&document).expect("a JSON value always serializes")
}

/// Reads `file` in chunks. A read error or a file shorter than `expected` ends the
/// stream early, which truncates the archive so that the engine rejects it, and leaves
/// the cause in `failure` for the caller to report.
fn file_chunks(
    file: tokio::fs::File,
    expected: u64,
    failure: Arc<Mutex<Option<io::Error>>>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    stream::unfold((file, expected), move |(mut file, remaining)| {
        let failure = Arc::clone(&failure);
        async move {
            if remaining == 0 {
                return None;
            }
            let want = remaining.min(IMPORT_CHUNK_BYTES as u64) as usize;
            let mut buffer = vec![0u8; want];
            let read = match file.read(&mut buffer).await {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended {remaining} bytes early, it changed while being sent"),
                )),
                Ok(count) => Ok(count),
                Err(error) => Err(error),
            };
            match read {
                Ok(count) => {
                    buffer.truncate(count);
                    Some((Bytes::from(buffer), (file, remaining - count as u64)))
                }
                Err(error) => {
                    *failure.lock().expect("the lock is never poisoned") = Some(error);
                    None
                }
            }
        }
    })
}

fn entry_header(path: &str, size: u64) -> [u8; 512] {
    let mut header = tar::Header::new_ustar();
    header.set_path(path).expect("archive member names are short ASCII");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    *header.as_bytes()
}

fn append_small_entry(archive: &mut Vec<u8>, path: &str, contents: &[u8]) {
    archive.extend_from_slice(&entry_header(path, contents.len() as u64));
    archive.extend_from_slice(contents);
    archive.resize(archive.len() + padding_for(contents.len() as u64), 0);
}

/// Bytes of zero padding that follow `size` bytes of data to fill the last 512-byte block.
fn padding_for(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// Force-removes every image carrying the managed label; returns how many were removed.
pub async fn remove_managed_images(docker: &Docker) -> Result<usize, ImageError> {
    use bollard::image::{ListImagesOptions, RemoveImageOptions};

    let options = ListImagesOptions::<String> {
        all: false,
        filters: std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", crate::engine::docker::MANAGED_LABEL)],
        )]),
        ..Default::default()
    };
    let listed = docker.list_images(Some(options)).await.map_err(|source| ImageError::Call {
        action: "list images",
        tag: "deploybench/*".to_string(),
        source,
    })?;
    let mut removed = 0;
    for image in listed {
        let options = RemoveImageOptions { force: true, noprune: false };
        match docker.remove_image(&image.id, Some(options), None).await {
            Ok(_) => removed += 1,
            Err(error) => tracing::warn!(image = %image.id, %error, "cannot remove image"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ErrorDetail, ImageId};

    fn drain(items: Vec<Result<BuildInfo, BollardError>>) -> Result<Option<String>, ImageError> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(drain_build_stream(stream::iter(items), "build image", "deploybench/test:1"))
    }

    #[test]
    fn build_stream_error_field_fails() {
        let items = vec![
            Ok(BuildInfo { stream: Some("Step 1/2 : FROM scratch\n".into()), ..Default::default() }),
            Ok(BuildInfo { error: Some("COPY failed: file not found\n".into()), ..Default::default() }),
        ];
        let error = drain(items).unwrap_err();
        assert!(matches!(error, ImageError::Stream { .. }), "{error:?}");
        assert_eq!(error.to_string(), "cannot build image deploybench/test:1: the engine reported: COPY failed: file not found");
    }

    #[test]
    fn build_stream_error_detail_alone_fails() {
        let detail = ErrorDetail { code: None, message: Some("no space left on device".into()) };
        let items = vec![Ok(BuildInfo { error_detail: Some(detail), ..Default::default() })];
        assert!(drain(items).unwrap_err().to_string().contains("no space left on device"));
    }

    #[test]
    fn build_stream_mapped_error_fails() {
        let items = vec![Err(BollardError::DockerStreamError { error: "pull access denied".into() })];
        assert!(matches!(drain(items).unwrap_err(), ImageError::Stream { .. }));
    }

    #[test]
    fn build_stream_returns_announced_id() {
        let items = vec![
            Ok(BuildInfo { stream: Some("Successfully built 0123\n".into()), ..Default::default() }),
            Ok(BuildInfo { aux: Some(ImageId { id: Some("sha256:0123".into()) }), ..Default::default() }),
        ];
        assert_eq!(drain(items).unwrap(), Some("sha256:0123".to_string()));
    }

    #[test]
    fn small_entries_fill_whole_blocks() {
        let mut archive = Vec::new();
        append_small_entry(&mut archive, "manifest.json", b"[]");
        assert_eq!(archive.len(), 1024);
        let mut reader = tar::Archive::new(archive.as_slice());
        let mut entries = reader.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("manifest.json"));
        let mut contents = String::new();
        std::io::Read::read_to_string(&mut entry, &mut contents).unwrap();
        assert_eq!(contents, "[]");
    }

    #[test]
    fn padding_rounds_to_block() {
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 511);
        assert_eq!(padding_for(512), 0);
        assert_eq!(padding_for(513), 511);
    }
}
