//! The images the compose test runs, built on this machine because no registry can be
//! reached. Each is tagged with a hash of what it is made from and skipped when that tag
//! exists, so only a first run (or a change) pays:
//! - a Debian 12 base: `debootstrap --variant=minbase` and `docker import`, also tagged
//!   `debian:bookworm-slim` (the Dockerfile's runtime base) when that name is free;
//! - Redis, Prometheus and HAProxy from Debian's packages, installed into that base's files
//!   with `chroot … apt-get` on this machine, so no container has to reach the package
//!   mirror;
//! - the exai image: the Dockerfile's `runtime-base` stage, then its `runtime` stage's one
//!   COPY, with the binaries this test run built in place of the `build` stage's.

use super::run;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bump to rebuild the Debian-based images after changing how they are made.
const RECIPE: &str = "1";
/// The image the Dockerfile's runtime stage starts from.
const RUNTIME_BASE: &str = "debian:bookworm-slim";

pub struct Images {
    /// Debian 12 minbase, made here: the test doubles run in it.
    pub base: String,
    pub exai: String,
    pub redis: String,
    pub prometheus: String,
    pub haproxy: String,
    /// What had to be built this time, and how long each took.
    pub built: Vec<(String, Duration)>,
}

/// A server image made of Debian packages on the base.
struct PackageImage {
    name: &'static str,
    packages: &'static [&'static str],
    /// The user the package creates: it owns `data_dir` and runs the server.
    user: &'static str,
    data_dir: &'static str,
    /// `docker import --change` instructions besides USER and WORKDIR.
    changes: &'static [&'static str],
}

const REDIS: PackageImage = PackageImage {
    name: "redis",
    packages: &["redis-server"],
    user: "redis",
    data_dir: "/data",
    changes: &[r#"CMD ["redis-server"]"#],
};

/// Started like the official image: the binary as entrypoint, flags as the command.
const PROMETHEUS: PackageImage = PackageImage {
    name: "prometheus",
    packages: &["prometheus"],
    user: "prometheus",
    data_dir: "/prometheus",
    changes: &[
        r#"ENTRYPOINT ["/usr/bin/prometheus"]"#,
        r#"CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]"#,
    ],
};

/// Started like the official image, with its config at the path that image reads (the
/// compose file names the stop signal, which `docker import` cannot set). Debian's
/// HAProxy 2.6 has the Prometheus exporter built in.
const HAPROXY: PackageImage = PackageImage {
    name: "haproxy",
    packages: &["haproxy"],
    user: "haproxy",
    data_dir: "/var/lib/haproxy",
    changes: &[r#"CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]"#],
};

/// Makes sure every image exists; `bin_dir` holds the binaries this test run built.
pub fn ensure_images(repo: &Path, bin_dir: &Path) -> Images {
    // Beside the binaries, so they can be hard-linked into a build context.
    let work = tempfile::Builder::new()
        .prefix("exai-images-")
        .tempdir_in(bin_dir)
        .expect("a work directory for image builds");
    let mut built = Vec::new();
    let base = base_image(work.path(), &mut built);
    let redis = package_image(&base, work.path(), &REDIS, &mut built);
    let prometheus = package_image(&base, work.path(), &PROMETHEUS, &mut built);
    let haproxy = package_image(&base, work.path(), &HAPROXY, &mut built);
    let exai = exai_image(repo, bin_dir, work.path(), &mut built);
    Images {
        base,
        exai,
        redis,
        prometheus,
        haproxy,
        built,
    }
}

fn base_image(work: &Path, built: &mut Vec<(String, Duration)>) -> String {
    let tag = format!(
        "exai-test/debian:bookworm-{}",
        hash_of(&[b"debootstrap --variant=minbase bookworm", RECIPE.as_bytes()])
    );
    if !exists(&tag) {
        let started = Instant::now();
        must_be_root("debootstrap");
        let root = work.join("base");
        let mut debootstrap = Command::new("debootstrap");
        debootstrap
            .args(["--variant=minbase", "bookworm"])
            .arg(&root);
        if let Some(mirror) = host_mirror() {
            debootstrap.arg(mirror);
        }
        match debootstrap.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "debootstrap failed:\n{}\n{}",
                tail(&String::from_utf8_lossy(&out.stdout), 30),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "cannot run debootstrap ({e}): tests/run.sh installs it (apt-get install debootstrap)"
            ),
        }
        clean_apt(&root);
        import(&root, &tag, &[]);
        built.push((tag.clone(), started.elapsed()));
    }
    if !exists(RUNTIME_BASE) {
        run(Command::new("docker").args(["tag", &tag, RUNTIME_BASE]));
    }
    tag
}

