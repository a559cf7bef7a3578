//! Image recipes: TOML files in `workloads/images/` that describe what an image contains.
//!
//! A recipe has a `[base]` part, built once into a base image from Debian packages, and an
//! `[app]` part, the layer with the service binary on top. The base is either a set of
//! unpacked packages (`[base.packages]`) or a debootstrap userland (`[base.debootstrap]`).
//! Unknown keys are rejected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ArtifactError;

/// Version of what the code builds from a recipe. Bump it when a code change alters the
/// images built from unchanged recipe files, so that their hashes and tags change too.
pub const RECIPE_FORMAT_VERSION: u32 = 1;

/// Hex digits of a hash that appear in a tag.
const TAG_HASH_LENGTH: usize = 12;

const DISTROLESS_SOURCE: &str = include_str!("../../../workloads/images/distroless.toml");
const FAT_IMAGE_SOURCE: &str = include_str!("../../../workloads/images/fat-image.toml");

/// A validated image recipe and the exact bytes it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Repository of the finished image, for example `deploybench/distroless`.
    pub repository: String,
    pub base: BaseRecipe,
    pub app: AppRecipe,
    /// Origin of the recipe (a path or a built-in name), for error messages.
    pub origin: String,
    source: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    repository: String,
    base: BaseRecipe,
    app: AppRecipe,
}

/// The base image: what it is built from and the files added to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRecipe {
    pub repository: String,
    /// Debian suite, for example `bookworm`.
    pub suite: String,
    pub mirror: String,
    /// Debian and Docker architecture name, for example `amd64`.
    pub architecture: String,
    /// OpenPGP keyring that verifies the mirror's Release file.
    #[serde(default = "default_keyring")]
    pub keyring: PathBuf,
    /// `KEY=value` entries of the base image's environment.
    #[serde(default)]
    pub env: Vec<String>,
    pub packages: Option<PackageSource>,
    pub debootstrap: Option<DebootstrapSource>,
    /// Users written to /etc/passwd and /etc/group, each with a group of the same name
    /// and id. Only for a package base: debootstrap writes its own.
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// A base made of files picked from unpacked Debian packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSource {
    pub names: Vec<String>,
    /// Absolute paths copied from the unpacked packages. A directory is copied whole.
    pub copy: Vec<String>,
    /// Absolute paths left out of the copied directories.
    #[serde(default)]
    pub exclude: Vec<String>,
    pub ca_bundle: Option<CaBundle>,
}

/// A CA bundle built as update-ca-certificates builds it: every `*.crt` file under
/// `from`, sorted by path, concatenated into `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaBundle {
    pub from: String,
    pub to: String,
}

/// A base made by `debootstrap --variant=VARIANT --include=...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebootstrapSource {
    pub variant: String,
    #[serde(default)]
    pub include: Vec<String>,
    /// Absolute paths deleted from the userland after debootstrap. `*` in the last
    /// component matches any run of characters.
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    pub path: String,
    #[serde(default = "default_directory_mode")]
    pub mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    #[serde(default = "default_file_mode")]
    pub mode: u32,
    pub content: String,
}

/// The application layer and the image configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRecipe {
    /// Absolute path of the service binary in the image.
    pub binary: String,
    /// `USER` value, for example `65532:65532`; the base's default (root) when absent.
    pub user: Option<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub expose: Vec<u16>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub healthcheck: Option<HealthCheck>,
    #[serde(default)]
    pub directories: Vec<DirectorySpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Largest accepted uncompressed image size in MiB.
    pub max_size_mib: Option<f64>,
}

/// A Docker HEALTHCHECK in exec form: no shell needed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval_s: u32,
    pub timeout_s: u32,
    #[serde(default)]
    pub start_period_s: u32,
    pub retries: u32,
}

