//! The Kubernetes manifests in `deploy/kubernetes/`, checked offline: no cluster runs in
//! these tests. The base and its overlay render with `kubectl kustomize`; every object
//! validates against the Kubernetes 1.33 API schemas (kubernetes-validate, in
//! `tests/.venv-k8s`, which `tests/run.sh` creates) and the PodMonitor against the
//! Prometheus operator's PodMonitor fields. Then the pod is held to what the programs
//! need: the programs' own settings readers (`DaemonConfig::load`, `AgentConfig::load`)
//! read each container's environment as the kubelet would give it (the image's `ENV`,
//! then the manifest's `env`), and the socket, the probes, the ports and the writable
//! directories are checked against what they say. The image, its user and its ports
//! are read from `compose/Dockerfile` and `compose/docker-compose.yml`.

use exai_agent::config::AgentConfig;
use exai_daemon::config::DaemonConfig;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const BASE: &str = "deploy/kubernetes";
const OVERLAY: &str = "deploy/kubernetes/overlays/redis-supabase";
const KUBERNETES_VERSION: &str = "1.33";

/// A pod name as a Deployment makes them, at the longest one can be (a generated name
/// is cut to 63 characters), for the downward API's `metadata.name`.
const POD_NAME: &str = "exai-with-a-long-prefix-from-an-overlay-5d8f7c9b6d-x4k2p-abcdef";
const NAMESPACE: &str = "exai";

/// After the drain and the grace, the daemon flushes its spool and sends its last
/// heartbeat for up to 5 s (`SPOOL_CLOSE_WITHIN` in daemon/src/main.rs).
const SPOOL_FLUSH_S: u64 = 5;

fn repo() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("cannot find the repository at {}: {e}", dir.display()))
}

fn read(path: &str) -> String {
    let file = repo().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}

/// Runs a program, feeding it `input`; whether it succeeded, and what it printed.
fn run(mut command: Command, input: &str, missing: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}\n{missing}"));
    // A writer thread, so a program that prints before it has read everything cannot
    // block on a full pipe while this waits to write.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tests/py/k8s_manifests.py` in the venv `tests/run.sh` makes for it.
fn manifests_tool(args: &[&str], input: &str) -> (bool, String, String) {
    let python = repo().join("tests/.venv-k8s/bin/python");
    assert!(
        python.exists(),
        "{} is missing: tests/run.sh creates it (python3 -m venv tests/.venv-k8s && \
         tests/.venv-k8s/bin/pip install -r tests/py/requirements-k8s.txt)",
        python.display()
    );
    let mut command = Command::new(python);
    command
        .arg(repo().join("tests/py/k8s_manifests.py"))
        .args(args);
    run(command, input, "tests/run.sh creates tests/.venv-k8s")
}

/// YAML (one document or many) as JSON values, read by PyYAML in the venv.
fn yaml_to_json(yaml: &str, what: &str) -> Vec<Value> {
    let (ok, out, err) = manifests_tool(&["json", "-"], yaml);
    assert!(ok, "cannot read {what} as YAML:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: bad JSON from the tool: {e}"))
}

/// What `kubectl kustomize <dir>` prints, and the objects in it.
struct Rendered {
    dir: &'static str,
    yaml: String,
    objects: Vec<Value>,
}

fn kustomize(dir: &'static str) -> Rendered {
    let mut command = Command::new("kubectl");
    command.arg("kustomize").arg(repo().join(dir));
    let (ok, yaml, err) = run(
        command,
        "",
        "kubectl is needed to render the manifests (`kubectl kustomize`, built into kubectl \
         since 1.14); no cluster is needed",
    );
    assert!(ok, "kubectl kustomize {dir} failed:\n{err}");
    let objects = yaml_to_json(&yaml, dir);
    Rendered { dir, yaml, objects }
}

fn base() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| kustomize(BASE))
}

fn overlay() -> &'static Rendered {
    static RENDERED: OnceLock<Rendered> = OnceLock::new();
    RENDERED.get_or_init(|| kustomize(OVERLAY))
}

fn both() -> [&'static Rendered; 2] {
    [base(), overlay()]
}

impl Rendered {
    fn object(&self, kind: &str) -> &Value {
        let found: Vec<_> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(
            found.len(),
            1,
            "{}: expected one {kind}, found {}",
            self.dir,
            found.len()
        );
        found[0]
    }

