use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::engine::images::ImageError;

/// Everything that can stop building the service binary or an image.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot run {program}: {source}; {hint}")]
    ToolMissing {
        program: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot {task}: `{command}` failed ({status}); last output lines:\n{output}")]
    CommandFailed {
        task: String,
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid image recipe {origin}: {message}")]
    Recipe { origin: String, message: String },
    #[error("cannot use the service binary {path}: {reason}; build it again with build_service_binary, which links it statically and hashes it")]
    InvalidBinary { path: PathBuf, reason: String },
    #[error("cannot download Debian package {package}: apt-get download left no {package}_*.deb in {directory}; check the package name in the recipe")]
    PackageMissing { package: String, directory: PathBuf },
    #[error("cannot copy {path} into the {repository} base: it is in none of the packages {packages:?}; fix `copy` in the recipe")]
    PathNotInPackages {
        path: String,
        repository: String,
        packages: Vec<String>,
    },
    #[error("cannot build the CA bundle: no *.crt file under {path}; check that ca-certificates is in the recipe's package list")]
    NoCertificates { path: PathBuf },
    #[error("cannot verify packages from {mirror}: the keyring {keyring} is missing; run `apt-get install debian-archive-keyring` or set base.keyring in the recipe")]
    KeyringMissing { mirror: String, keyring: PathBuf },
    #[error("image {tag} is {size_mib:.1} MiB, above the recipe's max_size_mib of {limit_mib} MiB; shrink the base (for example with `exclude`) in the recipe")]
    TooLarge { tag: String, size_mib: f64, limit_mib: f64 },
    #[error("cannot delete the work directory {path}: {mount_point} is still mounted inside it; unmount it (umount {mount_point}) and delete the directory by hand")]
    MountedWorkDir { path: PathBuf, mount_point: PathBuf },
    #[error(transparent)]
    Engine(#[from] ImageError),
}

impl ArtifactError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ArtifactError {
        let path = path.into();
        move |source| ArtifactError::Io { action, path, source }
    }
}
