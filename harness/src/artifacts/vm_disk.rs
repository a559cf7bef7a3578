//! The `vm` model's disk: a debootstrap Debian userland with a kernel, systemd and the
//! service, as an ext4 file system in a qcow2 file, with the kernel and initramfs from
//! its /boot copied beside it for QEMU's direct kernel boot.
//!
//! `workloads/images/vm.toml` lists what the disk contains. Like the images, it is built in
//! two stages. The base (debootstrap, the recipe's files, then its commands in a chroot)
//! is cached as a rootfs tarball under the hash of the `[base]` part. The disk (the base
//! unpacked, the service binary, the `[disk]` files and commands, `mkfs.ext4 -d`, then
//! `qemu-img convert`) is cached as a folder `vm/<name>-<disk hash>/` under the
//! [`ArtifactCache`] root, where the disk hash covers the recipe's bytes and the
//! binary's SHA-256. No loop mount is needed, but debootstrap and chroot need root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::{ArtifactCache, CachedRootfs, WorkDir};
use super::debian::{self, Owners};
use super::error::ArtifactError;
use super::process;
use super::recipe::{
    check_package_name, check_path, check_word, default_keyring, relative, BaseRecipe, DebootstrapSource, DirectorySpec,
    FileSpec,
};
use super::rootfs::{self, PackOptions};
use super::ServiceBinary;

/// Version of what the code builds from a disk recipe. Bump it when a code change alters
/// the disks built from an unchanged recipe, so that their hashes change too.
pub const VM_DISK_FORMAT_VERSION: u32 = 1;

const VM_SOURCE: &str = include_str!("../../../workloads/images/vm.toml");

/// File names inside a cached disk folder.
const DISK_FILE: &str = "disk.qcow2";
const KERNEL_FILE: &str = "vmlinuz";
const INITRD_FILE: &str = "initrd.img";
const METADATA_FILE: &str = "disk.json";

const CHROOT_HINT: &str = "chroot comes with coreutils; building the disk needs root";
const MKFS_HINT: &str = "apt-get install e2fsprogs (1.43 or later, for mkfs.ext4 -d)";
pub(crate) const QEMU_IMG_HINT: &str = "apt-get install qemu-utils";

/// A validated disk recipe and the exact bytes it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct VmDiskRecipe {
    /// Names the cache files, for example `vm`.
    pub name: String,
    pub base: VmBase,
    pub disk: DiskStage,
    pub boot: BootSpec,
    /// Origin of the recipe (a path), for error messages.
    pub origin: String,
    source: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmDiskFile {
    name: String,
    base: VmBase,
    disk: DiskStage,
    boot: BootSpec,
}

/// The userland: debootstrap, then files, then commands run in a chroot of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmBase {
    /// Debian suite, for example `bookworm`.
    pub suite: String,
    pub mirror: String,
    /// Debian architecture name, for example `amd64`.
    pub architecture: String,
    /// OpenPGP keyring that verifies the mirror's Release file.
    #[serde(default = "default_keyring")]
    pub keyring: PathBuf,
    /// Commands (program and arguments) run in a chroot after the files are written.
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    pub debootstrap: DebootstrapSource,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// The stage that turns the base into the disk: the service and its systemd unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskStage {
    /// Absolute path of the service binary on the disk.
    pub binary: String,
    /// Size of the ext4 file system in MiB.
    pub size_mib: u64,
    /// Commands (program and arguments) run in a chroot after the files are written.
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// Boot settings of the disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Kernel command line (QEMU `-append`).
    pub append: String,
}

/// A disk in the cache, ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDisk {
    /// The qcow2 file. Boots must use an overlay on it, never the file itself.
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Kernel release, for example `6.1.0-28-amd64`.
    pub kernel_version: String,
    /// Kernel command line.
    pub append: String,
    /// Bytes of the qcow2 file: the file system blocks in use.
    pub size_bytes: u64,
    /// Size of the file system in the guest.
    pub virtual_size_bytes: u64,
    /// Full hex SHA-256 of the recipe's bytes and the service binary's SHA-256.
    pub recipe_hash: String,
    /// True when the disk was found in the cache and not built.
    pub reused: bool,
}