fn package_image(
    base: &str,
    work: &Path,
    spec: &PackageImage,
    built: &mut Vec<(String, Duration)>,
) -> String {
    let mut recipe = vec![base.as_bytes(), RECIPE.as_bytes(), spec.data_dir.as_bytes()];
    recipe.extend(spec.packages.iter().map(|p| p.as_bytes()));
    recipe.extend(spec.changes.iter().map(|c| c.as_bytes()));
    let tag = format!("exai-test/{}:{}", spec.name, hash_of(&recipe));
    if exists(&tag) {
        return tag;
    }
    let started = Instant::now();
    must_be_root("chroot");
    let root = work.join(spec.name);
    export(base, &root);
    // apt in the chroot resolves the mirror with this machine's resolver; a symlink there
    // would point outside the chroot, so the file is replaced, not written through.
    let resolv = root.join("etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    std::fs::copy("/etc/resolv.conf", &resolv).expect("copy /etc/resolv.conf");
    // No service may start inside the chroot.
    let policy = root.join("usr/sbin/policy-rc.d");
    write_executable(&policy, "#!/bin/sh\nexit 101\n");
    chroot(&root, &["apt-get", "update", "-qq"]);
    let mut install = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
    ];
    install.extend(spec.packages);
    chroot(&root, &install);
    chroot(
        &root,
        &[
            "install",
            "-d",
            "-o",
            spec.user,
            "-g",
            spec.user,
            spec.data_dir,
        ],
    );
    std::fs::remove_file(&policy).expect("remove policy-rc.d");
    std::fs::write(&resolv, "").expect("empty resolv.conf");
    clean_apt(&root);
    let user = format!("USER {}", spec.user);
    let workdir = format!("WORKDIR {}", spec.data_dir);
    let mut changes = vec![user.as_str(), workdir.as_str()];
    changes.extend(spec.changes);
    import(&root, &tag, &changes);
    built.push((tag.clone(), started.elapsed()));
    tag
}

fn exai_image(
    repo: &Path,
    bin_dir: &Path,
    work: &Path,
    built: &mut Vec<(String, Duration)>,
) -> String {
    let dockerfile = repo.join("compose/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).expect("read compose/Dockerfile");
    let stage = RuntimeStage::parse(&text);
    let entrypoint =
        std::fs::read(repo.join("compose/docker-entrypoint.sh")).expect("read the entrypoint");
    let runtime_base = format!(
        "exai-test/exai-runtime-base:{}",
        hash_of(&[
            text.as_bytes(),
            &entrypoint,
            image_id(RUNTIME_BASE).as_bytes()
        ])
    );
    if !exists(&runtime_base) {
        let started = Instant::now();
        run(Command::new("docker")
            .args([
                "build",
                "-q",
                "--target",
                "runtime-base",
                "-t",
                &runtime_base,
                "-f",
            ])
            .arg(&dockerfile)
            .arg(repo));
        built.push((runtime_base.clone(), started.elapsed()));
    }

    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(runtime_base.as_bytes());
    for binary in &stage.binaries {
        hash_file(&mut hasher, &bin_dir.join(binary));
    }
    let tag = format!("exai-test/exai:{:016x}", hasher.finish());
    if exists(&tag) {
        return tag;
    }
    let started = Instant::now();
    let context = work.join("exai-context");
    std::fs::create_dir_all(&context).expect("create the build context");
    for binary in &stage.binaries {
        let (from, to) = (bin_dir.join(binary), context.join(binary));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)
                .unwrap_or_else(|e| panic!("copy {} into the context: {e}", from.display()));
        }
    }
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {runtime_base}\nCOPY {} {}\n",
            stage.binaries.join(" "),
            stage.destination
        ),
    )
    .expect("write the Dockerfile");
    run(Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(&context));
    remove_old_tags("exai-test/exai", &tag);
    built.push((tag.clone(), started.elapsed()));
    tag
}

/// The Dockerfile's `runtime` stage, which must be one `COPY --from=build` of the
/// binaries: the test copies its own binaries the same way.
#[derive(Debug, PartialEq)]
struct RuntimeStage {
    binaries: Vec<String>,
    destination: String,
}

impl RuntimeStage {
    fn parse(dockerfile: &str) -> Self {
        let mut lines = dockerfile
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        lines
            .find(|l| l.eq_ignore_ascii_case("FROM runtime-base AS runtime"))
            .expect("compose/Dockerfile has a stage `FROM runtime-base AS runtime`");
        let instructions: Vec<&str> = lines
            .take_while(|l| !l.to_ascii_uppercase().starts_with("FROM "))
            .collect();
        let copy = match instructions[..] {
            [one] => one.strip_prefix("COPY --from=build "),
            _ => None,
        }
        .unwrap_or_else(|| {
            panic!("the runtime stage must be one `COPY --from=build …` (the compose test copies its own binaries the same way), not {instructions:?}")
        });
        let mut words: Vec<&str> = copy.split_whitespace().collect();
        let destination = words.pop().expect("a COPY destination").to_string();
        let binaries = words
            .iter()
            .map(|source| source.rsplit('/').next().unwrap_or(source).to_string())
            .collect();
        Self {
            binaries,
            destination,
        }
    }
}

/// The Debian archive this machine's apt uses, so the base comes from the same mirror;
/// `None` lets debootstrap use its default.
fn host_mirror() -> Option<String> {
    let mut sources = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == "sources") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    sources.extend(deb822_archives(&text));
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        sources.extend(one_line_archives(&text));
    }
    sources.into_iter().next()
}

