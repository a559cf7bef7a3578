//! The files of an image, read from a `docker save` archive: its layers applied in
//! order, whiteouts included, so a file deleted by a later layer does not count.

use std::collections::BTreeSet;
use std::io::Read;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFiles {
    /// Paths without a leading slash, such as `bin/sh`.
    pub paths: BTreeSet<String>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl ImageFiles {
    /// The subset of `candidates` that exists in the image.
    pub fn present(&self, candidates: &[&str]) -> BTreeSet<String> {
        candidates
            .iter()
            .filter(|path| self.paths.contains(**path))
            .map(|path| path.to_string())
            .collect()
    }

    /// Applies the layers named by `manifest.json` of a `docker save` archive in order.
    pub fn from_saved_archive(archive: &[u8]) -> std::io::Result<ImageFiles> {
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in tar::Archive::new(archive).entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            entries.push((name, bytes));
        }
        let manifest = entries
            .iter()
            .find(|(name, _)| name == "manifest.json")
            .ok_or_else(|| std::io::Error::other("the archive has no manifest.json"))?;
        let manifest: Vec<ManifestEntry> = serde_json::from_slice(&manifest.1).map_err(std::io::Error::other)?;
        let layers = manifest.first().map(|entry| entry.layers.clone()).unwrap_or_default();

        let mut files = ImageFiles::default();
        for layer in layers {
            let (_, bytes) = entries
                .iter()
                .find(|(name, _)| *name == layer)
                .ok_or_else(|| std::io::Error::other(format!("the archive lacks layer {layer}")))?;
            files.apply_layer(bytes)?;
        }
        Ok(files)
    }

    /// Adds a layer's paths and removes those its whiteout files delete.
    pub fn apply_layer(&mut self, layer: &[u8]) -> std::io::Result<()> {
        for entry in tar::Archive::new(layer).entries()? {
            let entry = entry?;
            let path = entry.path()?.to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
            let (folder, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            if name == ".wh..wh..opq" {
                let prefix = format!("{folder}/");
                self.paths.retain(|existing| !existing.starts_with(&prefix));
            } else if let Some(deleted) = name.strip_prefix(".wh.") {
                let deleted = if folder.is_empty() { deleted.to_string() } else { format!("{folder}/{deleted}") };
                let prefix = format!("{deleted}/");
                self.paths.retain(|existing| existing != &deleted && !existing.starts_with(&prefix));
            } else if !path.is_empty() {
                self.paths.insert(path);
            }
        }
        Ok(())
    }
}