/// Metadata stored in a cached disk folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DiskMetadata {
    recipe_hash: String,
    base_hash: String,
    kernel_version: String,
    virtual_size_bytes: u64,
}

impl VmDiskRecipe {
    /// Parses and validates a recipe. `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<VmDiskRecipe, ArtifactError> {
        let invalid = |message: String| ArtifactError::Recipe { origin: origin.to_string(), message };
        let file: VmDiskFile = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let recipe = VmDiskRecipe {
            name: file.name,
            base: file.base,
            disk: file.disk,
            boot: file.boot,
            origin: origin.to_string(),
            source: text.as_bytes().to_vec(),
        };
        recipe.validate().map_err(invalid)?;
        Ok(recipe)
    }

    /// Returns the recipe `workloads/images/vm.toml`, as compiled in.
    pub fn builtin() -> Result<VmDiskRecipe, ArtifactError> {
        VmDiskRecipe::parse(VM_SOURCE, "workloads/images/vm.toml")
    }

    /// Reads and parses the recipe file at `path`.
    pub fn load(path: &Path) -> Result<VmDiskRecipe, ArtifactError> {
        let text = fs::read_to_string(path).map_err(ArtifactError::io("read the disk recipe", path))?;
        VmDiskRecipe::parse(&text, &path.display().to_string())
    }

    /// Returns the SHA-256 (hex) of the format version and the `[base]` part alone, so that a new
    /// service binary or a changed `[disk]` or `[boot]` part keeps the cached base.
    pub fn base_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("deploybench vm base, format {VM_DISK_FORMAT_VERSION}\n"));
        hasher.update(serde_json::to_vec(&self.base).expect("a disk recipe base always serializes"));
        hex::encode(hasher.finalize())
    }

    /// Returns the SHA-256 (hex) of the format version, the recipe file's bytes and the
    /// service binary's SHA-256.
    pub fn disk_hash(&self, binary_sha256: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("deploybench vm disk, format {VM_DISK_FORMAT_VERSION}\n"));
        hasher.update(&self.source);
        hasher.update(format!("\nservice binary sha256 {binary_sha256}\n"));
        hex::encode(hasher.finalize())
    }

    /// Returns the cache folder of the disk built from this recipe and the binary.
    pub fn disk_folder(&self, cache: &ArtifactCache, binary_sha256: &str) -> PathBuf {
        cache.root.join("vm").join(format!("{}-{}", self.name, self.disk_hash(binary_sha256)))
    }

    fn base_name(&self) -> String {
        format!("{}-base", self.name)
    }

    /// Returns the base in the form that the shared debootstrap code takes.
    fn base_recipe(&self) -> BaseRecipe {
        BaseRecipe {
            repository: format!("deploybench/{}", self.base_name()),
            suite: self.base.suite.clone(),
            mirror: self.base.mirror.clone(),
            architecture: self.base.architecture.clone(),
            keyring: self.base.keyring.clone(),
            env: Vec::new(),
            packages: None,
            debootstrap: Some(self.base.debootstrap.clone()),
            users: Vec::new(),
            directories: self.base.directories.clone(),
            files: self.base.files.clone(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self.name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if !valid_name {
            return Err(format!("name {:?} must be lowercase letters, digits and `-`", self.name));
        }
        check_word("base.suite", &self.base.suite)?;
        check_word("base.architecture", &self.base.architecture)?;
        if !(self.base.mirror.starts_with("http://") || self.base.mirror.starts_with("https://")) {
            return Err(format!("base.mirror {:?} must be an http:// or https:// URL", self.base.mirror));
        }
        check_word("base.debootstrap.variant", &self.base.debootstrap.variant)?;
        for package in &self.base.debootstrap.include {
            check_package_name("base.debootstrap.include", package)?;
        }
        for pattern in &self.base.debootstrap.remove {
            check_path("base.debootstrap.remove", pattern)?;
            let (directory, _) = pattern.rsplit_once('/').unwrap_or_default();
            if directory.contains('*') {
                return Err(format!("base.debootstrap.remove {pattern:?}: `*` is allowed in the last component only"));
            }
        }
        check_commands("base.commands", &self.base.commands)?;
        check_entries("base", &self.base.directories, &self.base.files)?;

        check_path("disk.binary", &self.disk.binary)?;
        // Below 256 MiB a Debian userland with a kernel does not fit.
        if !(256..=1_048_576).contains(&self.disk.size_mib) {
            return Err(format!("disk.size_mib = {} is out of range: expected 256 to 1048576 MiB", self.disk.size_mib));
        }
        check_commands("disk.commands", &self.disk.commands)?;
        check_entries("disk", &self.disk.directories, &self.disk.files)?;
        if self.disk.files.iter().any(|file| file.path == self.disk.binary) {
            return Err(format!("disk.files must not replace the service binary at {}", self.disk.binary));
        }

        let append = &self.boot.append;
        if append.contains('\n') {
            return Err("boot.append must be a single line".to_string());
        }
        // The model reads the boot phases and the reason of a failed boot from ttyS0.
        if !append.split_whitespace().any(|word| word == "console=ttyS0" || word.starts_with("console=ttyS0,")) {
            return Err(format!("boot.append {append:?} must contain console=ttyS0: boot phases are read from the serial console"));
        }
        Ok(())
    }
}

fn check_commands(key: &str, commands: &[Vec<String>]) -> Result<(), String> {
    for command in commands {
        match command.first() {
            Some(program) if !program.trim().is_empty() => {}
            _ => return Err(format!("{key} holds a command without a program: {command:?}")),
        }
    }
    Ok(())
}

fn check_entries(part: &str, directories: &[DirectorySpec], files: &[FileSpec]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    let entries = directories.iter().map(|entry| (&entry.path, entry.mode)).chain(files.iter().map(|entry| (&entry.path, entry.mode)));
    for (path, mode) in entries {
        check_path(&format!("{part} directory or file"), path)?;
        if mode > 0o7777 {
            return Err(format!("{part} entry {path}: mode {mode:o} is above 7777 (write modes in octal, 0o644)"));
        }
        if !seen.insert(path.as_str()) {
            return Err(format!("{part} lists {path} twice"));
        }
    }
    Ok(())
}

/// Builds the disk that `recipe` describes around `binary`, or reuses it from the cache.
/// `progress` receives a short message before each step.
///
/// A first build runs debootstrap, which downloads the packages. On a 2-core host that was
/// running other builds, that took 6 to 7 minutes in all. A new binary or a changed
/// `[disk]` or `[boot]` part reuses the cached base, which took 24 s on the same host.
/// Two runs may build at once: each works in its own folder, and the first finished
/// folder is renamed into place while the other is discarded.
pub async fn ensure_vm_disk(
    cache: &ArtifactCache,
    binary: &ServiceBinary,
    recipe: &VmDiskRecipe,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<VmDisk, ArtifactError> {
    let started = Instant::now();
    let recipe_hash = recipe.disk_hash(&binary.sha256);
    let folder = recipe.disk_folder(cache, &binary.sha256);
    if let Some(disk) = find_disk(&folder, recipe, &recipe_hash)? {
        progress(&format!("reusing disk {}", disk.disk.display()));
        return Ok(disk);
    }

    let base_hash = recipe.base_hash();
    let tarball = cache.rootfs_tarball(&recipe.base_name(), &base_hash);
    let base = match CachedRootfs::find(&tarball) {
        Some(cached) => {
            progress(&format!("reusing the VM base {}", tarball.display()));
            cached
        }
        None => build_base(cache, recipe, &tarball, progress).await?,
    };

    let binary_bytes = tokio::fs::read(&binary.path).await.map_err(ArtifactError::io("read", &binary.path))?;
    if hex::encode(Sha256::digest(&binary_bytes)) != binary.sha256 {
        return Err(ArtifactError::InvalidBinary {
            path: binary.path.clone(),
            reason: "the file changed after it was hashed".to_string(),
        });
    }

    progress("unpacking the VM base and adding the service");
    let work = cache.work_dir(&recipe.name)?;
    let (work, tree) = {
        let (recipe, tarball) = (recipe.clone(), base.path.clone());
        run_blocking(move || {
            let tree = assemble_disk_tree(&work, &recipe, &tarball, &binary_bytes);
            (work, tree)
        })
        .await
    };
    let kernel_version = tree?;

    progress(&format!("writing the {} MiB ext4 file system and converting it to qcow2", recipe.disk.size_mib));
    let metadata = DiskMetadata {
        recipe_hash: recipe_hash.clone(),
        base_hash,
        kernel_version,
        virtual_size_bytes: recipe.disk.size_mib * 1024 * 1024,
    };
    let (size_mib, target) = (recipe.disk.size_mib, folder.clone());
    run_blocking(move || {
        let output = write_disk_files(&work, size_mib, &metadata)?;
        install_folder(&output, &target)?;
        work.remove()
    })
    .await?;

    let disk = find_disk(&folder, recipe, &recipe_hash)?.ok_or_else(|| ArtifactError::Io {
        action: "find the disk just built in",
        path: folder.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "the disk folder is incomplete"),
    })?;
    tracing::info!(disk = %disk.disk.display(), elapsed_s = started.elapsed().as_secs_f64(), "VM disk built");
    Ok(VmDisk { reused: false, ..disk })
}

/// Returns the disk in `folder` if the folder is complete. A folder appears whole, by
/// rename, so a present metadata file means every file is there.
fn find_disk(folder: &Path, recipe: &VmDiskRecipe, recipe_hash: &str) -> Result<Option<VmDisk>, ArtifactError> {
    let metadata_path = folder.join(METADATA_FILE);
    let text = match fs::read_to_string(&metadata_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ArtifactError::Io { action: "read", path: metadata_path, source: error }),
    };
    let metadata: DiskMetadata = serde_json::from_str(&text).map_err(|error| ArtifactError::Io {
        action: "parse",
        path: metadata_path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
    })?;
    if metadata.recipe_hash != recipe_hash {
        return Ok(None);
    }
    let disk = folder.join(DISK_FILE);
    let size_bytes = fs::metadata(&disk).map_err(ArtifactError::io("inspect", &disk))?.len();
    Ok(Some(VmDisk {
        disk,
        kernel: folder.join(KERNEL_FILE),
        initrd: folder.join(INITRD_FILE),
        kernel_version: metadata.kernel_version,
        append: recipe.boot.append.clone(),
        size_bytes,
        virtual_size_bytes: metadata.virtual_size_bytes,
        recipe_hash: recipe_hash.to_string(),
        reused: true,
    }))
}