/// The source of a base, as [`BaseRecipe::source`] returns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaseSource<'a> {
    Packages(&'a PackageSource),
    Debootstrap(&'a DebootstrapSource),
}

pub(super) fn default_keyring() -> PathBuf {
    PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg")
}

fn default_directory_mode() -> u32 {
    0o755
}

fn default_file_mode() -> u32 {
    0o644
}

impl Recipe {
    /// Parses and validates a recipe; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Recipe, ArtifactError> {
        let invalid = |message: String| ArtifactError::Recipe { origin: origin.to_string(), message };
        let file: RecipeFile = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let recipe = Recipe {
            repository: file.repository,
            base: file.base,
            app: file.app,
            origin: origin.to_string(),
            source: text.as_bytes().to_vec(),
        };
        recipe.validate().map_err(invalid)?;
        Ok(recipe)
    }

    /// Reads and parses the recipe file at `path`.
    pub fn load(path: &Path) -> Result<Recipe, ArtifactError> {
        let text = std::fs::read_to_string(path).map_err(ArtifactError::io("read the image recipe", path))?;
        Recipe::parse(&text, &path.display().to_string())
    }

    /// Parses the distroless recipe, `workloads/images/distroless.toml`, as compiled in.
    pub fn distroless() -> Result<Recipe, ArtifactError> {
        Recipe::parse(DISTROLESS_SOURCE, "workloads/images/distroless.toml")
    }

    /// Parses the fat-image recipe, `workloads/images/fat-image.toml`, as compiled in.
    pub fn fat_image() -> Result<Recipe, ArtifactError> {
        Recipe::parse(FAT_IMAGE_SOURCE, "workloads/images/fat-image.toml")
    }

    /// SHA-256 (hex) of the format version and the `[base]` part alone, so that a new
    /// service binary or a changed `[app]` part keeps the base image.
    pub fn base_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("deploybench image base, format {RECIPE_FORMAT_VERSION}\n"));
        hasher.update(serde_json::to_vec(&self.base).expect("a recipe base always serializes"));
        hex::encode(hasher.finalize())
    }

    /// SHA-256 (hex) of the format version, the recipe file's bytes and the service
    /// binary's SHA-256.
    pub fn recipe_hash(&self, binary_sha256: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("deploybench image recipe, format {RECIPE_FORMAT_VERSION}\n"));
        hasher.update(&self.source);
        hasher.update(format!("\nservice binary sha256 {binary_sha256}\n"));
        hex::encode(hasher.finalize())
    }

    pub fn base_tag(&self) -> String {
        format!("{}:{}", self.base.repository, &self.base_hash()[..TAG_HASH_LENGTH])
    }

    pub fn image_tag(&self, binary_sha256: &str) -> String {
        format!("{}:{}", self.repository, &self.recipe_hash(binary_sha256)[..TAG_HASH_LENGTH])
    }

    fn validate(&self) -> Result<(), String> {
        check_repository("repository", &self.repository)?;
        self.base.validate()?;
        self.app.validate()?;
        if self.repository == self.base.repository {
            return Err("repository and base.repository must differ".to_string());
        }
        Ok(())
    }
}

impl BaseRecipe {
    pub fn source(&self) -> BaseSource<'_> {
        match (&self.packages, &self.debootstrap) {
            (Some(packages), _) => BaseSource::Packages(packages),
            (None, Some(debootstrap)) => BaseSource::Debootstrap(debootstrap),
            (None, None) => unreachable!("validate() requires one of [base.packages] and [base.debootstrap]"),
        }
    }

    /// Returns the last component of the repository, used to name cache files.
    pub fn name(&self) -> &str {
        self.repository.rsplit('/').next().unwrap_or(&self.repository)
    }

    fn validate(&self) -> Result<(), String> {
        check_repository("base.repository", &self.repository)?;
        check_word("base.suite", &self.suite)?;
        check_word("base.architecture", &self.architecture)?;
        if !(self.mirror.starts_with("http://") || self.mirror.starts_with("https://")) {
            return Err(format!("base.mirror {:?} must be an http:// or https:// URL", self.mirror));
        }
        check_env("base.env", &self.env)?;
        match (&self.packages, &self.debootstrap) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("the base needs exactly one of [base.packages] and [base.debootstrap]".to_string());
            }
            (Some(packages), None) => packages.validate()?,
            (None, Some(debootstrap)) => {
                debootstrap.validate()?;
                if !self.users.is_empty() {
                    return Err("base.users is only for [base.packages]: debootstrap writes /etc/passwd itself".to_string());
                }
            }
        }
        let mut seen = BTreeSet::new();
        for user in &self.users {
            check_word("base.users name", &user.name)?;
            check_path("base.users home", &user.home)?;
            check_path("base.users shell", &user.shell)?;
            if !seen.insert(user.name.as_str()) {
                return Err(format!("base.users lists {:?} twice", user.name));
            }
        }
        check_entries("base", &self.directories, &self.files)
    }
}