    fn pod(&self) -> &Value {
        &self.object("Deployment")["spec"]["template"]["spec"]
    }

    fn pod_labels(&self) -> &serde_json::Map<String, Value> {
        self.object("Deployment")["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: the pod template has no labels", self.dir))
    }

    /// The one container of `list` (`containers` or `initContainers`) running `program`.
    fn container_in(&self, list: &str, program: &str) -> Option<&Value> {
        let containers = self.pod()[list].as_array()?;
        let found: Vec<_> = containers
            .iter()
            .filter(|c| program_of(c) == Some(program))
            .collect();
        assert!(
            found.len() <= 1,
            "{}: {program} runs in {} {list}",
            self.dir,
            found.len()
        );
        found.first().copied()
    }

    fn daemon(&self) -> &Value {
        self.container_in("containers", "exai-daemon")
            .unwrap_or_else(|| panic!("{}: no container runs exai-daemon", self.dir))
    }

    fn agent(&self) -> &Value {
        self.container_in("initContainers", "exai-agent")
            .or_else(|| self.container_in("containers", "exai-agent"))
            .unwrap_or_else(|| panic!("{}: no container runs exai-agent", self.dir))
    }

    fn volume(&self, name: &str) -> &Value {
        self.pod()["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name))
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.dir))
    }

    /// The container's environment, as the kubelet gives it.
    fn env(&self, container: &Value) -> HashMap<String, String> {
        container_env(&image(), container)
    }

    fn daemon_config(&self) -> DaemonConfig {
        let env = self.env(self.daemon());
        DaemonConfig::load(&env, &Default::default()).unwrap_or_else(|e| {
            panic!(
                "{}: exai-daemon would refuse to start with this environment: {e}",
                self.dir
            )
        })
    }

    fn agent_config(&self) -> AgentConfig {
        let env = self.env(self.agent());
        AgentConfig::load(&env, &Default::default()).unwrap_or_else(|e| {
            panic!(
                "{}: exai-agent would refuse to start with this environment: {e}",
                self.dir
            )
        })
    }

    /// The emptyDir volume mounted in `container` at or above `path`, and where.
    fn empty_dir_holding(&self, container: &Value, path: &Path) -> (String, PathBuf) {
        let mounts = container["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mount = mounts
            .iter()
            .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("")))
            .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} writes {}, but no volume is mounted there (the root \
                     filesystem is read-only)",
                    self.dir,
                    name_of(container),
                    path.display()
                )
            });
        let name = mount["name"].as_str().unwrap().to_owned();
        assert!(
            mount["readOnly"] != true,
            "{}: volume {name} is mounted read-only in {}, which writes {}",
            self.dir,
            name_of(container),
            path.display()
        );
        assert!(
            self.volume(&name)["emptyDir"].is_object(),
            "{}: volume {name} (holding {}) is not an emptyDir",
            self.dir,
            path.display()
        );
        (name, PathBuf::from(mount["mountPath"].as_str().unwrap()))
    }
}

fn name_of(container: &Value) -> &str {
    container["name"]
        .as_str()
        .unwrap_or("(a container without a name)")
}

/// The program a container runs: its `command`, or the image's entrypoint with its
/// `args` (the entrypoint `exec`s them).
fn program_of(container: &Value) -> Option<&str> {
    let first = |key: &str| container[key].as_array()?.first()?.as_str();
    match first("command") {
        Some("exai-entrypoint") | None => first("args"),
        Some(program) => Some(program),
    }
}

/// What `compose/Dockerfile` gives the containers: its runtime stages' ENV, the user it
/// runs as, and the ports it exposes.
struct Image {
    env: BTreeMap<String, String>,
    uid: u64,
    gid: u64,
    home: String,
    exposed: BTreeSet<u64>,
}

/// The Dockerfile's instructions: continuation lines joined, comments left out, each
/// with the stage it belongs to.
fn dockerfile_instructions(text: &str) -> Vec<(String, String, String)> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stage = String::new();
    let mut out = Vec::new();
    for line in logical {
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let verb = verb.to_ascii_uppercase();
        if verb == "FROM" {
            let words: Vec<_> = rest.split_whitespace().collect();
            stage = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
        }
        out.push((stage.clone(), verb, rest.trim().to_owned()));
    }
    out
}

/// The value after `option` among `words`.
fn option_value<'a>(words: &[&'a str], option: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| *w == option)
        .and_then(|i| words.get(i + 1).copied())
}

