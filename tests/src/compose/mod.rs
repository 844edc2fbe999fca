//! `compose/docker-compose.yml` on a real Docker engine, for `tests/tests/compose.rs`:
//! which Compose tool this machine has, the images the stack needs (built here, since no
//! registry can be reached), a project that takes itself down with its volumes when
//! dropped, and a load of chats that counts what failed.

mod images;
mod load;
mod project;

pub use images::{ensure_images, Images};
pub use load::{ChatLoad, LoadResult};
pub use project::Project;

use std::process::{Command, Output};

/// How Compose is run here: the `docker compose` plugin when it works, else the older
/// standalone `docker-compose` (1.29 on Debian 12), which reads the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeTool {
    Plugin,
    Standalone,
}

impl ComposeTool {
    pub fn command(self) -> Command {
        match self {
            Self::Plugin => {
                let mut cmd = Command::new("docker");
                cmd.arg("compose");
                cmd
            }
            Self::Standalone => Command::new("docker-compose"),
        }
    }

    pub fn spelling(self) -> &'static str {
        match self {
            Self::Plugin => "docker compose",
            Self::Standalone => "docker-compose",
        }
    }
}

/// The Compose tool, when a Docker engine answers and a tool is installed; otherwise why
/// not, in words for a skip message.
pub fn detect() -> Result<ComposeTool, String> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "no Docker engine answers (docker info: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Err(e) => return Err(format!("no docker command ({e})")),
    }
    if succeeds(Command::new("docker").args(["compose", "version"])) {
        Ok(ComposeTool::Plugin)
    } else if succeeds(Command::new("docker-compose").arg("version")) {
        Ok(ComposeTool::Standalone)
    } else {
        Err("neither `docker compose` nor `docker-compose` is installed".into())
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|out| out.status.success())
}

/// Runs `cmd`; its stdout, or a panic that shows what it said.
pub(crate) fn run(cmd: &mut Command) -> String {
    match try_run(cmd) {
        Ok(stdout) => stdout,
        Err(said) => panic!("{said}"),
    }
}

/// Runs `cmd`; its stdout, or everything it said when it failed.
pub(crate) fn try_run(cmd: &mut Command) -> Result<String, String> {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `docker inspect -f FORMAT ID`, trimmed.
pub fn inspect(id: &str, format: &str) -> String {
    run(Command::new("docker").args(["inspect", "-f", format, id]))
        .trim()
        .to_string()
}

/// `docker volume inspect -f FORMAT NAME`, trimmed.
pub fn inspect_volume(name: &str, format: &str) -> String {
    run(Command::new("docker").args(["volume", "inspect", "-f", format, name]))
        .trim()
        .to_string()
}