impl PackageSource {
    fn validate(&self) -> Result<(), String> {
        if self.names.is_empty() {
            return Err("base.packages.names is empty".to_string());
        }
        for name in &self.names {
            check_package_name("base.packages.names", name)?;
        }
        for path in self.copy.iter().chain(&self.exclude) {
            check_path("base.packages copy or exclude", path)?;
        }
        if let Some(bundle) = &self.ca_bundle {
            check_path("base.packages.ca_bundle.from", &bundle.from)?;
            check_path("base.packages.ca_bundle.to", &bundle.to)?;
        }
        Ok(())
    }
}

impl DebootstrapSource {
    fn validate(&self) -> Result<(), String> {
        check_word("base.debootstrap.variant", &self.variant)?;
        for name in &self.include {
            check_package_name("base.debootstrap.include", name)?;
        }
        for pattern in &self.remove {
            check_path("base.debootstrap.remove", pattern)?;
            let (directory, _) = pattern.rsplit_once('/').unwrap_or_default();
            if directory.contains('*') {
                return Err(format!("base.debootstrap.remove {pattern:?}: `*` is allowed in the last component only"));
            }
        }
        Ok(())
    }
}

impl AppRecipe {
    fn validate(&self) -> Result<(), String> {
        check_path("app.binary", &self.binary)?;
        if let Some(user) = &self.user {
            if user.is_empty() || user.chars().any(char::is_whitespace) {
                return Err(format!("app.user {user:?} must be a user or uid[:gid] without spaces"));
            }
        }
        check_env("app.env", &self.env)?;
        let has_command = |list: &Option<Vec<String>>| list.as_ref().is_some_and(|words| !words.is_empty());
        if !has_command(&self.entrypoint) && !has_command(&self.cmd) {
            return Err("the app needs a non-empty app.entrypoint or app.cmd".to_string());
        }
        if let Some(check) = &self.healthcheck {
            if check.command.is_empty() {
                return Err("app.healthcheck.command is empty".to_string());
            }
            if check.interval_s == 0 || check.timeout_s == 0 || check.retries == 0 {
                return Err("app.healthcheck interval_s, timeout_s and retries must be positive".to_string());
            }
        }
        if let Some(limit) = self.max_size_mib {
            if !(limit.is_finite() && limit > 0.0) {
                return Err(format!("app.max_size_mib {limit} must be a positive number"));
            }
        }
        check_entries("app", &self.directories, &self.files)?;
        if self.files.iter().any(|file| file.path == self.binary) {
            return Err(format!("app.files must not replace the service binary at {}", self.binary));
        }
        Ok(())
    }
}

/// Returns `path` without its leading `/`, as paths appear inside a tarball.
pub(crate) fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

fn check_entries(part: &str, directories: &[DirectorySpec], files: &[FileSpec]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
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

fn check_repository(key: &str, value: &str) -> Result<(), String> {
    let valid_segment = |segment: &str| {
        !segment.is_empty()
            && segment.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte))
            && segment.as_bytes()[0].is_ascii_alphanumeric()
            && segment.as_bytes()[segment.len() - 1].is_ascii_alphanumeric()
    };
    if value.split('/').all(valid_segment) {
        Ok(())
    } else {
        Err(format!("{key} {value:?} is not a Docker repository name: use lowercase letters, digits and . _ - / only"))
    }
}

pub(super) fn check_word(key: &str, value: &str) -> Result<(), String> {
    let valid = !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(format!("{key} {value:?} must be letters, digits, `.`, `_` or `-`"))
    }
}

pub(super) fn check_package_name(key: &str, name: &str) -> Result<(), String> {
    // Debian policy 5.6.1: lowercase letters, digits, + - . and at least two characters.
    let valid = name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"+-.".contains(&byte));
    if valid {
        Ok(())
    } else {
        Err(format!("{key}: {name:?} is not a Debian package name"))
    }
}

pub(super) fn check_path(key: &str, path: &str) -> Result<(), String> {
    let normalized = path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && path[1..].split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if normalized {
        Ok(())
    } else {
        Err(format!("{key} {path:?} must be an absolute path without `.`, `..`, `//` or a trailing `/`"))
    }
}

