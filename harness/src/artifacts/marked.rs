//! Marked images: copies of a recipe's image that differ from it, and from each other,
//! only by a marker string, for pull and deploy-cycle measurements.
//!
//! A marked base is the recipe's base rootfs with one extra file, `/.deploybench-marker`,
//! so its layer is new to the engine even while the recipe's own base image is
//! present: a pull of it downloads every layer without removing images that other
//! runs may use. A marked application layer carries the service binary with the marker
//! appended after the ELF data, which the loader ignores. Such a binary stands for a
//! one-line change of the service: a new application layer on an unchanged base.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bollard::Docker;
use sha2::{Digest, Sha256};

use super::cache::CachedRootfs;
use super::{app_layer, ArtifactCache, ArtifactError, Recipe, ServiceBinary};
use crate::engine::images::{self, BaseImageConfig, ImageError};

/// Path of the marker file in a marked base, relative to the root.
pub const MARKER_FILE: &str = ".deploybench-marker";

/// An image this module built or imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedImage {
    pub tag: String,
    /// Image id as the engine reports it, `sha256:<hex>`.
    pub id: String,
    /// Uncompressed size of all layers.
    pub size_bytes: u64,
}

/// Returns the service binary's bytes with `marker` appended in a line of its own.
pub fn marked_binary(binary: &[u8], marker: &str) -> Vec<u8> {
    let mut bytes = binary.to_vec();
    bytes.extend_from_slice(format!("\ndeploybench version marker: {marker}\n").as_bytes());
    bytes
}