fn image() -> Image {
    let text = read("compose/Dockerfile");
    let mut env = BTreeMap::new();
    let mut user = None;
    let mut exposed = BTreeSet::new();
    let mut users = HashMap::new();
    let mut groups = HashMap::new();
    for (stage, verb, rest) in dockerfile_instructions(&text) {
        // The build stage compiles; what runs is runtime-base and runtime on top of it.
        if stage != "runtime-base" && stage != "runtime" {
            continue;
        }
        match verb.as_str() {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| {
                        panic!("compose/Dockerfile: ENV {pair}: expected KEY=VALUE")
                    });
                    env.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            "USER" => user = Some(rest.clone()),
            "EXPOSE" => exposed.extend(rest.split_whitespace().map(|p| {
                p.trim_end_matches("/tcp")
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("compose/Dockerfile: EXPOSE {p}: {e}"))
            })),
            "RUN" => {
                for command in rest.split("&&") {
                    let words: Vec<_> = command.split_whitespace().collect();
                    let name = words.last().copied().unwrap_or_default().to_owned();
                    match words.first().copied() {
                        Some("useradd") => {
                            let uid = option_value(&words, "--uid").and_then(|v| v.parse().ok());
                            let home = option_value(&words, "--home-dir").unwrap_or("/");
                            users.insert(name, (uid, home.to_owned()));
                        }
                        Some("groupadd") => {
                            let gid = option_value(&words, "--gid").and_then(|v| v.parse().ok());
                            groups.insert(name, gid);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let user = user.expect("compose/Dockerfile has no USER in its runtime stages");
    let (user_name, group_name) = user.split_once(':').unwrap_or((&user, &user));
    let (uid, home) = users.get(user_name).cloned().unwrap_or_else(|| {
        panic!("compose/Dockerfile: USER {user}, but no `useradd … {user_name}` makes that user")
    });
    let gid = groups.get(group_name).copied().flatten();
    Image {
        env,
        uid: uid.unwrap_or_else(|| panic!("compose/Dockerfile: useradd {user_name} has no --uid")),
        gid: gid
            .unwrap_or_else(|| panic!("compose/Dockerfile: no `groupadd --gid N {group_name}`")),
        home,
        exposed,
    }
}

/// A Secret's value for a key, as an operator would store it: right in shape, so the
/// programs' settings readers take it.
fn secret_value(key: &str) -> &'static str {
    match key {
        "EXAI_WS_TOKEN" => "a-token-of-at-least-sixteen-characters",
        "SUPABASE_URL" => "https://project.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY" => "service-role-key",
        "REDIS_URL" => "redis://:password@redis:6379",
        other => panic!("the manifests read Secret key {other}, which this test has no value for"),
    }
}

/// Expands `$(NAME)` as the kubelet does: with the variables the container's `env`
/// defined before it; `$$` is a literal `$`, and an unknown reference stays as written.
fn expand(value: &str, defined: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match defined.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A container's environment as the kubelet gives it: the image's `ENV` and `HOME` (the
/// runtime sets it from the user's entry), the host name (the pod's name), then the
/// container's `env` in order.
fn container_env(image: &Image, container: &Value) -> HashMap<String, String> {
    assert!(
        container["envFrom"].is_null(),
        "{}: envFrom is not read by this test; name each variable in env",
        name_of(container)
    );
    let mut env: HashMap<String, String> = image.env.clone().into_iter().collect();
    env.insert("HOME".into(), image.home.clone());
    env.insert("HOSTNAME".into(), POD_NAME.into());
    let mut defined = HashMap::new();
    for var in container["env"].as_array().cloned().unwrap_or_default() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = var["value"].as_str() {
            expand(value, &defined)
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => POD_NAME.to_owned(),
                "metadata.namespace" => NAMESPACE.to_owned(),
                other => panic!("{name}: fieldRef {other} is not read by this test"),
            }
        } else if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
            secret_value(key).to_owned()
        } else {
            String::new()
        };
        defined.insert(name.clone(), value.clone());
        env.insert(name, value);
    }
    env
}

/// Every `.rs` file's text under `dir` of the repository.
fn sources(dir: &str) -> String {
    fn walk(dir: &Path, text: &mut String) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, text);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut text = String::new();
    walk(&repo().join(dir), &mut text);
    text
}

/// Whether the program's source names `path` as a string: where its routes are.
fn served(source_dir: &str, path: &str) -> bool {
    sources(source_dir).contains(&format!("\"{path}\""))
}

/// A container port by name or number, as its number.
fn port_number(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port
        .as_str()
        .unwrap_or_else(|| panic!("port {port} is neither a name nor a number"));
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{} has no port named {name}", name_of(container)))
}

fn container_ports(container: &Value) -> BTreeSet<u64> {
    container["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p["containerPort"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// A setting of the pod's or, overriding it, the container's security context.
fn security<'a>(pod: &'a Value, container: &'a Value, key: &str) -> &'a Value {
    match &container["securityContext"][key] {
        Value::Null => &pod["securityContext"][key],
        set => set,
    }
}

/// `selector` (a map of labels) picks pods with `labels`.
fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Bytes or millicores of a resource quantity (`64Mi`, `1Gi`, `100m`, `2`).
fn quantity(q: &Value) -> f64 {
    let s = match q {
        Value::Number(n) => return n.as_f64().unwrap(),
        Value::String(s) => s.as_str(),
        other => panic!("not a quantity: {other}"),
    };
    let units = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
    ];
    for (suffix, factor) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * factor;
        }
    }
    s.parse().unwrap_or_else(|e| panic!("quantity {s}: {e}"))
}

