//! Keeps the catalogue true: at start and every `EXAI_MODELS_REFRESH_S`, asks each
//! provider that has a key for `GET {base}/models` and adds what it lists. A provider
//! without the endpoint, or failing, keeps what the catalogue had: the failure is logged
//! once (again only after a success) and shown by `status`.

use super::catalogue::{Catalogue, CatalogueHandle};
use super::client::ProviderClient;
use crate::EventEmitter;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Tells the counters and the agent about the catalogue's models.
pub fn announce(catalogue: &Catalogue, emitter: &EventEmitter) {
    emitter.totals().register_models(
        catalogue
            .entries()
            .iter()
            .map(|e| (e.provider, e.name.as_str())),
    );
    emitter.announce_models(catalogue.announced());
}

/// Lists each available provider's models now, then every `every` (never when `None`),
/// until `cancel`.
pub async fn run(
    providers: Vec<ProviderClient>,
    catalogue: Arc<CatalogueHandle>,
    emitter: EventEmitter,
    every: Option<Duration>,
    cancel: CancellationToken,
) {
    let mut failing = vec![false; providers.len()];
    loop {
        for (client, failing) in providers.iter().zip(failing.iter_mut()) {
            if client.unavailable().is_some() {
                continue;
            }
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = client.list_models() => outcome,
            };
            let provider = client.provider();
            match &outcome {
                Ok(ids) if *failing => {
                    info!(%provider, models = ids.len(), "the provider lists its models again")
                }
                Ok(_) => {}
                Err(why) if !*failing => warn!(
                    %provider, error = %why,
                    "cannot list the provider's models; keeping the catalogue as it is (logged once until it answers)"
                ),
                Err(_) => {}
            }
            *failing = outcome.is_err();
            let now = crate::clock::now_unix_us() / 1000;
            let next = catalogue.update(|c| c.with_listing(provider, outcome, now));
            announce(&next, &emitter);
        }
        let Some(every) = every else { return };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
