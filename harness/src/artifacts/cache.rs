//! The on-disk cache of downloaded packages and rootfs tarballs, and the renames and
//! work directories that keep it consistent when two runs build at once.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::error::ArtifactError;

/// The folder that contains downloaded `.deb` files, rootfs tarballs and build work directories.
///
/// Layout: `debs/<suite>-<arch>/` (packages from `apt-get download`),
/// `debs/debootstrap-<suite>-<arch>/` (debootstrap's `--cache-dir`),
/// `rootfs/<base name>-<base hash>/` with `rootfs.tar` and `rootfs.tar.sha256`, and
/// `tmp/` (work directories, deleted when a build ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactCache {
    pub root: PathBuf,
}

impl ArtifactCache {
    pub fn new(root: impl Into<PathBuf>) -> ArtifactCache {
        ArtifactCache { root: root.into() }
    }

    /// Returns `$DEPLOYBENCH_CACHE`, else `$XDG_CACHE_HOME/deploybench`, else
    /// `$HOME/.cache/deploybench`, else `deploybench-cache` in the temporary directory.
    /// Empty variables count as unset and a relative path is taken from the current directory.
    pub fn default_location() -> ArtifactCache {
        let variable = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
        let root = variable("DEPLOYBENCH_CACHE")
            .or_else(|| variable("XDG_CACHE_HOME").map(|path| path.join("deploybench")))
            .or_else(|| variable("HOME").map(|path| path.join(".cache").join("deploybench")))
            .unwrap_or_else(|| std::env::temp_dir().join("deploybench-cache"));
        ArtifactCache { root: std::path::absolute(&root).unwrap_or(root) }
    }

    pub(crate) fn deb_dir(&self, suite: &str, architecture: &str) -> PathBuf {
        self.root.join("debs").join(format!("{suite}-{architecture}"))
    }

    pub(crate) fn debootstrap_cache_dir(&self, suite: &str, architecture: &str) -> PathBuf {
        self.root.join("debs").join(format!("debootstrap-{suite}-{architecture}"))
    }

    /// Returns the path of a base's rootfs tarball, alone in a directory of its own as
    /// [`CachedRootfs::store`] requires.
    pub(crate) fn rootfs_tarball(&self, base_name: &str, base_hash: &str) -> PathBuf {
        self.root.join("rootfs").join(format!("{base_name}-{base_hash}")).join("rootfs.tar")
    }

    /// Creates a fresh work directory under `tmp/`, deleted when the returned guard drops.
    pub(crate) fn work_dir(&self, label: &str) -> Result<WorkDir, ArtifactError> {
        let path = self.root.join("tmp").join(unique_name(label));
        fs::create_dir_all(&path).map_err(ArtifactError::io("create the work directory", &path))?;
        Ok(WorkDir { path })
    }
}

/// A rootfs tarball in the cache and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedRootfs {
    pub path: PathBuf,
    pub sha256: String,
}

impl CachedRootfs {
    fn checksum_path(tarball: &Path) -> PathBuf {
        let mut name = tarball.as_os_str().to_owned();
        name.push(".sha256");
        PathBuf::from(name)
    }

    /// Returns the cached tarball if both it and its checksum file exist. [`store`]
    /// creates their directory by one rename, so their presence means both are whole.
    ///
    /// [`store`]: CachedRootfs::store
    pub fn find(tarball: &Path) -> Option<CachedRootfs> {
        let checksum = fs::read_to_string(Self::checksum_path(tarball)).ok()?;
        let checksum = checksum.trim();
        let valid = checksum.len() == 64 && checksum.bytes().all(|byte| byte.is_ascii_hexdigit());
        (valid && tarball.is_file()).then(|| CachedRootfs { path: tarball.to_path_buf(), sha256: checksum.to_string() })
    }