fn check_env(key: &str, entries: &[String]) -> Result<(), String> {
    for entry in entries {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        let valid_name = !name.is_empty()
            && !name.as_bytes()[0].is_ascii_digit()
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if !entry.contains('=') || !valid_name || value.contains('\n') {
            return Err(format!("{key} entry {entry:?} must be NAME=value with a single-line value"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINARY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const BINARY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    const MINIMAL: &str = r#"
repository = "deploybench/test"

[base]
repository = "deploybench/test-base"
suite = "bookworm"
mirror = "http://deb.debian.org/debian"
architecture = "amd64"

[base.packages]
names = ["base-files"]
copy = ["/etc/os-release"]

[app]
binary = "/refservice"
entrypoint = ["/refservice"]
"#;

    fn parse(text: &str) -> Result<Recipe, String> {
        Recipe::parse(text, "test.toml").map_err(|error| error.to_string())
    }

    #[test]
    fn builtin_recipes_parse() {
        let distroless = Recipe::distroless().unwrap();
        assert!(matches!(distroless.base.source(), BaseSource::Packages(_)));
        assert_eq!(distroless.app.user.as_deref(), Some("65532:65532"));
        assert!(distroless.app.healthcheck.is_some());

        let fat = Recipe::fat_image().unwrap();
        assert!(matches!(fat.base.source(), BaseSource::Debootstrap(_)));
        assert_eq!(fat.base.name(), "fat-base");
    }

    #[test]
    fn builtin_recipes_expose_service_port() {
        for recipe in [Recipe::distroless().unwrap(), Recipe::fat_image().unwrap()] {
            assert!(recipe.app.expose.contains(&crate::artifacts::SERVICE_PORT), "{}", recipe.origin);
        }
    }

    #[test]
    fn minimal_recipe_defaults() {
        let recipe = parse(MINIMAL).unwrap();
        assert_eq!(recipe.base.keyring, default_keyring());
        assert!(recipe.base.env.is_empty());
        assert_eq!(recipe.app.user, None);
        assert_eq!(recipe.base.name(), "test-base");
    }

    #[test]
    fn tags_use_twelve_hash_digits() {
        let recipe = parse(MINIMAL).unwrap();
        let base_tag = recipe.base_tag();
        assert_eq!(base_tag, format!("deploybench/test-base:{}", &recipe.base_hash()[..12]));
        let image_tag = recipe.image_tag(BINARY_A);
        assert_eq!(image_tag, format!("deploybench/test:{}", &recipe.recipe_hash(BINARY_A)[..12]));
    }

    #[test]
    fn binary_change_keeps_base_hash() {
        let recipe = parse(MINIMAL).unwrap();
        assert_ne!(recipe.recipe_hash(BINARY_A), recipe.recipe_hash(BINARY_B));
        assert_eq!(recipe.recipe_hash(BINARY_A), recipe.recipe_hash(BINARY_A));
        let base_hash = recipe.base_hash();
        assert_eq!(base_hash.len(), 64);
        assert_eq!(parse(MINIMAL).unwrap().base_hash(), base_hash);
    }

    #[test]
    fn app_change_keeps_base_hash() {
        let original = parse(MINIMAL).unwrap();
        let changed = parse(&MINIMAL.replace(r#"entrypoint = ["/refservice"]"#, r#"cmd = ["/refservice"]"#)).unwrap();
        assert_eq!(original.base_hash(), changed.base_hash());
        assert_ne!(original.recipe_hash(BINARY_A), changed.recipe_hash(BINARY_A));
    }

    #[test]
    fn base_change_changes_both_hashes() {
        let original = parse(MINIMAL).unwrap();
        let changed = parse(&MINIMAL.replace(r#"names = ["base-files"]"#, r#"names = ["base-files", "netbase"]"#)).unwrap();
        assert_ne!(original.base_hash(), changed.base_hash());
        assert_ne!(original.recipe_hash(BINARY_A), changed.recipe_hash(BINARY_A));
    }

    #[test]
    fn comment_change_changes_recipe_hash_only() {
        let original = parse(MINIMAL).unwrap();
        let commented = parse(&format!("# a comment\n{MINIMAL}")).unwrap();
        assert_eq!(original.base_hash(), commented.base_hash());
        assert_ne!(original.recipe_hash(BINARY_A), commented.recipe_hash(BINARY_A));
    }

    #[test]
    fn unknown_key_rejected() {
        let error = parse(&MINIMAL.replace("[app]\n", "[app]\nbinray = \"/x\"\n")).unwrap_err();
        assert!(error.starts_with("invalid image recipe test.toml:"), "{error}");
        assert!(error.contains("binray"), "{error}");
    }

    #[test]
    fn invalid_values_rejected() {
        let cases = [
            (r#"binary = "/refservice""#, r#"binary = "refservice""#, "absolute path"),
            (r#"binary = "/refservice""#, r#"binary = "/a/../refservice""#, "absolute path"),
            (r#"repository = "deploybench/test""#, r#"repository = "Deploybench/Test""#, "Docker repository name"),
            (r#"repository = "deploybench/test""#, r#"repository = "deploybench/test-base""#, "must differ"),
            (r#"names = ["base-files"]"#, r#"names = []"#, "names is empty"),
            (r#"names = ["base-files"]"#, r#"names = ["Base_Files"]"#, "not a Debian package name"),
            (r#"mirror = "http://deb.debian.org/debian""#, r#"mirror = "deb.debian.org""#, "http://"),
            (r#"entrypoint = ["/refservice"]"#, r#"entrypoint = []"#, "app.entrypoint or app.cmd"),
            ("[app]\n", "[app]\nenv = [\"PORT\"]\n", "NAME=value"),
            ("[app]\n", "[app]\nenv = [\"1PORT=1\"]\n", "NAME=value"),
            ("[app]\n", "[app]\nmax_size_mib = -1.0\n", "positive number"),
            ("[app]\n", "[app]\nuser = \"a b\"\n", "without spaces"),
        ];
        for (from, to, expected) in cases {
            let text = MINIMAL.replace(from, to);
            assert_ne!(text, MINIMAL, "case {to:?} did not change the recipe");
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "case {to:?}: expected {expected:?} in {error:?}");
        }
    }

    #[test]
    fn base_needs_exactly_one_source() {
        let none = MINIMAL.replace("[base.packages]\nnames = [\"base-files\"]\ncopy = [\"/etc/os-release\"]\n", "");
        assert!(parse(&none).unwrap_err().contains("exactly one"));
        let both = MINIMAL.replace("[app]\n", "[base.debootstrap]\nvariant = \"minbase\"\n\n[app]\n");
        assert!(parse(&both).unwrap_err().contains("exactly one"));
    }

    #[test]
    fn debootstrap_rejects_users_and_inner_wildcards() {
        let debootstrap = MINIMAL.replace(
            "[base.packages]\nnames = [\"base-files\"]\ncopy = [\"/etc/os-release\"]\n",
            "[base.debootstrap]\nvariant = \"minbase\"\nremove = [\"/var/*/lists\"]\n",
        );
        assert!(parse(&debootstrap).unwrap_err().contains("last component only"));
        let with_users = debootstrap.replace("remove = [\"/var/*/lists\"]\n", "")
            + "\n[[base.users]]\nname = \"a\"\nuid = 1\ngid = 1\nhome = \"/a\"\nshell = \"/sbin/nologin\"\n";
        assert!(parse(&with_users).unwrap_err().contains("only for [base.packages]"), "{:?}", parse(&with_users));
    }

    #[test]
    fn duplicate_and_bad_mode_entries_rejected() {
        let duplicate = format!("{MINIMAL}\n[[app.files]]\npath = \"/a\"\ncontent = \"\"\n[[app.directories]]\npath = \"/a\"\n");
        assert!(parse(&duplicate).unwrap_err().contains("lists /a twice"));
        let bad_mode = format!("{MINIMAL}\n[[app.directories]]\npath = \"/a\"\nmode = 0o17777\n");
        assert!(parse(&bad_mode).unwrap_err().contains("above 7777"));
        let replaces_binary = format!("{MINIMAL}\n[[app.files]]\npath = \"/refservice\"\ncontent = \"\"\n");
        assert!(parse(&replaces_binary).unwrap_err().contains("must not replace"));
    }

    #[test]
    fn relative_strips_leading_slash() {
        assert_eq!(relative("/etc/passwd"), "etc/passwd");
    }
}