/// The URIs of `deb` stanzas in deb822 `.sources` text, security archives left out.
fn deb822_archives(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        let main_archive = field("Suites").is_some_and(|s| !s.contains("security"));
        if let (true, true, true, Some(uris)) = (is_deb, enabled, main_archive, field("URIs")) {
            found.extend(uris.split_whitespace().next().map(str::to_string));
        }
    }
    found
}

/// The URIs of `deb` lines in one-line `sources.list` text, security archives left out.
fn one_line_archives(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("deb ")?;
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let (uri, suite) = (words.next()?, words.next()?);
            (!suite.contains("security")).then(|| uri.to_string())
        })
        .collect()
}

fn must_be_root(tool: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("building the test images runs {tool}, which needs root: run the compose test as root once, and later runs reuse the images");
    }
}

fn exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn image_id(image: &str) -> String {
    run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image]))
        .trim()
        .to_string()
}

/// `tar -C root -c . | docker import [--change …] - tag`
fn import(root: &Path, tag: &str, changes: &[&str]) {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tar");
    let mut import = Command::new("docker");
    import.arg("import");
    for change in changes {
        import.args(["--change", change]);
    }
    import
        .args(["-", tag])
        .stdin(tar.stdout.take().expect("tar's stdout"));
    run(&mut import);
    assert!(
        tar.wait().expect("wait for tar").success(),
        "tar of {root:?}"
    );
}

/// The files of `image` unpacked into `root`.
fn export(image: &str, root: &Path) {
    std::fs::create_dir_all(root).expect("create the root directory");
    let id = run(Command::new("docker").args(["create", image, "/bin/true"]))
        .trim()
        .to_string();
    let mut export = Command::new("docker")
        .args(["export", &id])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run docker export");
    let mut tar = Command::new("tar");
    tar.arg("-x")
        .arg("-C")
        .arg(root)
        .stdin(export.stdout.take().expect("export's stdout"));
    run(&mut tar);
    assert!(export.wait().expect("wait for docker export").success());
    run(Command::new("docker").args(["rm", &id]));
}

fn chroot(root: &Path, args: &[&str]) {
    run(Command::new("chroot").arg(root).args(args));
}

/// Downloaded packages and package lists are not part of an image.
fn clean_apt(root: &Path) {
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Images of `repository` kept besides the one just built: runs from other work trees of
/// this machine may be using them at the same time.
const KEEP_OTHER_TAGS: usize = 2;

/// Removes all but the newest tags of `repository`, so changed binaries do not pile up
/// images.
fn remove_old_tags(repository: &str, keep: &str) {
    // Newest first.
    let tags = run(Command::new("docker").args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        repository,
    ]));
    for old in tags.lines().filter(|t| *t != keep).skip(KEEP_OTHER_TAGS) {
        // One a container still uses stays; that is fine.
        let _ = Command::new("docker").args(["rmi", old]).output();
    }
}

fn hash_of(parts: &[&[u8]]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    for part in parts {
        hasher.write(part);
        hasher.write_u8(0xff);
    }
    format!("{:016x}", hasher.finish())
}

fn hash_file(hasher: &mut std::hash::DefaultHasher, path: &Path) {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{} missing ({e}): build the binaries first (cargo build --workspace --bins)",
            path.display()
        )
    });
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read a binary");
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_archive_comes_from_apt_sources_of_either_format() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            deb822_archives(deb822),
            ["http://mirror.example/debian".to_string()]
        );
        let disabled =
            "Types: deb\nURIs: http://old.example/debian\nSuites: bookworm\nEnabled: no\n";
        assert!(deb822_archives(disabled).is_empty());
        let one_line = "# comment\ndeb-src http://src.example/debian bookworm main\ndeb [signed-by=/k.gpg] http://mirror.example/debian bookworm main\ndeb http://mirror.example/debian-security bookworm-security main\n";
        assert_eq!(
            one_line_archives(one_line),
            ["http://mirror.example/debian".to_string()]
        );
    }

    #[test]
    fn the_runtime_stage_names_the_binaries_and_where_they_go() {
        let dockerfile = "FROM debian AS runtime-base\nRUN true\n\nFROM runtime-base AS runtime\n# the binaries\nCOPY --from=build /src/target/release/exai-daemon /src/target/release/exai-agent /usr/local/bin/\n";
        assert_eq!(
            RuntimeStage::parse(dockerfile),
            RuntimeStage {
                binaries: vec!["exai-daemon".into(), "exai-agent".into()],
                destination: "/usr/local/bin/".into(),
            }
        );
        let shipped = include_str!("../../../compose/Dockerfile");
        assert_eq!(
            RuntimeStage::parse(shipped).binaries,
            ["exai-daemon", "exai-agent"]
        );
    }

    #[test]
    #[should_panic(expected = "must be one `COPY --from=build")]
    fn a_runtime_stage_doing_more_is_refused() {
        RuntimeStage::parse(
            "FROM runtime-base AS runtime\nCOPY --from=build /a /usr/local/bin/\nRUN chmod +x /usr/local/bin/a\n",
        );
    }
}