/// Builds the base userland and stores it in the cache as a rootfs tarball.
async fn build_base(
    cache: &ArtifactCache,
    recipe: &VmDiskRecipe,
    tarball: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<CachedRootfs, ArtifactError> {
    let started = Instant::now();
    let base = recipe.base_recipe();
    let source = recipe.base.debootstrap.clone();
    progress(&format!(
        "debootstrap {} with {} (several minutes)",
        base.suite,
        source.include.join(", ")
    ));
    let work = cache.work_dir(&recipe.base_name())?;
    let (work, owners) = {
        let cache = cache.clone();
        run_blocking(move || {
            let owners = debian::debootstrap_rootfs(&cache, &base, &source, &work.path().join("rootfs"));
            (work, owners)
        })
        .await
    };
    let owners = owners?;

    if !recipe.base.commands.is_empty() {
        progress(&format!("running {} base commands in a chroot", recipe.base.commands.len()));
    }
    let commands = recipe.base.commands.clone();
    let (work, ran) = run_blocking(move || {
        let ran = run_in_chroot(&work.path().join("rootfs"), &commands);
        (work, ran)
    })
    .await;
    ran?;

    progress("packing the VM base tarball");
    let tarball = tarball.to_path_buf();
    let stored = run_blocking(move || {
        let tree = work.path().join("rootfs");
        let options = PackOptions { fixed_mtime: None, owners };
        let stored = CachedRootfs::store(&tarball, |writer| rootfs::pack_tree(&tree, writer, &options))?;
        work.remove()?;
        Ok::<_, ArtifactError>(stored)
    })
    .await?;
    tracing::info!(tarball = %stored.path.display(), elapsed_s = started.elapsed().as_secs_f64(), "VM base built");
    Ok(stored)
}

/// Unpacks the base into `work/rootfs`, adds the binary, the disk files and commands, and
/// returns the kernel release found in its /boot.
fn assemble_disk_tree(work: &WorkDir, recipe: &VmDiskRecipe, tarball: &Path, binary: &[u8]) -> Result<String, ArtifactError> {
    let tree = work.path().join("rootfs");
    unpack_tarball(tarball, &tree)?;

    let binary_path = tree.join(relative(&recipe.disk.binary));
    if let Some(parent) = binary_path.parent() {
        fs::create_dir_all(parent).map_err(ArtifactError::io("create the directory", parent))?;
    }
    fs::write(&binary_path, binary).map_err(ArtifactError::io("write", &binary_path))?;
    fs::set_permissions(&binary_path, fs::Permissions::from_mode(0o755))
        .map_err(ArtifactError::io("set the mode of", &binary_path))?;

    let owners = debian::apply_entries(&tree, &recipe.disk.directories, &recipe.disk.files)?;
    apply_owners(&tree, &owners)?;
    run_in_chroot(&tree, &recipe.disk.commands)?;

    let (version, kernel, initrd) = find_kernel(&tree).map_err(|message| ArtifactError::Recipe {
        origin: recipe.origin.clone(),
        message,
    })?;
    let output = work.path().join("output");
    fs::create_dir_all(&output).map_err(ArtifactError::io("create the directory", &output))?;
    for (source, name) in [(kernel, KERNEL_FILE), (initrd, INITRD_FILE)] {
        let destination = output.join(name);
        fs::copy(&source, &destination).map_err(ArtifactError::io("copy a file to", &destination))?;
    }
    Ok(version)
}

/// Writes the ext4 file system of `work/rootfs` and converts it to qcow2, next to the
/// kernel and initramfs in `work/output`, with the metadata file last. Returns `work/output`.
fn write_disk_files(work: &WorkDir, size_mib: u64, metadata: &DiskMetadata) -> Result<PathBuf, ArtifactError> {
    let tree = work.path().join("rootfs");
    let output = work.path().join("output");
    let raw = work.path().join("disk.ext4");

    // mkfs.ext4 -d copies the tree with its owners and modes, so no loop mount is needed.
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", "root", "-d"]).arg(&tree).arg(&raw).arg(format!("{size_mib}M"));
    let task = format!("write the {size_mib} MiB ext4 file system (raise disk.size_mib in the recipe if the tree does not fit)");
    process::run(&task, &mut mkfs, MKFS_HINT)?;

    let qcow2 = output.join(DISK_FILE);
    let mut convert = Command::new("qemu-img");
    convert.args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(&qcow2);
    process::run("convert the disk to qcow2", &mut convert, QEMU_IMG_HINT)?;
    fs::remove_file(&raw).map_err(ArtifactError::io("delete", &raw))?;

    let metadata_path = output.join(METADATA_FILE);
    let text = serde_json::to_string_pretty(metadata).expect("disk metadata always serializes");
    fs::write(&metadata_path, text).map_err(ArtifactError::io("write", &metadata_path))?;
    Ok(output)
}

/// Renames the finished `output` folder to `target`. When another run installed the
/// same disk first, its folder is kept and ours is left for the work folder's removal.
fn install_folder(output: &Path, target: &Path) -> Result<(), ArtifactError> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(ArtifactError::io("create the directory", parent))?;
    }
    match fs::rename(output, target) {
        Ok(()) => Ok(()),
        Err(_) if target.join(METADATA_FILE).is_file() => {
            tracing::info!(disk = %target.display(), "another run built the same disk first; using it");
            Ok(())
        }
        Err(error) => Err(ArtifactError::Io { action: "move the disk folder to", path: target.to_path_buf(), source: error }),
    }
}