/// The PodMonitor's fields as the Prometheus operator documents them, shaped as its CRD.
fn podmonitor_schema() -> PathBuf {
    repo().join("tests/kubernetes/podmonitor-fields.yaml")
}

fn validate(yaml: &str, version: &str) -> (bool, String) {
    let schema = podmonitor_schema();
    let (ok, out, err) = manifests_tool(
        &["validate", version, "--crd", schema.to_str().unwrap(), "-"],
        yaml,
    );
    (ok, format!("{out}{err}"))
}

#[test]
fn base_and_overlay_render_and_every_object_validates_against_kubernetes_1_33() {
    for rendered in both() {
        let (ok, said) = validate(&rendered.yaml, KUBERNETES_VERSION);
        assert!(ok, "{} does not validate:\n{said}", rendered.dir);
        let lines: Vec<_> = said.lines().collect();
        assert_eq!(
            lines.len(),
            rendered.objects.len(),
            "{}: one line per object expected:\n{said}",
            rendered.dir
        );
        for (line, object) in lines.iter().zip(&rendered.objects) {
            let schema = if object["kind"] == "PodMonitor" {
                "(CRD podmonitors.monitoring.coreos.com".to_owned()
            } else {
                format!("(Kubernetes {KUBERNETES_VERSION})")
            };
            assert!(
                line.starts_with("ok ") && line.contains(&schema),
                "{}: {line}: expected validated against {schema}",
                rendered.dir
            );
        }
        let kinds: BTreeSet<_> = rendered
            .objects
            .iter()
            .filter_map(|o| o["kind"].as_str())
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["Deployment", "PodDisruptionBudget", "PodMonitor", "Service"]),
            "{}",
            rendered.dir
        );
    }
}

