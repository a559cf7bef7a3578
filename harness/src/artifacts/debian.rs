//! Base userlands from Debian: files picked from unpacked packages for a distroless
//! base, or a whole system from debootstrap. Everything here blocks.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cache::{rename_into, ArtifactCache};
use super::error::ArtifactError;
use super::process;
use super::recipe::{relative, BaseRecipe, DebootstrapSource, DirectorySpec, FileSpec, PackageSource};

const APT_HINT: &str = "this needs apt-get from a Debian-based host (apt-get install apt)";
const DPKG_HINT: &str = "this needs dpkg-deb from a Debian-based host (apt-get install dpkg)";
const DEBOOTSTRAP_HINT: &str = "run scripts/setup.sh, or apt-get install debootstrap";

/// Owner (uid, gid) to record in the tarball for paths relative to the rootfs, where it
/// differs from the owner on disk.
pub(crate) type Owners = BTreeMap<PathBuf, (u32, u32)>;

/// Returns the cached `.deb` files of `names`, downloading the missing ones first.
///
/// Packages come from the recipe's mirror and suite through `apt-get` with a private
/// source list and state directory under `work`, so the host's own apt sources, package
/// lists and pinning play no part. A cached package is used whatever its version: clear
/// `debs/` in the cache to pick up new versions from the mirror.
pub(crate) fn fetch_debs(
    cache: &ArtifactCache,
    base: &BaseRecipe,
    names: &[String],
    work: &Path,
) -> Result<Vec<PathBuf>, ArtifactError> {
    let directory = cache.deb_dir(&base.suite, &base.architecture);
    let missing: Vec<String> = names.iter().filter(|name| cached_deb(&directory, name).is_none()).cloned().collect();
    if !missing.is_empty() {
        download_debs(base, &missing, &directory, work)?;
    }
    names
        .iter()
        .map(|name| {
            cached_deb(&directory, name)
                .ok_or_else(|| ArtifactError::PackageMissing { package: name.clone(), directory: directory.clone() })
        })
        .collect()
}

/// Returns the names in `names` that have no cached `.deb` yet.
pub(crate) fn uncached_debs(cache: &ArtifactCache, base: &BaseRecipe, names: &[String]) -> Vec<String> {
    let directory = cache.deb_dir(&base.suite, &base.architecture);
    names.iter().filter(|name| cached_deb(&directory, name).is_none()).cloned().collect()
}

/// Finds `<name>_<version>_<arch>.deb`. Package names contain no `_`, so the prefix
/// `<name>_` is unambiguous. With several versions cached, the last by file name wins.
fn cached_deb(directory: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}_");
    let mut matches: Vec<PathBuf> = fs::read_dir(directory)
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            let file_name = path.file_name().unwrap_or_default().to_string_lossy();
            file_name.starts_with(&prefix) && file_name.ends_with(".deb")
        })
        .collect();
    matches.sort();
    matches.pop()
}

