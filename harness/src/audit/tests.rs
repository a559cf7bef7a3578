use super::*;

fn layer(paths: &[&str]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for path in paths {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append_data(&mut header, path, std::io::empty()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn files(layers: &[&[&str]]) -> ImageFiles {
    let mut files = ImageFiles::default();
    for paths in layers {
        files.apply_layer(&layer(paths)).unwrap();
    }
    files
}

fn hardened_facts() -> ImageFacts {
    ImageFacts {
        user: "65532:65532".into(),
        healthcheck: Some(vec!["CMD".into(), "/refservice".into(), "healthcheck".into()]),
        size_bytes: 3_200_000,
        env_names: vec!["PATH".into(), "PORT".into()],
        label_names: vec!["io.deploybench.managed".into()],
    }
}

#[test]
fn hardened_image_passes_every_item() {
    let items = checklist(&hardened_facts(), &files(&[&["refservice", "etc/passwd", "tmp/"]]));
    assert_eq!(items.len(), 7);
    for item in &items {
        assert!(item.passed, "{}: {}", item.item, item.reason);
    }
}

#[test]
fn fat_image_fails_with_reasons() {
    let facts = ImageFacts {
        user: String::new(),
        healthcheck: None,
        size_bytes: 194_000_000,
        env_names: vec!["DB_PASSWORD".into()],
        label_names: vec![],
    };
    let tree = files(&[&["bin/sh", "bin/bash", "usr/bin/apt-get", "usr/bin/dpkg", "var/lib/dpkg/status", "etc/debian_version"]]);
    let items = checklist(&facts, &tree);
    let failed: Vec<&str> = items.iter().filter(|item| !item.passed).map(|item| item.item.as_str()).collect();
    assert_eq!(failed.len(), 7, "{items:?}");
    let reason = |name: &str| items.iter().find(|item| item.item == name).unwrap().reason.clone();
    assert!(reason("runs as a non-root user").contains("root"));
    assert!(reason("has no shell").contains("/bin/sh"));
    assert!(reason("has no package manager").contains("/usr/bin/dpkg"));
    assert!(reason("is under 50 MB").contains("194.0 MB"));
    assert!(reason("has no secret-looking names in its environment or labels").contains("ENV DB_PASSWORD"));
    assert!(reason("is not built on a whole distribution").contains("/var/lib/dpkg/status"));
}

#[test]
fn root_user_spellings_fail() {
    for user in ["", "root", "0", "0:0", "root:root"] {
        let facts = ImageFacts { user: user.into(), ..hardened_facts() };
        let items = checklist(&facts, &ImageFiles::default());
        assert!(!items[0].passed, "USER {user:?} must fail");
    }
}

#[test]
fn whiteout_removes_lower_layer_file() {
    let tree = files(&[&["bin/sh", "usr/bin/dpkg", "etc/apt/sources.list"], &["bin/.wh.sh", "etc/apt/.wh..wh..opq"]]);
    assert!(!tree.paths.contains("bin/sh"));
    assert!(tree.paths.contains("usr/bin/dpkg"));
    assert!(!tree.paths.contains("etc/apt/sources.list"));
}