#[test]
fn the_validation_refuses_what_a_cluster_would_refuse() {
    let mut objects = base().objects.clone();
    for object in &mut objects {
        match object["kind"].as_str() {
            Some("Deployment") => {
                object["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                    ["readOnlyRootFilesytem"] = true.into();
            }
            Some("PodMonitor") => {
                object["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds".into();
            }
            _ => {}
        }
    }
    let broken: String = objects.iter().map(|o| format!("---\n{o}\n")).collect();
    let (ok, said) = validate(&broken, KUBERNETES_VERSION);
    assert!(!ok, "a misspelt field and a bad interval passed:\n{said}");
    assert!(
        said.contains("invalid apps/v1 Deployment") && said.contains("readOnlyRootFilesytem"),
        "the misspelt field was not named:\n{said}"
    );
    assert!(
        said.contains("invalid monitoring.coreos.com/v1 PodMonitor") && said.contains("interval"),
        "the bad interval was not named:\n{said}"
    );

    // The schemas are those of the version asked for: native sidecars are not in 1.27's.
    let (ok, said) = validate(&base().yaml, "1.27");
    assert!(
        !ok && said.contains("restartPolicy"),
        "Kubernetes 1.27 has no restartPolicy on init containers, yet:\n{said}"
    );
}

#[test]
fn the_agent_is_a_native_sidecar_started_before_the_daemon() {
    for rendered in both() {
        let agent = rendered
            .container_in("initContainers", "exai-agent")
            .unwrap_or_else(|| panic!("{}: exai-agent is not an init container", rendered.dir));
        assert_eq!(
            agent["restartPolicy"], "Always",
            "{}: the agent must be a sidecar (an init container with restartPolicy Always), \
             started before the daemon and stopped after it",
            rendered.dir
        );
        // The kubelet starts the next container once a sidecar's startup probe succeeds
        // (without one, as soon as its process runs, before it listens).
        assert!(
            agent["startupProbe"].is_object(),
            "{}: without a startupProbe the daemon may start before the agent listens",
            rendered.dir
        );
        let daemon = rendered.daemon();
        assert!(
            daemon["restartPolicy"].is_null(),
            "{}: the daemon is the app, not a sidecar",
            rendered.dir
        );
    }
}

#[test]
fn daemon_and_agent_share_the_event_socket_on_an_emptydir() {
    for rendered in both() {
        let daemon = rendered.daemon_config();
        let agent = rendered.agent_config();
        assert_eq!(
            daemon.events_socket, agent.events_socket,
            "{}: the daemon connects where the agent does not listen",
            rendered.dir
        );
        let socket = agent.events_socket;
        let (volume_a, mount_a) = rendered.empty_dir_holding(rendered.agent(), &socket);
        let (volume_d, _) = rendered.empty_dir_holding(rendered.daemon(), &socket);
        assert_eq!(
            volume_a,
            volume_d,
            "{}: the socket {} is on volume {volume_a} for the agent and {volume_d} for the daemon",
            rendered.dir,
            socket.display()
        );
        // The agent refuses a socket directory that another user owns or anyone may write
        // to, and an emptyDir's own directory is root's and writable by all: the socket
        // goes in a directory the agent makes inside it.
        assert_ne!(
            socket.parent(),
            Some(mount_a.as_path()),
            "{}: the socket's directory is the emptyDir's own ({})",
            rendered.dir,
            mount_a.display()
        );
    }
}

#[test]
fn every_probe_asks_a_path_and_port_its_program_serves() {
    for rendered in both() {
        let daemon_config = rendered.daemon_config();
        let agent_config = rendered.agent_config();
        // The kubelet probes the pod's address, not loopback.
        assert!(
            daemon_config.server.addr.ip().is_unspecified(),
            "{}: the daemon listens on {}, out of the kubelet's reach",
            rendered.dir,
            daemon_config.server.addr
        );
        assert!(
            agent_config.health.enabled && agent_config.health.addr.ip().is_unspecified(),
            "{}: the agent's health listens on {}, out of the kubelet's reach",
            rendered.dir,
            agent_config.health.addr
        );
        let programs = [
            (
                rendered.daemon(),
                "daemon/src",
                u64::from(daemon_config.server.addr.port()),
            ),
            (
                rendered.agent(),
                "agent/src/health",
                u64::from(agent_config.health.addr.port()),
            ),
        ];
        for (container, source, port) in programs {
            for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let probe = &container[kind];
                if probe.is_null() {
                    continue;
                }
                let get = &probe["httpGet"];
                let at = format!("{}: {} {kind}", rendered.dir, name_of(container));
                assert!(get.is_object(), "{at} is not an HTTP GET");
                assert!(get["host"].is_null(), "{at} asks another host");
                let path = get["path"].as_str().unwrap_or("/");
                assert!(
                    served(source, path),
                    "{at} asks {path}, which {source} does not serve"
                );
                assert_eq!(
                    port_number(container, &get["port"]),
                    port,
                    "{at} asks another port"
                );
            }
        }
        let path = |container: &Value, kind: &str| container[kind]["httpGet"]["path"].clone();
        let daemon = rendered.daemon();
        assert_eq!(
            path(daemon, "readinessProbe"),
            "/readyz",
            "{}",
            rendered.dir
        );
        assert_eq!(
            path(daemon, "livenessProbe"),
            "/healthz",
            "{}",
            rendered.dir
        );
        let agent = rendered.agent();
        assert_eq!(
            path(agent, "startupProbe"),
            "/health/live",
            "{}",
            rendered.dir
        );
        assert_eq!(
            path(agent, "livenessProbe"),
            "/health/live",
            "{}",
            rendered.dir
        );
        // A sidecar's readiness is the pod's: /health/ready fails while Redis or Supabase
        // does, and the daemon still answers then.
        assert_ne!(
            path(agent, "readinessProbe"),
            "/health/ready",
            "{}: the agent's /health/ready would take the pod out of the Service whenever \
             Redis or Supabase fails",
            rendered.dir
        );
    }
}

#[test]
fn image_user_and_ports_are_those_of_the_dockerfile_and_compose() {
    let image = image();
    let compose = yaml_to_json(
        &read("compose/docker-compose.yml"),
        "compose/docker-compose.yml",
    );
    let services = &compose[0]["services"];
    // `${EXAI_IMAGE:-exai:latest}`: what compose builds when nothing overrides it.
    let built = |service: &str| -> String {
        let spec = services[service]["image"].as_str().unwrap_or_else(|| {
            panic!("compose/docker-compose.yml: service {service} names no image")
        });
        spec.strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .and_then(|s| s.split_once(":-"))
            .map_or(spec, |(_, default)| default)
            .to_owned()
    };
    // "${EXAI_PUBLISH_ADDRESS:-127.0.0.1}:${EXAI_DAEMON_PORT-8079}:8079": the last part.
    let published = |service: &str| -> BTreeSet<u64> {
        services[service]["ports"]
            .as_array()
            .unwrap_or_else(|| panic!("compose/docker-compose.yml: {service} publishes no port"))
            .iter()
            .map(|p| {
                p.as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    for rendered in both() {
        let pod = rendered.pod();
        let daemon_config = rendered.daemon_config();
        let agent_config = rendered.agent_config();
        let containers = [
            (
                rendered.daemon(),
                "daemon",
                BTreeSet::from([u64::from(daemon_config.server.addr.port())]),
            ),
            (
                rendered.agent(),
                "agent",
                [
                    agent_config.metrics.addr,
                    agent_config.health.addr,
                    agent_config.monitoring.addr,
                ]
                .iter()
                .map(|a| u64::from(a.port()))
                .collect(),
            ),
        ];
        let mut all_ports = BTreeSet::new();
        for (container, service, listening) in containers {
            let at = format!("{}: {}", rendered.dir, name_of(container));
            assert_eq!(
                container["image"],
                built(service).as_str(),
                "{at}: not the image compose builds"
            );
            assert_eq!(
                security(pod, container, "runAsUser"),
                image.uid,
                "{at}: not the image's user"
            );
            assert_eq!(
                security(pod, container, "runAsGroup"),
                image.gid,
                "{at}: not the image's group"
            );
            let ports = container_ports(container);
            assert_eq!(
                ports,
                published(service),
                "{at}: not the ports compose publishes for {service}"
            );
            assert_eq!(
                ports, listening,
                "{at}: not the ports the program listens on"
            );
            all_ports.extend(ports);
        }
        assert_eq!(
            all_ports, image.exposed,
            "{}: not the ports compose/Dockerfile exposes",
            rendered.dir
        );
    }
}

#[test]
fn the_pod_runs_locked_down_and_writes_only_to_its_emptydirs() {
    for rendered in both() {
        let pod = rendered.pod();
        assert_eq!(
            pod["automountServiceAccountToken"], false,
            "{}",
            rendered.dir
        );
        for container in [rendered.daemon(), rendered.agent()] {
            let at = format!("{}: {}", rendered.dir, name_of(container));
            let context = &container["securityContext"];
            assert_eq!(security(pod, container, "runAsNonRoot"), true, "{at}");
            assert_eq!(
                security(pod, container, "seccompProfile")["type"],
                "RuntimeDefault",
                "{at}"
            );
            assert_eq!(context["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(context["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(
                context["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{at}"
            );
        }

        // Where the programs write, as their own settings say: each on an emptyDir, in a
        // directory below the volume's own, which the program makes 0700 (it could not
        // change the mode of the volume's root-owned directory).
        let config = rendered.daemon_config();
        let name = config.name.clone().unwrap();
        let mut daemon_writes = vec![config.storage.journal_dir(&name)];
        daemon_writes.extend(config.supabase.as_ref().map(|s| s.spool_dir.clone()));
        let socket = rendered.agent_config().events_socket;
        let writes = [
            (rendered.daemon(), daemon_writes),
            (rendered.agent(), vec![socket.parent().unwrap().to_owned()]),
        ];
        for (container, dirs) in writes {
            for dir in dirs {
                let (_, mount) = rendered.empty_dir_holding(container, &dir);
                assert_ne!(
                    dir,
                    mount,
                    "{}: {} writes {} straight into the volume's own directory",
                    rendered.dir,
                    name_of(container),
                    dir.display()
                );
            }
        }
    }
    assert!(
        overlay().daemon_config().supabase.is_some(),
        "the overlay's daemon does not persist to Supabase, so its spool was not checked"
    );
}

#[test]
fn the_termination_grace_outlasts_the_drain_the_grace_and_the_spool_flush() {
    for rendered in both() {
        let env = rendered.env(rendered.daemon());
        let seconds = |key: &str| -> u64 {
            env.get(key)
                .unwrap_or_else(|| panic!("{}: the daemon's env does not set {key}", rendered.dir))
                .parse()
                .unwrap_or_else(|e| panic!("{}: {key}: {e}", rendered.dir))
        };
        let drain = seconds("EXAI_DRAIN_S");
        let grace = seconds("EXAI_SHUTDOWN_GRACE_S");
        let config = rendered.daemon_config();
        assert_eq!(
            config.drain.as_secs(),
            drain,
            "{}: the daemon reads another drain",
            rendered.dir
        );
        assert_eq!(
            config.shutdown_grace.as_secs(),
            grace,
            "{}: the daemon reads another grace",
            rendered.dir
        );
        let termination = rendered.pod()["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no terminationGracePeriodSeconds", rendered.dir));
        assert!(
            termination > drain + grace + SPOOL_FLUSH_S,
            "{}: terminationGracePeriodSeconds {termination} does not outlast the drain \
             ({drain} s), the grace ({grace} s) and the spool's flush ({SPOOL_FLUSH_S} s): \
             the kubelet would kill the daemon before its last heartbeat",
            rendered.dir
        );
        // The readiness probe sees /readyz turn 503 while the drain still serves.
        let readiness = &rendered.daemon()["readinessProbe"];
        let noticed = readiness["periodSeconds"].as_u64().unwrap_or(10)
            * readiness["failureThreshold"].as_u64().unwrap_or(3);
        assert!(
            noticed < drain,
            "{}: the readiness probe needs {noticed} s to see the drain, which lasts {drain} s",
            rendered.dir
        );
    }
}

#[test]
fn each_daemon_is_named_after_its_pod() {
    for rendered in both() {
        let daemon = rendered.daemon();
        let var = daemon["env"]
            .as_array()
            .and_then(|env| env.iter().find(|v| v["name"] == "EXAI_DAEMON_NAME"))
            .unwrap_or_else(|| panic!("{}: EXAI_DAEMON_NAME is not set", rendered.dir));
        assert_eq!(
            var["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
            "{}",
            rendered.dir
        );
        // Any name a Deployment gives a pod is one the daemon takes.
        assert_eq!(
            rendered.daemon_config().name.as_deref(),
            Some(POD_NAME),
            "{}",
            rendered.dir
        );
    }
}

#[test]
fn service_budget_and_podmonitor_select_the_pods_and_their_ports() {
    let scrape = yaml_to_json(&read("compose/prometheus.yml"), "compose/prometheus.yml");
    let job = scrape[0]["scrape_configs"][0]["job_name"].clone();
    for rendered in both() {
        let labels = rendered.pod_labels();
        let daemon_port = u64::from(rendered.daemon_config().server.addr.port());
        let metrics_port = u64::from(rendered.agent_config().metrics.addr.port());

        let service = &rendered.object("Service")["spec"];
        assert!(
            selects(&service["selector"], labels),
            "{}: the Service selects no pod",
            rendered.dir
        );
        let ports = service["ports"].as_array().unwrap();
        assert_eq!(
            ports.len(),
            1,
            "{}: the Service is for MCP alone",
            rendered.dir
        );
        assert_eq!(ports[0]["port"], daemon_port, "{}", rendered.dir);
        assert_eq!(
            port_number(rendered.daemon(), &ports[0]["targetPort"]),
            daemon_port,
            "{}: the Service sends MCP elsewhere",
            rendered.dir
        );

        let budget = &rendered.object("PodDisruptionBudget")["spec"];
        assert!(
            selects(&budget["selector"]["matchLabels"], labels),
            "{}: the PodDisruptionBudget selects no pod",
            rendered.dir
        );

        let monitor = &rendered.object("PodMonitor")["spec"];
        assert!(
            selects(&monitor["selector"]["matchLabels"], labels),
            "{}: the PodMonitor selects no pod",
            rendered.dir
        );
        let endpoints = monitor["podMetricsEndpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 1, "{}", rendered.dir);
        let endpoint = &endpoints[0];
        assert_eq!(
            port_number(rendered.agent(), &endpoint["port"]),
            metrics_port,
            "{}: the PodMonitor scrapes another port than the agent's metrics",
            rendered.dir
        );
        let path = endpoint["path"].as_str().unwrap_or("/metrics");
        assert!(
            served("agent/src", path),
            "{}: the agent serves no {path}",
            rendered.dir
        );
        // compose/prometheus/alerts.yml names the scrape job of compose/prometheus.yml.
        let sets_job = endpoint["relabelings"].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                r["targetLabel"] == "job"
                    && r["replacement"] == job
                    && matches!(r["action"].as_str(), None | Some("replace" | "Replace"))
            })
        });
        assert!(
            sets_job,
            "{}: the PodMonitor does not set job={job}, which the alerts expect",
            rendered.dir
        );
    }
}

#[test]
fn the_overlay_shares_redis_between_replicas_and_takes_its_secrets_by_reference() {
    // In memory, a conversation lives in one pod: the base runs one.
    assert_eq!(base().object("Deployment")["spec"]["replicas"], 1);
    assert!(base().daemon_config().storage.redis_url.is_none());

    let rendered = overlay();
    let replicas = rendered.object("Deployment")["spec"]["replicas"]
        .as_u64()
        .unwrap();
    assert!(replicas >= 2, "the overlay runs {replicas} replica(s)");
    assert!(
        rendered.objects.iter().all(|o| o["kind"] != "Secret"),
        "the overlay renders a Secret: applying it would replace the operator's"
    );
    let config = rendered.daemon_config();
    assert!(
        config.storage.redis_url.is_some(),
        "the overlay's daemon does not use Redis"
    );
    assert!(
        config.server.token.is_some(),
        "the overlay's daemon requires no token"
    );
    assert!(
        config.supabase.is_some(),
        "the overlay's daemon does not persist to Supabase"
    );

    let env = rendered.daemon()["env"].as_array().unwrap();
    let mut referenced = BTreeMap::new();
    for key in ["EXAI_WS_TOKEN", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"] {
        let var = env
            .iter()
            .find(|v| v["name"] == key)
            .unwrap_or_else(|| panic!("the overlay does not set {key}"));
        assert!(var["value"].is_null(), "{key} has a value in the manifest");
        let from = &var["valueFrom"]["secretKeyRef"];
        assert!(from.is_object(), "{key} is not taken from a Secret");
        referenced.insert(
            from["key"].as_str().unwrap().to_owned(),
            from["name"].clone(),
        );
    }
    let names: BTreeSet<_> = referenced.values().filter_map(Value::as_str).collect();
    assert_eq!(
        names.len(),
        1,
        "the settings come from several Secrets: {names:?}"
    );
    let secret = names.into_iter().next().unwrap();

    // README's `kubectl create secret generic …` makes the Secret the overlay reads.
    let readme = read("README.md");
    let command = readme
        .split("kubectl create secret generic ")
        .nth(1)
        .expect("README.md shows no `kubectl create secret generic`");
    let mut lines = command.lines();
    let first = lines.next().unwrap();
    assert_eq!(
        first.split_whitespace().next(),
        Some(secret),
        "README's Secret is not the one the overlay reads"
    );
    let mut keys = BTreeSet::new();
    for line in std::iter::once(first).chain(lines) {
        for part in line.split_whitespace() {
            if let Some(kv) = part.strip_prefix("--from-literal=") {
                keys.insert(kv.split('=').next().unwrap().to_owned());
            }
        }
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    let wanted: BTreeSet<_> = referenced.keys().cloned().collect();
    assert_eq!(
        keys, wanted,
        "README's Secret does not hold the keys the overlay reads"
    );
}

#[test]
fn every_container_requests_and_limits_cpu_and_memory() {
    for rendered in both() {
        for container in [rendered.daemon(), rendered.agent()] {
            let resources = &container["resources"];
            for resource in ["cpu", "memory"] {
                let at = format!("{}: {} {resource}", rendered.dir, name_of(container));
                let request = &resources["requests"][resource];
                let limit = &resources["limits"][resource];
                assert!(
                    !request.is_null() && !limit.is_null(),
                    "{at}: a request and a limit are needed"
                );
                assert!(
                    quantity(request) <= quantity(limit),
                    "{at}: the request is above the limit"
                );
            }
        }
    }
}
