//! `deploybench audit IMAGE`: the production checklist of a hardened image, checked
//! against any local image, with a pass or fail and the reason for each item.
//!
//! The checklist: a non-root user, a health check, no shell, no package manager, a
//! size under 50 MB, no secret-looking names in the environment or labels, and a base
//! that is not a whole distribution.

use std::collections::BTreeSet;

use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;

mod files;

pub use files::ImageFiles;

/// Largest image, in bytes, that passes the size item: 50 MB, the size below which
/// the containerization article places a slim image.
pub const MAX_IMAGE_BYTES: u64 = 50_000_000;

/// Substrings that make an environment variable or label name look like a secret.
const SECRET_WORDS: [&str; 7] = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY", "CREDENTIAL"];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditItem {
    pub item: String,
    pub passed: bool,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot inspect image {image}: {source}; is it a local image? `docker images` lists them")]
    Inspect {
        image: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot export image {image} to read its files: {message}")]
    Export { image: String, message: String },
}

/// Facts the checklist reads from an image's configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageFacts {
    pub user: String,
    /// The health check command; `None` when there is none or it is `NONE`.
    pub healthcheck: Option<Vec<String>>,
    pub size_bytes: u64,
    pub env_names: Vec<String>,
    pub label_names: Vec<String>,
}

/// Runs every checklist item over an image's facts and files.
pub fn checklist(facts: &ImageFacts, files: &ImageFiles) -> Vec<AuditItem> {
    let item = |name: &str, passed: bool, reason: String| AuditItem { item: name.to_string(), passed, reason };
    let user = facts.user.trim();
    let root = user.is_empty() || user == "root" || user == "0" || user.starts_with("0:") || user.starts_with("root:");
    let shells = files.present(&["bin/sh", "bin/bash", "bin/dash", "bin/ash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash"]);
    let managers = files.present(&["usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg", "sbin/apk", "usr/bin/yum", "usr/bin/dnf", "usr/bin/rpm"]);
    let distribution = files.present(&[
        "var/lib/dpkg/status",
        "etc/debian_version",
        "etc/alpine-release",
        "lib/apk/db/installed",
        "etc/redhat-release",
        "var/lib/rpm",
    ]);
    let secrets: Vec<String> = facts
        .env_names
        .iter()
        .map(|name| format!("ENV {name}"))
        .chain(facts.label_names.iter().map(|name| format!("LABEL {name}")))
        .filter(|name| SECRET_WORDS.iter().any(|word| name.to_uppercase().contains(word)))
        .collect();

    vec![
        item(
            "runs as a non-root user",
            !root,
            if root { format!("USER is {:?}, which runs as root", facts.user) } else { format!("USER {user}") },
        ),
        match &facts.healthcheck {
            Some(test) => item("has a health check", true, format!("HEALTHCHECK {}", test.join(" "))),
            None => item("has a health check", false, "no HEALTHCHECK in the image".to_string()),
        },
        item(
            "has no shell",
            shells.is_empty(),
            if shells.is_empty() { "no shell found".to_string() } else { format!("contains {}", list(&shells)) },
        ),
        item(
            "has no package manager",
            managers.is_empty(),
            if managers.is_empty() { "no package manager found".to_string() } else { format!("contains {}", list(&managers)) },
        ),
        item(
            "is under 50 MB",
            facts.size_bytes < MAX_IMAGE_BYTES,
            format!("{:.1} MB uncompressed", facts.size_bytes as f64 / 1e6),
        ),
        item(
            "has no secret-looking names in its environment or labels",
            secrets.is_empty(),
            if secrets.is_empty() { "none found".to_string() } else { format!("found {}", secrets.join(", ")) },
        ),
        item(
            "is not built on a whole distribution",
            distribution.is_empty(),
            if distribution.is_empty() {
                "no distribution package database or release file".to_string()
            } else {
                format!("contains {}", list(&distribution))
            },
        ),
    ]
}

fn list(paths: &BTreeSet<String>) -> String {
    paths.iter().map(|path| format!("/{path}")).collect::<Vec<_>>().join(", ")
}

/// Reads the configuration of a local image.
pub async fn image_facts(docker: &Docker, image: &str) -> Result<ImageFacts, AuditError> {
    let inspect = docker
        .inspect_image(image)
        .await
        .map_err(|source| AuditError::Inspect { image: image.to_string(), source })?;
    let config = inspect.config.unwrap_or_default();
    let healthcheck = config
        .healthcheck
        .and_then(|check| check.test)
        .filter(|test| !test.is_empty() && test[0] != "NONE");
    Ok(ImageFacts {
        user: config.user.unwrap_or_default(),
        healthcheck,
        size_bytes: inspect.size.unwrap_or(0).max(0) as u64,
        env_names: config
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|pair| pair.split_once('=').map_or(pair.clone(), |(name, _)| name.to_string()))
            .collect(),
        label_names: config.labels.unwrap_or_default().into_keys().collect(),
    })
}

/// Exports the image and lists the files of its merged layers.
pub async fn image_files(docker: &Docker, image: &str) -> Result<ImageFiles, AuditError> {
    let export_error = |message: String| AuditError::Export { image: image.to_string(), message };
    let mut archive = Vec::new();
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.map_err(|error| export_error(error.to_string()))?);
    }
    let image_name = image.to_string();
    tokio::task::spawn_blocking(move || ImageFiles::from_saved_archive(&archive))
        .await
        .map_err(|error| AuditError::Export { image: image_name.clone(), message: error.to_string() })?
        .map_err(|error| AuditError::Export { image: image_name, message: error.to_string() })
}

/// Audits a local image and returns every item.
pub async fn audit(docker: &Docker, image: &str) -> Result<Vec<AuditItem>, AuditError> {
    let facts = image_facts(docker, image).await?;
    let files = image_files(docker, image).await?;
    Ok(checklist(&facts, &files))
}

#[cfg(test)]
mod tests;
