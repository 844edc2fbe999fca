//! One Compose project: a name no other run uses, its files and variables, and `down -v`
//! when it is dropped, whether the test passed or not.

use super::{run, try_run, ComposeTool};
use std::path::PathBuf;
use std::process::Command;

pub struct Project {
    tool: ComposeTool,
    name: String,
    files: Vec<PathBuf>,
    /// Every variable the files read, set explicitly: nothing comes from the caller's
    /// shell or a stray `compose/.env`.
    env: Vec<(String, String)>,
    /// Profiles the test may turn on; `down` names them all so their services go too.
    profiles: Vec<String>,
}

impl Project {
    pub fn new(
        tool: ComposeTool,
        files: Vec<PathBuf>,
        env: Vec<(String, String)>,
        profiles: &[&str],
    ) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            tool,
            name: format!("exai-test-{}-{nanos}", std::process::id()),
            files,
            env,
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.tool.command();
        cmd.arg("-p").arg(&self.name);
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// `compose -p NAME -f … ARGS`: its stdout; a failure panics with what it said.
    pub fn run(&self, args: &[&str]) -> String {
        run(&mut self.command(args))
    }

    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        try_run(&mut self.command(args))
    }

    /// The host port published for `port` of the `index`th (from 1) container of
    /// `service`. Docker picks it, and picks again when the container restarts.
    pub fn port(&self, service: &str, port: u16, index: usize) -> u16 {
        let out = self.run(&[
            "port",
            "--index",
            &index.to_string(),
            service,
            &port.to_string(),
        ]);
        out.trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no published port for {service}:{port} in {out:?}"))
    }

    /// The ids of `service`'s containers, running or not.
    pub fn containers(&self, service: &str) -> Vec<String> {
        run(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]))
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The id of the `index`th (from 1) container of `service`.
    pub fn container(&self, service: &str, index: usize) -> String {
        let ids = run(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--filter",
            &format!("label=com.docker.compose.container-number={index}"),
        ]));
        match ids.lines().collect::<Vec<_>>()[..] {
            [one] => one.to_string(),
            ref other => panic!("{service} #{index}: expected one container, found {other:?}"),
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(logs) = self.try_run(&["logs", "--no-color", "--tail", "40"]) {
                eprintln!("last lines of the containers' logs:\n{logs}");
            }
        }
        let mut args: Vec<&str> = Vec::new();
        for profile in &self.profiles {
            args.extend(["--profile", profile.as_str()]);
        }
        args.extend(["down", "-v", "--remove-orphans", "--timeout", "10"]);
        if let Err(said) = self.try_run(&args) {
            eprintln!("could not take down compose project {}: {said}", self.name);
        }
    }
}
