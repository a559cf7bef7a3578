//! Packing a rootfs directory into the uncompressed tarball that becomes a base layer.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::debian::Owners;

/// Top-level directories whose contents are left out: the container runtime mounts its
/// own /dev, /proc and /sys, and debootstrap leaves device nodes in /dev.
const RUNTIME_MOUNTED: [&str; 3] = ["dev", "proc", "sys"];

#[derive(Debug, Clone, Default)]
pub(crate) struct PackOptions {
    /// Modification time written for every entry; the on-disk time when `None`.
    pub fixed_mtime: Option<u64>,
    /// Owners written instead of the on-disk ones, by path relative to the root.
    pub owners: Owners,
}

/// Writes the tree under `root` as a tar archive: entries in sorted order, parents before
/// children, with modes, owners, symlinks and hard links kept. Sockets, FIFOs and device
/// nodes are skipped, and so are the contents of /dev, /proc and /sys.
///
/// NOTE: extended attributes (file capabilities, for example) are not copied.
pub(crate) fn pack_tree(root: &Path, writer: &mut dyn Write, options: &PackOptions) -> io::Result<()> {
    let mut builder = tar::Builder::new(writer);
    let mut packer = Packer { options, links: HashMap::new(), skipped: 0 };
    packer.pack_children(&mut builder, root, Path::new(""))?;
    builder.finish()?;
    if packer.skipped > 0 {
        tracing::debug!(root = %root.display(), count = packer.skipped, "skipped special files while packing");
    }
    Ok(())
}

struct Packer<'a> {
    options: &'a PackOptions,
    /// First path packed for each (device, inode) of a file with several hard links.
    links: HashMap<(u64, u64), PathBuf>,
    skipped: usize,
}

impl Packer<'_> {
    fn pack_children(&mut self, builder: &mut tar::Builder<&mut dyn Write>, directory: &Path, relative: &Path) -> io::Result<()> {
        let mut entries = fs::read_dir(directory)?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let relative_path = relative.join(entry.file_name());
            self.pack_entry(builder, &entry.path(), &relative_path)?;
        }
        Ok(())
    }

    fn pack_entry(&mut self, builder: &mut tar::Builder<&mut dyn Write>, path: &Path, relative_path: &Path) -> io::Result<()> {
        let metadata = fs::symlink_metadata(path)?;
        let kind = metadata.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
        header.set_mode(metadata.mode() & 0o7777);
        if let Some(mtime) = self.options.fixed_mtime {
            header.set_mtime(mtime);
        }
        if let Some(&(uid, gid)) = self.options.owners.get(relative_path) {
            header.set_uid(uid.into());
            header.set_gid(gid.into());
        }

        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, relative_path, io::empty())?;
            let runtime_mounted = relative_path.parent() == Some(Path::new(""))
                && RUNTIME_MOUNTED.iter().any(|name| relative_path == Path::new(name));
            if !runtime_mounted {
                self.pack_children(builder, path, relative_path)?;
            }
        } else if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, relative_path, fs::read_link(path)?)?;
        } else if kind.is_file() {
            let key = (metadata.dev(), metadata.ino());
            if metadata.nlink() > 1 {
                if let Some(first) = self.links.get(&key) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    let first = first.clone();
                    return builder.append_link(&mut header, relative_path, first);
                }
                self.links.insert(key, relative_path.to_path_buf());
            }
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, relative_path, File::open(path)?)?;
        } else {
            self.skipped += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    struct Entry {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        link: Option<String>,
        contents: Vec<u8>,
    }

    fn unpack(archive: &[u8]) -> Vec<Entry> {
        let mut reader = tar::Archive::new(archive);
        reader
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents).unwrap();
                Entry {
                    path: entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string(),
                    kind: header.entry_type(),
                    mode: header.mode().unwrap(),
                    owner: (header.uid().unwrap(), header.gid().unwrap()),
                    mtime: header.mtime().unwrap(),
                    link: entry.link_name().unwrap().map(|link| link.to_string_lossy().into_owned()),
                    contents,
                }
            })
            .collect()
    }

    #[test]
    fn tree_packed_in_order_with_links() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path();
        fs::create_dir_all(base.join("usr/bin")).unwrap();
        fs::create_dir_all(base.join("tmp")).unwrap();
        fs::set_permissions(base.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::write(base.join("usr/bin/gzip"), b"binary").unwrap();
        fs::set_permissions(base.join("usr/bin/gzip"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::hard_link(base.join("usr/bin/gzip"), base.join("usr/bin/gunzip")).unwrap();
        std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
        fs::create_dir_all(base.join("dev/pts")).unwrap();
        fs::write(base.join("dev/null"), b"").unwrap();

        let mut owners = Owners::new();
        owners.insert(PathBuf::from("tmp"), (65532, 65532));
        let options = PackOptions { fixed_mtime: Some(0), owners };
        let mut archive = Vec::new();
        pack_tree(base, &mut archive, &options).unwrap();
        let entries = unpack(&archive);

        let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["bin", "dev", "tmp", "usr", "usr/bin", "usr/bin/gunzip", "usr/bin/gzip"]);
        let find = |path: &str| entries.iter().find(|entry| entry.path == path).unwrap();

        assert_eq!(find("bin").kind, tar::EntryType::Symlink);
        assert_eq!(find("bin").link.as_deref(), Some("usr/bin"));
        assert_eq!(find("tmp").mode, 0o1777);
        assert_eq!(find("tmp").owner, (65532, 65532));
        // The first name of a hard-linked file carries the data, and later names link to it.
        assert_eq!(find("usr/bin/gunzip").kind, tar::EntryType::Regular);
        assert_eq!(find("usr/bin/gunzip").contents, b"binary");
        assert_eq!(find("usr/bin/gunzip").mode, 0o755);
        assert_eq!(find("usr/bin/gzip").kind, tar::EntryType::Link);
        assert_eq!(find("usr/bin/gzip").link.as_deref(), Some("usr/bin/gunzip"));
        assert!(entries.iter().all(|entry| entry.mtime == 0));
    }

    #[test]
    fn long_paths_survive() {
        let root = tempfile::tempdir().unwrap();
        let deep = "a".repeat(60) + "/" + &"b".repeat(60);
        fs::create_dir_all(root.path().join(&deep)).unwrap();
        fs::write(root.path().join(&deep).join("file"), b"x").unwrap();
        let mut archive = Vec::new();
        pack_tree(root.path(), &mut archive, &PackOptions::default()).unwrap();
        let entries = unpack(&archive);
        assert_eq!(entries.last().unwrap().path, format!("{deep}/file"));
    }
}
