//! The application layer's build context: a Dockerfile and a `rootfs/` tree holding the
//! service binary and the recipe's files, copied onto the base with one `COPY`.

use std::collections::BTreeMap;
use std::io;

use super::recipe::{relative, AppRecipe};

/// Modification time of every context entry. A fixed time keeps the builder's cache
/// keys stable across runs.
const CONTEXT_MTIME: u64 = 0;

enum ContextEntry<'a> {
    Directory { mode: u32 },
    File { mode: u32, contents: &'a [u8] },
}

/// Renders the Dockerfile of the application layer on top of `base_tag`.
pub(crate) fn render_dockerfile(app: &AppRecipe, base_tag: &str) -> String {
    let mut lines = vec![format!("FROM {base_tag}"), "COPY rootfs/ /".to_string()];
    if let Some(user) = &app.user {
        lines.push(format!("USER {user}"));
    }
    for entry in &app.env {
        let (name, value) = entry.split_once('=').expect("validated as NAME=value");
        lines.push(format!("ENV {name}={}", quote_env_value(value)));
    }
    if !app.expose.is_empty() {
        let ports: Vec<String> = app.expose.iter().map(u16::to_string).collect();
        lines.push(format!("EXPOSE {}", ports.join(" ")));
    }
    if let Some(check) = &app.healthcheck {
        lines.push(format!(
            "HEALTHCHECK --interval={}s --timeout={}s --start-period={}s --retries={} CMD {}",
            check.interval_s,
            check.timeout_s,
            check.start_period_s,
            check.retries,
            exec_form(&check.command)
        ));
    }
    if let Some(entrypoint) = &app.entrypoint {
        lines.push(format!("ENTRYPOINT {}", exec_form(entrypoint)));
    }
    if let Some(cmd) = &app.cmd {
        lines.push(format!("CMD {}", exec_form(cmd)));
    }
    lines.join("\n") + "\n"
}

/// Builds the uncompressed tar context: `Dockerfile` and `rootfs/` with the binary
/// (mode 755) at `app.binary`, the recipe's directories and files, and any missing
/// parent directories (mode 755). The builder's `COPY` makes everything owned by root.
pub(crate) fn build_context(app: &AppRecipe, base_tag: &str, binary: &[u8]) -> io::Result<Vec<u8>> {
    let mut entries: BTreeMap<String, ContextEntry> = BTreeMap::new();
    entries.insert(relative(&app.binary).to_string(), ContextEntry::File { mode: 0o755, contents: binary });
    for directory in &app.directories {
        entries.insert(relative(&directory.path).to_string(), ContextEntry::Directory { mode: directory.mode });
    }
    for file in &app.files {
        entries.insert(relative(&file.path).to_string(), ContextEntry::File { mode: file.mode, contents: file.content.as_bytes() });
    }
    let parents: Vec<String> = entries.keys().flat_map(|path| parent_paths(path)).collect();
    for parent in parents {
        entries.entry(parent).or_insert(ContextEntry::Directory { mode: 0o755 });
    }

    let mut builder = tar::Builder::new(Vec::new());
    let dockerfile = render_dockerfile(app, base_tag);
    append(&mut builder, "Dockerfile", &ContextEntry::File { mode: 0o644, contents: dockerfile.as_bytes() })?;
    append(&mut builder, "rootfs", &ContextEntry::Directory { mode: 0o755 })?;
    // BTreeMap order puts every directory before the paths inside it.
    for (path, entry) in &entries {
        append(&mut builder, &format!("rootfs/{path}"), entry)?;
    }
    builder.into_inner()
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, entry: &ContextEntry) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(CONTEXT_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    match entry {
        ContextEntry::Directory { mode } => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(*mode);
            header.set_size(0);
            builder.append_data(&mut header, path, io::empty())
        }
        ContextEntry::File { mode, contents } => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(*mode);
            header.set_size(contents.len() as u64);
            builder.append_data(&mut header, path, *contents)
        }
    }
}

/// Returns `a`, `a/b` for the path `a/b/c`.
fn parent_paths(path: &str) -> Vec<String> {
    let components: Vec<&str> = path.split('/').collect();
    (1..components.len()).map(|count| components[..count].join("/")).collect()
}

/// Renders a command in the JSON exec form, which Docker runs without a shell.
fn exec_form(words: &[String]) -> String {
    serde_json::to_string(words).expect("a list of strings always serializes")
}

/// Quotes an ENV value for a Dockerfile: inside double quotes, `\`, `"` and `$` are
/// escaped so that the builder neither ends the string nor expands variables.
fn quote_env_value(value: &str) -> String {
    let mut quoted = String::from("\"");
    for character in value.chars() {
        if matches!(character, '\\' | '"' | '$') {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::recipe::Recipe;
    use std::io::Read;

    #[test]
    fn distroless_dockerfile_rendered() {
        let recipe = Recipe::distroless().unwrap();
        let dockerfile = render_dockerfile(&recipe.app, "deploybench/distroless-base:0123456789ab");
        let expected = "\
FROM deploybench/distroless-base:0123456789ab
COPY rootfs/ /
USER 65532:65532
ENV PORT=\"8080\"
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=2s --start-period=1s --retries=3 CMD [\"/refservice\",\"healthcheck\"]
ENTRYPOINT [\"/refservice\"]
";
        assert_eq!(dockerfile, expected);
    }

    #[test]
    fn fat_dockerfile_uses_cmd() {
        let recipe = Recipe::fat_image().unwrap();
        let dockerfile = render_dockerfile(&recipe.app, "deploybench/fat-base:0123456789ab");
        assert!(dockerfile.contains("CMD [\"/usr/bin/supervisord\",\"-n\",\"-c\",\"/etc/supervisor/supervisord.conf\"]\n"));
        assert!(!dockerfile.contains("USER"));
        assert!(!dockerfile.contains("ENTRYPOINT"));
    }

    #[test]
    fn env_values_escaped() {
        assert_eq!(quote_env_value(r#"a "b" $HOME \n"#), r#""a \"b\" \$HOME \\n""#);
    }

    #[test]
    fn context_holds_binary_and_parents() {
        let recipe = Recipe::fat_image().unwrap();
        let context = build_context(&recipe.app, "deploybench/fat-base:0123456789ab", b"ELF").unwrap();
        let mut archive = tar::Archive::new(context.as_slice());
        let mut listing = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let mode = entry.header().mode().unwrap();
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            listing.push((path, mode, contents));
        }
        let paths: Vec<&str> = listing.iter().map(|(path, _, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "Dockerfile",
                "rootfs",
                "rootfs/etc",
                "rootfs/etc/supervisor",
                "rootfs/etc/supervisor/conf.d",
                "rootfs/etc/supervisor/conf.d/deploybench.conf",
                "rootfs/run",
                "rootfs/run/sshd",
                "rootfs/usr",
                "rootfs/usr/local",
                "rootfs/usr/local/bin",
                "rootfs/usr/local/bin/refservice",
            ]
        );
        let binary = listing.iter().find(|(path, _, _)| path == "rootfs/usr/local/bin/refservice").unwrap();
        assert_eq!((binary.1, binary.2.as_slice()), (0o755, &b"ELF"[..]));
        let config = listing.iter().find(|(path, _, _)| path.ends_with("deploybench.conf")).unwrap();
        assert!(String::from_utf8_lossy(&config.2).contains("command=/usr/local/bin/refservice --port 8080"));
    }
}