/// Makes sure the recipe's own base image exists, importing or building it as
/// [`super::ensure_image`] does, and returns its tag.
pub async fn ensure_recipe_base(
    docker: &Docker,
    cache: &ArtifactCache,
    recipe: &Recipe,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<String, ArtifactError> {
    super::ensure_base_image(docker, cache, recipe, progress).await?;
    Ok(recipe.base_tag())
}

/// Imports the recipe's base rootfs plus the file `/.deploybench-marker` holding
/// `marker` as a one-layer image tagged `tag`, with `labels` on it. The rootfs tarball
/// comes from the cache and is built first when missing. A temporary copy with the
/// marker is written in the cache's `tmp/` folder and deleted afterwards.
pub async fn import_marked_base(
    docker: &Docker,
    cache: &ArtifactCache,
    recipe: &Recipe,
    marker: &str,
    tag: &str,
    labels: &BTreeMap<String, String>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<MarkedImage, ArtifactError> {
    let tarball = cache.rootfs_tarball(recipe.base.name(), &recipe.base_hash());
    let rootfs = match CachedRootfs::find(&tarball) {
        Some(cached) => cached,
        None => super::build_rootfs(cache, recipe, &tarball, progress).await?,
    };

    progress(&format!("writing a marked copy of the {} rootfs", recipe.base.name()));
    let work = cache.work_dir("marked-base")?;
    let marked_path = work.path().join("rootfs.tar");
    let (source, destination, contents) = (rootfs.path.clone(), marked_path.clone(), marker.as_bytes().to_vec());
    let written = super::run_blocking(move || write_marked_tarball(&source, &destination, &contents)).await;
    let sha256 = written.map_err(|(action, path, source)| ArtifactError::Io { action, path, source })?;

    progress(&format!("importing marked base {tag}"));
    let config = BaseImageConfig {
        architecture: recipe.base.architecture.clone(),
        env: recipe.base.env.clone(),
        labels: labels.clone(),
        created_by: format!("deploybench: rootfs of {} with the marker file /{MARKER_FILE}", recipe.origin),
    };
    images::import_rootfs(docker, tag, &marked_path, &sha256, &config).await?;
    work.remove()?;
    describe(docker, "import marked base", tag).await
}

/// Builds the recipe's application layer on `base_tag` from `binary` with `marker`
/// appended, tagged `tag`, with `labels` on it.
pub async fn build_marked_app(
    docker: &Docker,
    binary: &ServiceBinary,
    recipe: &Recipe,
    base_tag: &str,
    marker: &str,
    tag: &str,
    labels: &BTreeMap<String, String>,
) -> Result<MarkedImage, ArtifactError> {
    let bytes = tokio::fs::read(&binary.path).await.map_err(ArtifactError::io("read", &binary.path))?;
    if hex::encode(Sha256::digest(&bytes)) != binary.sha256 {
        return Err(ArtifactError::InvalidBinary {
            path: binary.path.clone(),
            reason: "the file changed after it was hashed".to_string(),
        });
    }
    let marked = marked_binary(&bytes, marker);
    let context = app_layer::build_context(&recipe.app, base_tag, &marked)
        .map_err(ArtifactError::io("assemble the build context for", &binary.path))?;
    images::build_from_context(docker, tag, context, labels).await?;
    describe(docker, "build marked image", tag).await
}

async fn describe(docker: &Docker, action: &'static str, tag: &str) -> Result<MarkedImage, ArtifactError> {
    let image =
        images::find_image(docker, tag).await?.ok_or_else(|| ImageError::Missing { action, tag: tag.to_string() })?;
    Ok(MarkedImage {
        tag: tag.to_string(),
        id: image.id.unwrap_or_default(),
        size_bytes: image.size.unwrap_or(0).max(0) as u64,
    })
}

type WriteFailure = (&'static str, PathBuf, io::Error);

/// Writes the marker file's tar entry, then every byte of the tarball at `source`, to
/// `destination`, and returns the SHA-256 (hex) of what it wrote. A tar archive may
/// list a file before the directories of other entries, so the result is a valid
/// archive of the rootfs plus the marker at its root.
fn write_marked_tarball(source: &Path, destination: &Path, marker: &[u8]) -> Result<String, WriteFailure> {
    let read_failure = |error| ("read", source.to_path_buf(), error);
    let write_failure = |error| ("write", destination.to_path_buf(), error);
    let mut input = io::BufReader::new(std::fs::File::open(source).map_err(read_failure)?);
    let file = std::fs::File::create(destination).map_err(write_failure)?;
    let mut output = io::BufWriter::new(file);
    let mut hasher = Sha256::new();

    let mut header = tar::Header::new_ustar();
    header.set_path(MARKER_FILE).expect("the marker path is short ASCII");
    header.set_size(marker.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut entry = header.as_bytes().to_vec();
    entry.extend_from_slice(marker);
    entry.resize(entry.len().div_ceil(512) * 512, 0);
    hasher.update(&entry);
    output.write_all(&entry).map_err(write_failure)?;

    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let count = input.read(&mut buffer).map_err(read_failure)?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
        output.write_all(&buffer[..count]).map_err(write_failure)?;
    }
    let file = output.into_inner().map_err(|error| write_failure(error.into_error()))?;
    file.sync_all().map_err(write_failure)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_tarball_lists_marker_then_rootfs() {
        let folder = tempfile::tempdir().unwrap();
        let source = folder.path().join("rootfs.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "etc/hostname", &b"host\n"[..]).unwrap();
        std::fs::write(&source, builder.into_inner().unwrap()).unwrap();

        let destination = folder.path().join("marked.tar");
        let sha256 = write_marked_tarball(&source, &destination, b"run-1").unwrap();

        let bytes = std::fs::read(&destination).unwrap();
        assert_eq!(sha256, hex::encode(Sha256::digest(&bytes)));
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, String)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut contents = String::new();
                entry.read_to_string(&mut contents).unwrap();
                (path, contents)
            })
            .collect();
        assert_eq!(
            entries,
            vec![(MARKER_FILE.to_string(), "run-1".to_string()), ("etc/hostname".to_string(), "host\n".to_string())]
        );
    }

    #[test]
    fn marked_binary_keeps_original_prefix() {
        let marked = marked_binary(b"\x7fELF", "v2");
        assert!(marked.starts_with(b"\x7fELF"));
        assert!(marked.ends_with(b"deploybench version marker: v2\n"));
        assert_ne!(marked_binary(b"\x7fELF", "v1"), marked);
    }
}