    /// Writes a tarball with `write` and stores it with its checksum. `tarball` must be the
    /// only file of its directory, as [`ArtifactCache::rootfs_tarball`] lays it out.
    ///
    /// Both files are written into a temporary directory beside the final one, which is
    /// then renamed into place. A rename onto an existing non-empty directory fails, so
    /// when two runs store the same tarball, the first one's stays and the second run
    /// returns it: a tarball never changes under its checksum or under a reader.
    pub fn store(
        tarball: &Path,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<CachedRootfs, ArtifactError> {
        let (Some(directory), Some(file_name)) = (tarball.parent(), tarball.file_name()) else {
            panic!("a cached tarball path has a directory and a file name: {}", tarball.display());
        };
        let parent = directory.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(ArtifactError::io("create the directory", parent))?;
        let directory_name = directory.file_name().unwrap_or_default().to_string_lossy();
        let staging = WorkDir { path: parent.join(format!(".{}.tmp", unique_name(&directory_name))) };
        fs::create_dir(staging.path()).map_err(ArtifactError::io("create the directory", staging.path()))?;

        let staged_tarball = staging.path().join(file_name);
        let sha256 = write_synced(&staged_tarball, |file| {
            let mut hashing = HashingWriter { inner: io::BufWriter::new(file), hasher: Sha256::new() };
            write(&mut hashing)?;
            hashing.inner.flush()?;
            Ok(hex::encode(hashing.hasher.finalize()))
        })?;
        write_synced(&Self::checksum_path(&staged_tarball), |file| file.write_all(format!("{sha256}\n").as_bytes()))?;

        if fs::rename(staging.path(), directory).is_err() {
            if let Some(existing) = CachedRootfs::find(tarball) {
                tracing::debug!(path = %tarball.display(), "another run stored this tarball first, using its copy");
                return Ok(existing);
            }
            // A directory left incomplete (by a user deleting one file, for example) is replaced.
            remove_unmounted_tree(directory)?;
            fs::rename(staging.path(), directory).map_err(ArtifactError::io("rename a temporary directory onto", directory))?;
        }
        Ok(CachedRootfs { path: tarball.to_path_buf(), sha256 })
    }
}

/// Creates `path`, fills it with `write` and flushes it to disk.
fn write_synced<T>(path: &Path, write: impl FnOnce(&mut File) -> io::Result<T>) -> Result<T, ArtifactError> {
    let written = File::create(path).and_then(|mut file| {
        let value = write(&mut file)?;
        file.sync_all()?;
        Ok(value)
    });
    written.map_err(ArtifactError::io("write", path))
}

/// Moves `source` to `destination` by rename, which is atomic on one file system.
pub(crate) fn rename_into(source: &Path, destination: &Path) -> Result<(), ArtifactError> {
    if let Some(directory) = destination.parent() {
        fs::create_dir_all(directory).map_err(ArtifactError::io("create the directory", directory))?;
    }
    fs::rename(source, destination).map_err(ArtifactError::io("move a file into", destination))
}

/// A directory for one build's intermediate files, deleted on drop.
///
/// NOTE: a run that is killed leaves its work directory under the cache's `tmp/`;
/// delete such leftovers by hand when no run is active.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the directory, after checking that nothing is mounted inside it: debootstrap
    /// mounts /proc and /sys in its target while it runs, and deleting through a mount
    /// would delete the host's files.
    pub fn remove(mut self) -> Result<(), ArtifactError> {
        let path = std::mem::take(&mut self.path);
        remove_unmounted_tree(&path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        if let Err(error) = remove_unmounted_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), "work directory left behind: {error}");
        }
    }
}

fn remove_unmounted_tree(path: &Path) -> Result<(), ArtifactError> {
    if let Some(mount_point) = mount_point_inside(path) {
        return Err(ArtifactError::MountedWorkDir { path: path.to_path_buf(), mount_point });
    }
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(ArtifactError::Io { action: "delete the work directory", path: path.to_path_buf(), source: error })
        }
        _ => Ok(()),
    }
}

/// Returns a mount point at or below `path`, read from /proc/self/mountinfo.
fn mount_point_inside(path: &Path) -> Option<PathBuf> {
    let canonical = fs::canonicalize(path).ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo
        .lines()
        // Field 5 is the mount point, with spaces and other bytes escaped as octal.
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .find(|mount_point| mount_point.starts_with(&canonical))
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut output = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4).filter(|_| bytes[index] == b'\\');
        match escape.and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()) {
            Some(byte) => {
                output.push(byte);
                index += 4;
            }
            None => {
                output.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&output).into_owned()
}