/// Unpacks a rootfs tarball with its owners, modes, times and hard links.
fn unpack_tarball(tarball: &Path, destination: &Path) -> Result<(), ArtifactError> {
    let file = fs::File::open(tarball).map_err(ArtifactError::io("open", tarball))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.unpack(destination).map_err(ArtifactError::io("unpack the VM base into", destination))
}

/// Gives the recipe's directories their owners on disk, where `mkfs.ext4 -d` reads them.
fn apply_owners(root: &Path, owners: &Owners) -> Result<(), ArtifactError> {
    for (path, &(uid, gid)) in owners {
        let path = root.join(path);
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(ArtifactError::io("change the owner of", &path))?;
    }
    Ok(())
}

/// Runs each command in a chroot of `root`, with a fixed PATH and the C locale instead of
/// the host's environment.
fn run_in_chroot(root: &Path, commands: &[Vec<String>]) -> Result<(), ArtifactError> {
    for words in commands {
        let mut command = Command::new("chroot");
        command
            .arg(root)
            .args(words)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C");
        process::run(&format!("run `{}` in the disk tree", words.join(" ")), &mut command, CHROOT_HINT)?;
    }
    Ok(())
}

/// Finds the one kernel in the tree's /boot and its initramfs; returns the kernel release
/// and both paths.
fn find_kernel(root: &Path) -> Result<(String, PathBuf, PathBuf), String> {
    let boot = root.join("boot");
    let mut versions: Vec<String> = fs::read_dir(&boot)
        .map_err(|error| format!("cannot list {}: {error}", boot.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.strip_prefix("vmlinuz-")).map(str::to_string))
        .collect();
    versions.sort();
    let version = match versions.as_slice() {
        [version] => version.clone(),
        [] => return Err("the disk has no kernel in /boot: add linux-image-amd64 to base.debootstrap.include".to_string()),
        several => return Err(format!("the disk has several kernels in /boot ({}); keep one", several.join(", "))),
    };
    let kernel = boot.join(format!("vmlinuz-{version}"));
    let initrd = boot.join(format!("initrd.img-{version}"));
    if !initrd.is_file() {
        return Err(format!("the disk has kernel {version} but no {}; is initramfs-tools installed?", initrd.display()));
    }
    Ok((version, kernel, initrd))
}

