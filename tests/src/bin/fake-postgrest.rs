//! `fake-postgrest`: the subset of Supabase's REST API (PostgREST) the daemon uses, with
//! fault modes, for tests and benchmarks. The service role key it accepts comes from
//! `FAKE_POSTGREST_KEY` (or `--key`).
//!
//!   fake-postgrest [--host 127.0.0.1] [--port 0] [--key KEY]

use anyhow::{bail, Context as _};
use std::process::ExitCode;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: fake-postgrest [--host IP] [--port PORT] [--key KEY]  (key also from FAKE_POSTGREST_KEY)\n";

struct Options {
    host: String,
    port: u16,
    key: String,
}

fn parse() -> anyhow::Result<Option<Options>> {
    let mut o = Options {
        host: "127.0.0.1".into(),
        port: 0,
        key: std::env::var("FAKE_POSTGREST_KEY").unwrap_or_default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--host" => o.host = value,
            "--port" => {
                o.port = value
                    .parse()
                    .with_context(|| format!("--port={value:?}: expected a port number"))?
            }
            "--key" => o.key = value,
            other => bail!("unknown flag {other}"),
        }
    }
    if o.key.is_empty() {
        bail!("no key: set FAKE_POSTGREST_KEY or pass --key");
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-postgrest: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-postgrest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let listener = TcpListener::bind((o.host.as_str(), o.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", o.host, o.port))?;
    eprintln!("fake-postgrest listening on {}", listener.local_addr()?);
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    exai_tests::fake_postgrest::serve(listener, o.key, shutdown).await;
    Ok(())
}