/// Returns `label` followed by the process id, the time and a counter, unique per host.
fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{label}.{}.{nanos}.{count}", std::process::id())
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the names in `directory` that end in `.tmp`.
    fn temporary_names(directory: &Path) -> Vec<String> {
        fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn store_then_find_rootfs() {
        let directory = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(directory.path());
        let tarball = cache.rootfs_tarball("test-base", "abc");
        assert_eq!(CachedRootfs::find(&tarball), None);

        let stored = CachedRootfs::store(&tarball, |writer: &mut dyn Write| writer.write_all(b"abc")).unwrap();
        // SHA-256 of "abc" from FIPS 180-2, appendix B.1.
        assert_eq!(stored.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(stored.path, tarball);
        assert_eq!(fs::read(&tarball).unwrap(), b"abc");
        assert_eq!(CachedRootfs::find(&tarball), Some(stored));
        assert_eq!(temporary_names(&directory.path().join("rootfs")), Vec::<String>::new());
    }

    #[test]
    fn second_store_keeps_first_tarball() {
        let directory = tempfile::tempdir().unwrap();
        let tarball = ArtifactCache::new(directory.path()).rootfs_tarball("test-base", "abc");
        let first = CachedRootfs::store(&tarball, |writer: &mut dyn Write| writer.write_all(b"first")).unwrap();
        let second = CachedRootfs::store(&tarball, |writer: &mut dyn Write| writer.write_all(b"second")).unwrap();
        assert_eq!(second, first);
        assert_eq!(fs::read(&tarball).unwrap(), b"first");
        assert_eq!(temporary_names(&directory.path().join("rootfs")), Vec::<String>::new());
    }

    #[test]
    fn incomplete_directory_replaced() {
        let directory = tempfile::tempdir().unwrap();
        let tarball = ArtifactCache::new(directory.path()).rootfs_tarball("test-base", "abc");
        CachedRootfs::store(&tarball, |writer: &mut dyn Write| writer.write_all(b"old")).unwrap();
        fs::remove_file(&tarball).unwrap();
        assert_eq!(CachedRootfs::find(&tarball), None);
        let stored = CachedRootfs::store(&tarball, |writer: &mut dyn Write| writer.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&tarball).unwrap(), b"new");
        assert_eq!(CachedRootfs::find(&tarball), Some(stored));
    }

    #[test]
    fn failed_store_leaves_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let tarball = ArtifactCache::new(directory.path()).rootfs_tarball("test-base", "abc");
        let result = CachedRootfs::store(&tarball, |writer: &mut dyn Write| {
            writer.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(result.unwrap_err().to_string().contains("disk full"));
        assert_eq!(CachedRootfs::find(&tarball), None);
        assert_eq!(fs::read_dir(directory.path().join("rootfs")).unwrap().count(), 0);
    }

    #[test]
    fn rootfs_without_checksum_is_not_found() {
        let directory = tempfile::tempdir().unwrap();
        let tarball = directory.path().join("base.tar");
        fs::write(&tarball, b"partial").unwrap();
        assert_eq!(CachedRootfs::find(&tarball), None);
        fs::write(CachedRootfs::checksum_path(&tarball), "not a checksum\n").unwrap();
        assert_eq!(CachedRootfs::find(&tarball), None);
    }

    #[test]
    fn work_dir_removed_on_drop() {
        let directory = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(directory.path());
        let work = cache.work_dir("test").unwrap();
        let path = work.path().to_path_buf();
        fs::write(path.join("file"), b"x").unwrap();
        drop(work);
        assert!(!path.exists());
    }

    #[test]
    fn mountinfo_octal_escapes_decoded() {
        assert_eq!(unescape_mountinfo(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape_mountinfo(r"/plain\"), r"/plain\");
    }

    #[test]
    fn proc_mount_found_inside_root() {
        assert_eq!(mount_point_inside(Path::new("/")).map(|path| path.starts_with("/")), Some(true));
    }
}