/// Runs blocking file and process work off the async runtime, re-raising its panics.
async fn run_blocking<T: Send + 'static>(task: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(task).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("a blocking disk build task was cancelled by runtime shutdown: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINARY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const BINARY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    const MINIMAL: &str = r#"
name = "test-vm"

[base]
suite = "bookworm"
mirror = "http://deb.debian.org/debian"
architecture = "amd64"
commands = [["update-initramfs", "-u"]]

[base.debootstrap]
variant = "minbase"
include = ["linux-image-amd64", "systemd-sysv"]

[disk]
binary = "/usr/local/bin/refservice"
size_mib = 1024

[boot]
append = "root=/dev/vda rw console=ttyS0"
"#;

    fn parse(text: &str) -> Result<VmDiskRecipe, String> {
        VmDiskRecipe::parse(text, "test.toml").map_err(|error| error.to_string())
    }

    #[test]
    fn builtin_recipe_parses() {
        let recipe = VmDiskRecipe::builtin().unwrap();
        assert_eq!(recipe.name, "vm");
        assert!(recipe.base.debootstrap.include.iter().any(|name| name == "linux-image-amd64"));
        assert!(recipe.base.debootstrap.include.iter().any(|name| name == "systemd-sysv"));
        assert_eq!(recipe.disk.binary, "/usr/local/bin/refservice");
        assert!(recipe.boot.append.contains("console=ttyS0"));
    }

    #[test]
    fn builtin_unit_starts_service_on_port() {
        let recipe = VmDiskRecipe::builtin().unwrap();
        let unit = recipe.disk.files.iter().find(|file| file.path.ends_with("/refservice.service")).unwrap();
        let expected = format!("ExecStart={} --port {}", recipe.disk.binary, crate::artifacts::SERVICE_PORT);
        assert!(unit.content.contains(&expected), "{}", unit.content);
        assert!(unit.content.contains("WantedBy=multi-user.target"), "{}", unit.content);
        let enable = vec!["systemctl".to_string(), "enable".to_string(), "refservice.service".to_string()];
        assert!(recipe.disk.commands.contains(&enable), "{:?}", recipe.disk.commands);
    }

    #[test]
    fn builtin_suite_matches_fat_image() {
        let vm = VmDiskRecipe::builtin().unwrap();
        let fat = crate::artifacts::Recipe::fat_image().unwrap();
        assert_eq!(vm.base.suite, fat.base.suite);
        assert_eq!(vm.base.mirror, fat.base.mirror);
        assert_eq!(vm.base.architecture, fat.base.architecture);
    }

    #[test]
    fn disk_hash_covers_binary_and_bytes() {
        let recipe = parse(MINIMAL).unwrap();
        let hash = recipe.disk_hash(BINARY_A);
        assert_eq!(hash.len(), 64);
        assert_eq!(parse(MINIMAL).unwrap().disk_hash(BINARY_A), hash);
        assert_ne!(recipe.disk_hash(BINARY_B), hash);
        let commented = parse(&format!("# a comment\n{MINIMAL}")).unwrap();
        assert_ne!(commented.disk_hash(BINARY_A), hash);
        assert_eq!(commented.base_hash(), recipe.base_hash());
    }

    #[test]
    fn disk_change_keeps_base_hash() {
        let original = parse(MINIMAL).unwrap();
        let cases = [
            ("size_mib = 1024", "size_mib = 2048"),
            ("console=ttyS0\"", "console=ttyS0 panic=-1\""),
            ("binary = \"/usr/local/bin/refservice\"", "binary = \"/usr/bin/refservice\""),
        ];
        for (from, to) in cases {
            let changed = parse(&MINIMAL.replace(from, to)).unwrap();
            assert_eq!(changed.base_hash(), original.base_hash(), "{to}");
            assert_ne!(changed.disk_hash(BINARY_A), original.disk_hash(BINARY_A), "{to}");
        }
    }

    #[test]
    fn base_change_changes_both_hashes() {
        let original = parse(MINIMAL).unwrap();
        let cases = [
            ("\"systemd-sysv\"]", "\"systemd-sysv\", \"udev\"]"),
            ("[[\"update-initramfs\", \"-u\"]]", "[[\"update-initramfs\", \"-u\", \"-k\", \"all\"]]"),
            ("suite = \"bookworm\"", "suite = \"trixie\""),
        ];
        for (from, to) in cases {
            let changed = parse(&MINIMAL.replace(from, to)).unwrap();
            assert_ne!(changed.base_hash(), original.base_hash(), "{to}");
            assert_ne!(changed.disk_hash(BINARY_A), original.disk_hash(BINARY_A), "{to}");
        }
    }

    #[test]
    fn disk_folder_named_by_hash() {
        let recipe = parse(MINIMAL).unwrap();
        let cache = ArtifactCache::new("/cache");
        let folder = recipe.disk_folder(&cache, BINARY_A);
        assert_eq!(folder, PathBuf::from(format!("/cache/vm/test-vm-{}", recipe.disk_hash(BINARY_A))));
    }

    #[test]
    fn invalid_values_rejected() {
        let cases = [
            ("name = \"test-vm\"", "name = \"Test VM\"", "lowercase"),
            ("size_mib = 1024", "size_mib = 100", "disk.size_mib"),
            ("binary = \"/usr/local/bin/refservice\"", "binary = \"refservice\"", "absolute path"),
            ("console=ttyS0\"", "console=tty0\"", "console=ttyS0"),
            ("[[\"update-initramfs\", \"-u\"]]", "[[]]", "without a program"),
            ("\"systemd-sysv\"]", "\"Systemd_Sysv\"]", "not a Debian package name"),
            ("mirror = \"http://deb.debian.org/debian\"", "mirror = \"deb.debian.org\"", "http://"),
            ("variant = \"minbase\"", "variant = \"min base\"", "base.debootstrap.variant"),
        ];
        for (from, to, expected) in cases {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "case {to:?} did not change the recipe");
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "case {to:?}: expected {expected:?} in {error:?}");
        }
    }

    #[test]
    fn unknown_key_rejected() {
        let error = parse(&MINIMAL.replace("[disk]\n", "[disk]\nsize = 1\n")).unwrap_err();
        assert!(error.starts_with("invalid image recipe test.toml:"), "{error}");
        assert!(error.contains("size"), "{error}");
    }

    #[test]
    fn files_must_not_replace_binary() {
        let text = format!("{MINIMAL}\n[[disk.files]]\npath = \"/usr/local/bin/refservice\"\ncontent = \"\"\n");
        assert!(parse(&text).unwrap_err().contains("must not replace"));
    }

    #[test]
    fn kernel_found_in_boot() {
        let root = tempfile::tempdir().unwrap();
        let boot = root.path().join("boot");
        fs::create_dir_all(&boot).unwrap();
        assert!(find_kernel(root.path()).unwrap_err().contains("no kernel"));

        fs::write(boot.join("vmlinuz-6.1.0-28-amd64"), b"kernel").unwrap();
        fs::write(boot.join("config-6.1.0-28-amd64"), b"").unwrap();
        assert!(find_kernel(root.path()).unwrap_err().contains("no "), "a kernel without initramfs is rejected");

        fs::write(boot.join("initrd.img-6.1.0-28-amd64"), b"initrd").unwrap();
        let (version, kernel, initrd) = find_kernel(root.path()).unwrap();
        assert_eq!(version, "6.1.0-28-amd64");
        assert_eq!(kernel, boot.join("vmlinuz-6.1.0-28-amd64"));
        assert_eq!(initrd, boot.join("initrd.img-6.1.0-28-amd64"));

        fs::write(boot.join("vmlinuz-6.1.0-29-amd64"), b"kernel").unwrap();
        assert!(find_kernel(root.path()).unwrap_err().contains("several kernels"));
    }

    #[test]
    fn cached_folder_found_by_metadata() {
        let recipe = parse(MINIMAL).unwrap();
        let folder = tempfile::tempdir().unwrap();
        let hash = recipe.disk_hash(BINARY_A);
        assert_eq!(find_disk(folder.path(), &recipe, &hash).unwrap(), None);

        fs::write(folder.path().join(DISK_FILE), vec![0u8; 4096]).unwrap();
        let metadata = DiskMetadata {
            recipe_hash: hash.clone(),
            base_hash: recipe.base_hash(),
            kernel_version: "6.1.0-28-amd64".to_string(),
            virtual_size_bytes: 1 << 30,
        };
        fs::write(folder.path().join(METADATA_FILE), serde_json::to_string(&metadata).unwrap()).unwrap();
        let disk = find_disk(folder.path(), &recipe, &hash).unwrap().unwrap();
        assert!(disk.reused);
        assert_eq!(disk.size_bytes, 4096);
        assert_eq!(disk.kernel_version, "6.1.0-28-amd64");
        assert_eq!(disk.append, recipe.boot.append);
        assert_eq!(disk.kernel, folder.path().join(KERNEL_FILE));

        let other = recipe.disk_hash(BINARY_B);
        assert_eq!(find_disk(folder.path(), &recipe, &other).unwrap(), None, "a folder of another hash is not reused");
    }
}
