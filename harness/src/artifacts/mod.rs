//! Artifacts: the static refservice binary and the container images built from it,
//! locally, from Debian packages, with no image registry.
//!
//! Each image is two layers. The base is imported from a rootfs tarball and tagged
//! `<base repository>:<first 12 hex digits of the base hash>`. The application layer is
//! built on it from an in-memory context and tagged `<repository>:<12 digits of the
//! recipe hash>`. The recipes in `workloads/images/` describe what each contains (see
//! [`recipe`]). An image whose tag exists is reused as it is. A base whose tag is gone
//! is imported again from the rootfs tarball in the [`ArtifactCache`], and only a
//! missing tarball makes the build download packages or run debootstrap again.

mod app_layer;
mod binary;
mod cache;
mod debian;
mod error;
pub mod marked;
mod process;
pub mod recipe;
mod rootfs;
pub mod vm_disk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bollard::models::ImageInspect;
use bollard::Docker;
use sha2::{Digest, Sha256};

use crate::engine::docker::MANAGED_LABEL;
use crate::engine::images::{self, BaseImageConfig, ImageError};

pub use binary::{build_service_binary, ServiceBinary, SERVICE_TARGET};
pub use cache::ArtifactCache;
pub use error::ArtifactError;
pub use recipe::Recipe;

use cache::CachedRootfs;
use recipe::BaseSource;
use rootfs::PackOptions;

/// The port refservice listens on inside every image.
pub const SERVICE_PORT: u16 = 8080;

/// Label holding the full recipe hash, on every application image.
pub const RECIPE_HASH_LABEL: &str = "io.deploybench.recipe-hash";
/// Label holding the full base hash, on every base image and the images built on it.
pub const BASE_HASH_LABEL: &str = "io.deploybench.base-hash";

const MIB: f64 = 1024.0 * 1024.0;

/// Modification time of every entry in a package-made rootfs, so that the same packages
/// give the same tarball.
const PACKAGE_ROOTFS_MTIME: u64 = 0;

/// An image present in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArtifact {
    pub tag: String,
    /// Image id as the engine reports it, `sha256:<hex>`.
    pub id: String,
    /// Uncompressed size of all layers.
    pub size_bytes: u64,
    pub base_tag: String,
    /// True when the tag already existed and nothing was built.
    pub reused: bool,
    /// Full hex SHA-256. Its first 12 digits are the tag after the colon.
    pub recipe_hash: String,
}

impl ImageArtifact {
    pub fn size_mib(&self) -> f64 {
        self.size_bytes as f64 / MIB
    }
}