fn download_debs(base: &BaseRecipe, names: &[String], destination: &Path, work: &Path) -> Result<(), ArtifactError> {
    if !base.keyring.is_file() {
        return Err(ArtifactError::KeyringMissing { mirror: base.mirror.clone(), keyring: base.keyring.clone() });
    }
    let apt = work.join("apt");
    let downloads = work.join("downloads");
    for directory in [apt.join("lists/partial"), apt.join("cache/archives/partial"), apt.join("empty"), downloads.clone()] {
        fs::create_dir_all(&directory).map_err(ArtifactError::io("create the directory", &directory))?;
    }
    let source_list = apt.join("sources.list");
    let line = format!(
        "deb [arch={} signed-by={}] {} {} main\n",
        base.architecture,
        base.keyring.display(),
        base.mirror,
        base.suite
    );
    fs::write(&source_list, line).map_err(ArtifactError::io("write", &source_list))?;

    let options = [
        format!("Dir::Etc::SourceList={}", source_list.display()),
        format!("Dir::Etc::SourceParts={}", apt.join("empty").display()),
        format!("Dir::Etc::Preferences={}", apt.join("empty/preferences").display()),
        format!("Dir::Etc::PreferencesParts={}", apt.join("empty").display()),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        "Dir::State::Status=/dev/null".to_string(),
        format!("APT::Architecture={}", base.architecture),
        "Acquire::Languages=none".to_string(),
        // The private directories belong to the current user, which apt's _apt sandbox
        // user cannot write to.
        "APT::Sandbox::User=root".to_string(),
    ];
    let apt_get = |arguments: &[&str]| {
        let mut command = Command::new("apt-get");
        command.arg("-q");
        for option in &options {
            command.arg("-o").arg(option);
        }
        command.args(arguments).current_dir(&downloads);
        command
    };

    let task = format!("read the package lists of {} {}", base.mirror, base.suite);
    process::run(&task, &mut apt_get(&["update"]), APT_HINT)?;
    let mut arguments = vec!["download"];
    arguments.extend(names.iter().map(String::as_str));
    let task = format!("download Debian packages {} from {}", names.join(", "), base.mirror);
    process::run(&task, &mut apt_get(&arguments), APT_HINT)?;

    for entry in fs::read_dir(&downloads).map_err(ArtifactError::io("list", &downloads))? {
        let path = entry.map_err(ArtifactError::io("list", &downloads))?.path();
        if path.extension().is_some_and(|extension| extension == "deb") {
            rename_into(&path, &destination.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(())
}

/// Unpacks each `.deb` into `destination` with `dpkg-deb -x`, which runs no maintainer scripts.
pub(crate) fn unpack_debs(debs: &[PathBuf], destination: &Path) -> Result<(), ArtifactError> {
    fs::create_dir_all(destination).map_err(ArtifactError::io("create the directory", destination))?;
    for deb in debs {
        let mut command = Command::new("dpkg-deb");
        command.arg("-x").arg(deb).arg(destination);
        process::run(&format!("unpack {}", deb.display()), &mut command, DPKG_HINT)?;
    }
    Ok(())
}

/// Assembles a distroless rootfs in `rootfs` from the unpacked packages in `unpacked`
/// and the recipe's generated files, and returns the owners to record in the tarball.
pub(crate) fn assemble_package_rootfs(
    unpacked: &Path,
    rootfs: &Path,
    base: &BaseRecipe,
    packages: &PackageSource,
) -> Result<Owners, ArtifactError> {
    create_dir(rootfs, 0o755)?;
    let excluded: Vec<PathBuf> = packages.exclude.iter().map(|path| PathBuf::from(relative(path))).collect();
    for path in &packages.copy {
        let relative_path = Path::new(relative(path));
        let source = unpacked.join(relative_path);
        if fs::symlink_metadata(&source).is_err() {
            return Err(ArtifactError::PathNotInPackages {
                path: path.clone(),
                repository: base.repository.clone(),
                packages: packages.names.clone(),
            });
        }
        create_parents(rootfs, relative_path)?;
        copy_tree(&source, &rootfs.join(relative_path), relative_path, &excluded)?;
    }

    if let Some(bundle) = &packages.ca_bundle {
        let certificates = concatenate_certificates(&unpacked.join(relative(&bundle.from)))?;
        write_file(rootfs, relative(&bundle.to), 0o644, &certificates)?;
    }
    if !base.users.is_empty() {
        let passwd: String = base
            .users
            .iter()
            .map(|user| format!("{}:x:{}:{}:{}:{}:{}\n", user.name, user.uid, user.gid, user.name, user.home, user.shell))
            .collect();
        let group: String = base.users.iter().map(|user| format!("{}:x:{}:\n", user.name, user.gid)).collect();
        write_file(rootfs, "etc/passwd", 0o644, passwd.as_bytes())?;
        write_file(rootfs, "etc/group", 0o644, group.as_bytes())?;
    }
    apply_entries(rootfs, &base.directories, &base.files)
}

/// Runs debootstrap into `target`, which must not exist yet, then deletes the recipe's
/// `remove` paths and adds its directories and files. Returns the owners to record.
/// Downloaded packages are kept in the cache's debootstrap folder for the next run.
pub(crate) fn debootstrap_rootfs(
    cache: &ArtifactCache,
    base: &BaseRecipe,
    source: &DebootstrapSource,
    target: &Path,
) -> Result<Owners, ArtifactError> {
    if !base.keyring.is_file() {
        return Err(ArtifactError::KeyringMissing { mirror: base.mirror.clone(), keyring: base.keyring.clone() });
    }
    let package_cache = cache.debootstrap_cache_dir(&base.suite, &base.architecture);
    fs::create_dir_all(&package_cache).map_err(ArtifactError::io("create the directory", &package_cache))?;

    let mut command = Command::new("debootstrap");
    command
        .arg(format!("--variant={}", source.variant))
        .arg(format!("--arch={}", base.architecture))
        .arg(format!("--keyring={}", base.keyring.display()))
        .arg(format!("--cache-dir={}", package_cache.display()));
    if !source.include.is_empty() {
        command.arg(format!("--include={}", source.include.join(",")));
    }
    command.arg(&base.suite).arg(target).arg(&base.mirror);
    process::run(&format!("debootstrap {} into {}", base.suite, target.display()), &mut command, DEBOOTSTRAP_HINT)?;

    for pattern in &source.remove {
        remove_matching(target, relative(pattern))?;
    }
    apply_entries(target, &base.directories, &base.files)
}

/// Creates the recipe's directories and files under `root` and returns their owners.
pub(crate) fn apply_entries(root: &Path, directories: &[DirectorySpec], files: &[FileSpec]) -> Result<Owners, ArtifactError> {
    let mut owners = Owners::new();
    for directory in directories {
        let relative_path = Path::new(relative(&directory.path));
        create_parents(root, relative_path)?;
        create_dir(&root.join(relative_path), directory.mode)?;
        owners.insert(relative_path.to_path_buf(), (directory.uid, directory.gid));
    }
    for file in files {
        write_file(root, relative(&file.path), file.mode, file.content.as_bytes())?;
    }
    Ok(owners)
}

/// Deletes the paths under `root` that match `pattern`, a relative path whose last
/// component may hold `*` wildcards. A pattern that matches nothing is not an error.
fn remove_matching(root: &Path, pattern: &str) -> Result<(), ArtifactError> {
    let (directory, name_pattern) = match pattern.rsplit_once('/') {
        Some((directory, name)) => (root.join(directory), name),
        None => (root.to_path_buf(), pattern),
    };
    let entries = match fs::read_dir(&directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(ArtifactError::Io { action: "list", path: directory, source: error }),
    };
    for entry in entries {
        let entry = entry.map_err(ArtifactError::io("list", &directory))?;
        if !wildcard_match(name_pattern, &entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let is_directory = entry.file_type().is_ok_and(|kind| kind.is_dir());
        let removed = if is_directory { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.map_err(ArtifactError::io("delete", &path))?;
    }
    Ok(())
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(index) => rest = &rest[index + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Concatenates every `*.crt` file under `directory`, sorted by relative path, each
/// ending in a newline, as update-ca-certificates builds /etc/ssl/certs/ca-certificates.crt.
fn concatenate_certificates(directory: &Path) -> Result<Vec<u8>, ArtifactError> {
    let mut files = Vec::new();
    collect_files(directory, &mut files)?;
    files.retain(|path| path.extension().is_some_and(|extension| extension == "crt"));
    files.sort();
    if files.is_empty() {
        return Err(ArtifactError::NoCertificates { path: directory.to_path_buf() });
    }
    let mut bundle = Vec::new();
    for path in files {
        let certificate = fs::read(&path).map_err(ArtifactError::io("read", &path))?;
        bundle.extend_from_slice(&certificate);
        if !certificate.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    Ok(bundle)
}

fn collect_files(directory: &Path, files: &mut Vec<PathBuf>) -> Result<(), ArtifactError> {
    for entry in fs::read_dir(directory).map_err(ArtifactError::io("list", directory))? {
        let entry = entry.map_err(ArtifactError::io("list", directory))?;
        let kind = entry.file_type().map_err(ArtifactError::io("inspect", entry.path()))?;
        if kind.is_dir() {
            collect_files(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// Copies a file, symlink or directory tree, keeping permission bits and symlink targets.
/// `relative_path` is `source` relative to the package root, matched against `excluded`.
fn copy_tree(source: &Path, destination: &Path, relative_path: &Path, excluded: &[PathBuf]) -> Result<(), ArtifactError> {
    if excluded.iter().any(|path| relative_path.starts_with(path)) {
        return Ok(());
    }
    let metadata = fs::symlink_metadata(source).map_err(ArtifactError::io("inspect", source))?;
    let kind = metadata.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(source).map_err(ArtifactError::io("read the symlink", source))?;
        std::os::unix::fs::symlink(&target, destination).map_err(ArtifactError::io("create the symlink", destination))?;
    } else if kind.is_dir() {
        create_dir(destination, metadata.permissions().mode() & 0o7777)?;
        let mut entries: Vec<_> = fs::read_dir(source)
            .map_err(ArtifactError::io("list", source))?
            .collect::<Result<_, _>>()
            .map_err(ArtifactError::io("list", source))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = entry.file_name();
            copy_tree(&entry.path(), &destination.join(&name), &relative_path.join(&name), excluded)?;
        }
    } else if kind.is_file() {
        fs::copy(source, destination).map_err(ArtifactError::io("copy a file to", destination))?;
    } else {
        tracing::debug!(path = %source.display(), "skipping a special file from a package");
    }
    Ok(())
}

/// Creates the missing parent directories of `relative_path` under `root` with mode 755.
fn create_parents(root: &Path, relative_path: &Path) -> Result<(), ArtifactError> {
    let mut current = root.to_path_buf();
    if let Some(parent) = relative_path.parent() {
        for component in parent.components() {
            current.push(component);
            if !current.is_dir() {
                create_dir(&current, 0o755)?;
            }
        }
    }
    Ok(())
}

/// Creates `path` if missing and sets `mode` explicitly, so that the umask plays no part.
fn create_dir(path: &Path, mode: u32) -> Result<(), ArtifactError> {
    match fs::create_dir(path) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(ArtifactError::Io { action: "create the directory", path: path.to_path_buf(), source: error });
        }
        _ => {}
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ArtifactError::io("set the mode of", path))
}

fn write_file(root: &Path, relative_path: &str, mode: u32, contents: &[u8]) -> Result<(), ArtifactError> {
    let relative_path = Path::new(relative_path);
    create_parents(root, relative_path)?;
    let path = root.join(relative_path);
    // A package may ship the path as a symlink; replace it instead of writing through it.
    if fs::symlink_metadata(&path).is_ok_and(|metadata| metadata.file_type().is_symlink()) {
        fs::remove_file(&path).map_err(ArtifactError::io("delete", &path))?;
    }
    fs::write(&path, contents).map_err(ArtifactError::io("write", &path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(ArtifactError::io("set the mode of", &path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::recipe::Recipe;

    #[test]
    fn wildcard_cases() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("*.deb", "curl_7.88_amd64.deb", true),
            ("*.deb", "curl.deb.partial", false),
            ("*.bin", "pkgcache.bin", true),
            ("lock", "lock", true),
            ("lock", "locks", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("ab*ba", "aba", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(wildcard_match(pattern, text), expected, "{pattern:?} against {text:?}");
        }
    }

    #[test]
    fn remove_matching_keeps_others() {
        let root = tempfile::tempdir().unwrap();
        let archives = root.path().join("var/cache/apt/archives");
        fs::create_dir_all(archives.join("partial")).unwrap();
        fs::write(archives.join("curl_1_amd64.deb"), b"").unwrap();
        fs::write(archives.join("lock"), b"").unwrap();
        remove_matching(root.path(), "var/cache/apt/archives/*.deb").unwrap();
        remove_matching(root.path(), "var/lib/apt/lists/*").unwrap();
        assert!(!archives.join("curl_1_amd64.deb").exists());
        assert!(archives.join("lock").exists());
        assert!(archives.join("partial").is_dir());
    }

    #[test]
    fn cached_deb_matches_whole_name() {
        let directory = tempfile::tempdir().unwrap();
        fs::write(directory.path().join("tzdata_2024a-0_all.deb"), b"").unwrap();
        fs::write(directory.path().join("tzdata-legacy_2024a-0_all.deb"), b"").unwrap();
        let found = cached_deb(directory.path(), "tzdata").unwrap();
        assert_eq!(found.file_name().unwrap(), "tzdata_2024a-0_all.deb");
        assert_eq!(cached_deb(directory.path(), "netbase"), None);
    }

    #[test]
    fn certificates_concatenated_in_path_order() {
        let directory = tempfile::tempdir().unwrap();
        fs::create_dir_all(directory.path().join("mozilla")).unwrap();
        fs::write(directory.path().join("mozilla/B.crt"), b"B").unwrap();
        fs::write(directory.path().join("mozilla/A.crt"), b"A\n").unwrap();
        fs::write(directory.path().join("mozilla/README"), b"not a certificate").unwrap();
        assert_eq!(concatenate_certificates(directory.path()).unwrap(), b"A\nB\n");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(concatenate_certificates(empty.path()), Err(ArtifactError::NoCertificates { .. })));
    }

    /// Builds the distroless rootfs from a fake unpacked package tree.
    #[test]
    fn package_rootfs_assembled() {
        let recipe = Recipe::distroless().unwrap();
        let crate::artifacts::recipe::BaseSource::Packages(packages) = recipe.base.source() else {
            panic!("the distroless base is made of packages");
        };
        let unpacked = tempfile::tempdir().unwrap();
        for path in &packages.copy {
            let path = unpacked.path().join(relative(path));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"x").unwrap();
        }
        fs::remove_file(unpacked.path().join("usr/share/zoneinfo")).unwrap();
        fs::create_dir_all(unpacked.path().join("usr/share/zoneinfo/Europe")).unwrap();
        fs::write(unpacked.path().join("usr/share/zoneinfo/Europe/Paris"), b"TZif").unwrap();
        fs::remove_file(unpacked.path().join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", unpacked.path().join("etc/os-release")).unwrap();
        fs::create_dir_all(unpacked.path().join("usr/share/ca-certificates/mozilla")).unwrap();
        fs::write(unpacked.path().join("usr/share/ca-certificates/mozilla/A.crt"), b"A\n").unwrap();

        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        let owners = assemble_package_rootfs(unpacked.path(), &rootfs, &recipe.base, packages).unwrap();

        assert_eq!(fs::read(rootfs.join("usr/share/zoneinfo/Europe/Paris")).unwrap(), b"TZif");
        assert_eq!(fs::read_link(rootfs.join("etc/os-release")).unwrap(), Path::new("../usr/lib/os-release"));
        assert_eq!(fs::read(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap(), b"A\n");
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), "{passwd}");
        assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
        assert!(fs::read_to_string(rootfs.join("etc/group")).unwrap().contains("nobody:x:65534:\n"));
        assert!(fs::read_to_string(rootfs.join("etc/nsswitch.conf")).unwrap().contains("hosts:"));
        let mode = |path: &str| fs::metadata(rootfs.join(path)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("home/nonroot"), 0o700);
        assert_eq!(mode("etc"), 0o755);
        assert_eq!(owners.get(Path::new("home/nonroot")), Some(&(65532, 65532)));
        assert!(!rootfs.join("bin").exists());
    }

    #[test]
    fn missing_package_path_named() {
        let recipe = Recipe::distroless().unwrap();
        let crate::artifacts::recipe::BaseSource::Packages(packages) = recipe.base.source() else {
            panic!("the distroless base is made of packages");
        };
        let unpacked = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let error = assemble_package_rootfs(unpacked.path(), &work.path().join("rootfs"), &recipe.base, packages).unwrap_err();
        assert!(error.to_string().contains("/etc/os-release"), "{error}");
    }

    #[test]
    fn excluded_paths_skipped() {
        let source = tempfile::tempdir().unwrap();
        fs::create_dir_all(source.path().join("zoneinfo/right")).unwrap();
        fs::write(source.path().join("zoneinfo/right/UTC"), b"").unwrap();
        fs::write(source.path().join("zoneinfo/UTC"), b"").unwrap();
        let destination = tempfile::tempdir().unwrap();
        let copied = destination.path().join("zoneinfo");
        copy_tree(&source.path().join("zoneinfo"), &copied, Path::new("zoneinfo"), &[PathBuf::from("zoneinfo/right")]).unwrap();
        assert!(copied.join("UTC").exists());
        assert!(!copied.join("right").exists());
    }
}
