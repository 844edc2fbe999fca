//! `fake-llm`: an OpenAI-compatible chat-completions server for tests, the load tool and
//! the quick start, in place of the Kimi and GLM APIs. See `--help`.

use anyhow::Context as _;
use exai_tests::fake_llm::{self, Parsed, USAGE};
use std::process::ExitCode;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let options = match fake_llm::parse_options(std::env::args().skip(1), |k| std::env::var(k).ok())
    {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-llm: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-llm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: fake_llm::Options) -> anyhow::Result<()> {
    // Handlers go in before the listening line, so a SIGTERM sent as soon as a test
    // reads it is a clean stop rather than the default kill.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let listener = TcpListener::bind((options.host.as_str(), options.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", options.host, options.port))?;
    eprintln!("fake-llm listening on {}", listener.local_addr()?);
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    fake_llm::serve(listener, options.config, shutdown).await;
    Ok(())
}