/// Returns the workspace this crate was compiled from, the usual argument of
/// [`build_service_binary`].
pub fn source_workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Builds the distroless image from `workloads/images/distroless.toml`, or reuses it.
pub async fn ensure_distroless_image(
    docker: &Docker,
    cache: &ArtifactCache,
    binary: &ServiceBinary,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ImageArtifact, ArtifactError> {
    ensure_image(docker, cache, binary, &Recipe::distroless()?, progress).await
}

/// Builds the fat image from `workloads/images/fat-image.toml`, or reuses it. A first
/// build runs debootstrap, which needs root and takes about a minute.
pub async fn ensure_fat_image(
    docker: &Docker,
    cache: &ArtifactCache,
    binary: &ServiceBinary,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ImageArtifact, ArtifactError> {
    ensure_image(docker, cache, binary, &Recipe::fat_image()?, progress).await
}

/// Builds the image that `recipe` describes around `binary`, or reuses it when its tag
/// exists. `progress` receives a short message before each step.
///
/// Two runs may call this at once. Cache files and folders are written under temporary
/// names and renamed into place, and a tag written twice ends on one whole image, but
/// both runs may do the same work.
pub async fn ensure_image(
    docker: &Docker,
    cache: &ArtifactCache,
    binary: &ServiceBinary,
    recipe: &Recipe,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ImageArtifact, ArtifactError> {
    let started = Instant::now();
    let recipe_hash = recipe.recipe_hash(&binary.sha256);
    let tag = recipe.image_tag(&binary.sha256);
    let base_tag = recipe.base_tag();
    if let Some(image) = images::find_image(docker, &tag).await? {
        progress(&format!("reusing {tag}"));
        return describe(recipe, image, tag, base_tag, recipe_hash, true);
    }

    ensure_base_image(docker, cache, recipe, progress).await?;

    progress(&format!("building application layer {tag}"));
    let binary_bytes = tokio::fs::read(&binary.path).await.map_err(ArtifactError::io("read", &binary.path))?;
    if hex::encode(Sha256::digest(&binary_bytes)) != binary.sha256 {
        return Err(ArtifactError::InvalidBinary {
            path: binary.path.clone(),
            reason: "the file changed after it was hashed".to_string(),
        });
    }
    let context = app_layer::build_context(&recipe.app, &base_tag, &binary_bytes)
        .map_err(ArtifactError::io("assemble the build context for", &binary.path))?;
    let labels = BTreeMap::from([
        (MANAGED_LABEL.to_string(), "true".to_string()),
        (RECIPE_HASH_LABEL.to_string(), recipe_hash.clone()),
        (BASE_HASH_LABEL.to_string(), recipe.base_hash()),
    ]);
    images::build_from_context(docker, &tag, context, &labels).await?;

    let image = images::find_image(docker, &tag)
        .await?
        .ok_or_else(|| ImageError::Missing { action: "build image", tag: tag.clone() })?;
    tracing::info!(%tag, elapsed_s = started.elapsed().as_secs_f64(), "image built");
    describe(recipe, image, tag, base_tag, recipe_hash, false)
}

/// Makes sure the base image exists, importing it from the cached rootfs tarball and
/// building that tarball first if it is missing.
async fn ensure_base_image(
    docker: &Docker,
    cache: &ArtifactCache,
    recipe: &Recipe,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), ArtifactError> {
    let base_tag = recipe.base_tag();
    if images::find_image(docker, &base_tag).await?.is_some() {
        progress(&format!("reusing base image {base_tag}"));
        return Ok(());
    }
    let base_hash = recipe.base_hash();
    let tarball = cache.rootfs_tarball(recipe.base.name(), &base_hash);
    let rootfs = match CachedRootfs::find(&tarball) {
        Some(cached) => cached,
        None => build_rootfs(cache, recipe, &tarball, progress).await?,
    };

    progress(&format!("importing base layer {base_tag}"));
    let file_name = tarball.file_name().unwrap_or_default().to_string_lossy();
    let config = BaseImageConfig {
        architecture: recipe.base.architecture.clone(),
        env: recipe.base.env.clone(),
        labels: BTreeMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            (BASE_HASH_LABEL.to_string(), base_hash.clone()),
        ]),
        created_by: format!("deploybench: import of rootfs {file_name} from {}", recipe.origin),
    };
    images::import_rootfs(docker, &base_tag, &rootfs.path, &rootfs.sha256, &config).await?;
    Ok(())
}

/// Builds the base's rootfs tarball into the cache.
async fn build_rootfs(
    cache: &ArtifactCache,
    recipe: &Recipe,
    tarball: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<CachedRootfs, ArtifactError> {
    let base = recipe.base.clone();
    let cache = cache.clone();
    let tarball = tarball.to_path_buf();
    let work = cache.work_dir(base.name())?;

    match base.source() {
        BaseSource::Packages(packages) => {
            let missing = debian::uncached_debs(&cache, &base, &packages.names);
            if missing.is_empty() {
                progress(&format!("using {} cached Debian packages", packages.names.len()));
            } else {
                tracing::info!(packages = %missing.join(" "), mirror = %base.mirror, suite = %base.suite, "downloading Debian packages");
                progress(&format!("downloading {} Debian packages from {}", missing.len(), base.suite));
            }
            let packages = packages.clone();
            let (work, debs) = {
                let (cache, base, names) = (cache.clone(), base.clone(), packages.names.clone());
                run_blocking(move || {
                    let debs = debian::fetch_debs(&cache, &base, &names, work.path());
                    (work, debs)
                })
                .await
            };
            let debs = debs?;

            progress(&format!("unpacking {} packages and writing the rootfs tarball", debs.len()));
            run_blocking(move || {
                let unpacked = work.path().join("unpacked");
                let rootfs = work.path().join("rootfs");
                debian::unpack_debs(&debs, &unpacked)?;
                let owners = debian::assemble_package_rootfs(&unpacked, &rootfs, &base, &packages)?;
                let options = PackOptions { fixed_mtime: Some(PACKAGE_ROOTFS_MTIME), owners };
                let stored = CachedRootfs::store(&tarball, |writer| rootfs::pack_tree(&rootfs, writer, &options))?;
                work.remove()?;
                Ok(stored)
            })
            .await
        }
        BaseSource::Debootstrap(source) => {
            let extra = match source.include.len() {
                0 => String::new(),
                count => format!(" with {count} extra packages"),
            };
            tracing::info!(include = %source.include.join(","), mirror = %base.mirror, suite = %base.suite, "running debootstrap");
            progress(&format!("debootstrap {}{extra} (about a minute)", base.suite));
            let source = source.clone();
            let (work, owners) = {
                let (cache, base) = (cache.clone(), base.clone());
                run_blocking(move || {
                    let owners = debian::debootstrap_rootfs(&cache, &base, &source, &work.path().join("rootfs"));
                    (work, owners)
                })
                .await
            };
            let owners = owners?;

            progress("packing the rootfs tarball");
            run_blocking(move || {
                let rootfs = work.path().join("rootfs");
                let options = PackOptions { fixed_mtime: None, owners };
                let stored = CachedRootfs::store(&tarball, |writer| rootfs::pack_tree(&rootfs, writer, &options))?;
                work.remove()?;
                Ok(stored)
            })
            .await
        }
    }
}

/// Runs blocking file and process work off the async runtime, re-raising its panics.
async fn run_blocking<T: Send + 'static>(task: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(task).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("a blocking artifact task was cancelled by runtime shutdown: {error}"),
    }
}

fn describe(
    recipe: &Recipe,
    image: ImageInspect,
    tag: String,
    base_tag: String,
    recipe_hash: String,
    reused: bool,
) -> Result<ImageArtifact, ArtifactError> {
    let size_bytes = image.size.unwrap_or(0).max(0) as u64;
    if let Some(limit_mib) = recipe.app.max_size_mib {
        let size_mib = size_bytes as f64 / MIB;
        if size_mib > limit_mib {
            return Err(ArtifactError::TooLarge { tag, size_mib, limit_mib });
        }
    }
    Ok(ImageArtifact { tag, id: image.id.unwrap_or_default(), size_bytes, base_tag, reused, recipe_hash })
}
