//! The `chat` tool's work, apart from MCP: choose the model, load the thread, hold a
//! place, call the provider, append the turn — recording each step as a counter and a
//! sampled event.

use crate::providers::catalogue::{CatalogueHandle, Chosen, ModelError};
use crate::providers::wire::Usage;
use crate::providers::{
    Busy, CallError, CallFailure, CallProgress, ChatRequest, InflightLimits, Message,
    ProviderClient, Role, Thinking, ThinkingType,
};
use crate::storage::journal::{JournalStats, Kept};
use crate::storage::{ConversationStore, StorageError, StoreHealth, Thread, Turn};
use crate::supabase::Persistence;
use crate::views::{DependencyViews, StorageWatch};
use crate::EventEmitter;
use crate::TokenCounts;
use exai_proto::event::{CallStatus, EventKind, StorageOp, StorageResult};
use exai_proto::{CorrelationId, Provider, ProviderCall, SampleClass, StorageView, SupabaseView};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a client asked about thinking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ThinkingChoice {
    /// The model's own default: nothing is sent.
    #[default]
    Auto,
    Enabled,
    Disabled,
}

impl ThinkingChoice {
    pub const fn as_str(self) -> &'static str {
        match self {
            ThinkingChoice::Auto => "auto",
            ThinkingChoice::Enabled => "enabled",
            ThinkingChoice::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(ThinkingChoice::Auto),
            "enabled" => Some(ThinkingChoice::Enabled),
            "disabled" => Some(ThinkingChoice::Disabled),
            _ => None,
        }
    }

    /// The request's `thinking` field for a model that thinks as `model` says, or why
    /// the choice cannot be honoured.
    fn field(self, model: &Chosen) -> Result<Option<ThinkingType>, String> {
        match (self, model.thinking) {
            (ThinkingChoice::Auto, _) => Ok(None),
            (ThinkingChoice::Enabled, Thinking::Never) => Err(format!(
                "{} answers without thinking; ask with thinking \"auto\" or \"disabled\", or choose a thinking model (listmodels)",
                model.name
            )),
            (ThinkingChoice::Enabled, _) => Ok(Some(ThinkingType::Enabled)),
            (ThinkingChoice::Disabled, Thinking::Never) => Ok(None),
            (ThinkingChoice::Disabled, Thinking::Always) => Err(format!(
                "{} always thinks; its thinking cannot be disabled",
                model.name
            )),
            (ThinkingChoice::Disabled, _) => Ok(Some(ThinkingType::Disabled)),
        }
    }
}

/// What a client asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatArgs {
    pub prompt: String,
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub system_prompt: Option<String>,
    pub continuation_id: Option<String>,
    pub stream: bool,
    pub thinking: ThinkingChoice,
    /// Return the model's reasoning with the answer (it is never stored in the thread).
    pub include_reasoning: bool,
    /// Bound on output tokens, reasoning included.
    pub max_tokens: Option<u32>,
}

impl ChatArgs {
    /// What the call holds while it waits for a model place: its texts.
    pub fn carried_bytes(&self) -> usize {
        self.prompt.len() + self.system_prompt.as_ref().map_or(0, String::len)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    pub content: String,
    /// Present when asked for and the model reasoned.
    pub reasoning: Option<String>,
    /// The id the provider was sent.
    pub model: String,
    pub provider: Provider,
    /// Pass it back to continue this conversation.
    pub continuation_id: String,
    /// Earlier turns sent to the model.
    pub history_turns: usize,
    /// Set when history could not be read or saved: the answer stands, without it.
    pub history_notice: Option<String>,
    pub usage: Usage,
    /// What became of the turn in the Supabase spool, when Supabase is on.
    pub persisted: Option<crate::supabase::Persisted>,
    /// To the first token of any kind (reasoning included).
    pub ttft: Option<Duration>,
    /// To the first token of the answer.
    pub ttfa: Option<Duration>,
    pub latency: Duration,
    pub attempts: u32,
    pub thinking: ThinkingChoice,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChatError {
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Busy(#[from] Busy),
    #[error("model {model:?} was not found at {provider} ({message}); call listmodels for the models this server offers")]
    ModelNotFound {
        model: String,
        provider: Provider,
        message: String,
    },
    #[error("{0}")]
    Call(#[from] CallFailure),
    #[error("cancelled by the client")]
    Cancelled,
}

/// Which models a chat may use.
pub struct ModelChoice {
    /// The models clients can name, kept current by the refresh.
    pub catalogue: Arc<CatalogueHandle>,
    /// DEFAULT_MODEL: a name, an alias, `auto` or `provider:id`.
    pub default_model: String,
}

pub struct ChatService {
    providers: Vec<ProviderClient>,
    limits: Arc<InflightLimits>,
    store: Arc<dyn ConversationStore>,
    emitter: EventEmitter,
    catalogue: Arc<CatalogueHandle>,
    default_model: String,
    max_turns: usize,
    /// Longest a storage read or write may take before the chat goes on without it.
    storage_timeout: Duration,
    /// Supabase, when configured: each answered turn is spooled for upload.
    persistence: Option<Arc<Persistence>>,
    /// The last storage operation's outcome, for the heartbeat.
    storage_watch: StorageWatch,
}

/// Counts a model call as in flight for as long as it lives.
struct InFlight<'a>(&'a EventEmitter);

impl<'a> InFlight<'a> {
    fn new(emitter: &'a EventEmitter) -> Self {
        emitter.totals().in_flight.fetch_add(1, Relaxed);
        Self(emitter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.totals().in_flight.fetch_sub(1, Relaxed);
    }
}

impl ChatService {
    pub fn new(
        providers: Vec<ProviderClient>,
        limits: Arc<InflightLimits>,
        store: Arc<dyn ConversationStore>,
        emitter: EventEmitter,
        models: ModelChoice,
        max_turns: usize,
        storage_timeout: Duration,
    ) -> Self {
        Self {
            providers,
            limits,
            store,
            emitter,
            catalogue: models.catalogue,
            default_model: models.default_model,
            max_turns,
            storage_timeout,
            persistence: None,
            storage_watch: StorageWatch::default(),
        }
    }

    /// Spools every answered turn for Supabase.
    pub fn with_persistence(mut self, persistence: Arc<Persistence>) -> Self {
        self.persistence = Some(persistence);
        self
    }

    pub fn persistence(&self) -> Option<&Persistence> {
        self.persistence.as_deref()
    }

    pub fn storage_health(&self) -> StoreHealth {
        self.store.health()
    }

    pub fn provider(&self, provider: Provider) -> Option<&ProviderClient> {
        self.providers.iter().find(|p| p.provider() == provider)
    }

    /// Why `provider` cannot be used, or `None` when it can.
    pub fn unavailable(&self, provider: Provider) -> Option<String> {
        match self.provider(provider) {
            Some(client) => client.unavailable().map(str::to_string),
            None => Some("not configured".into()),
        }
    }

    /// DEFAULT_MODEL as configured.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    pub fn catalogue(&self) -> &CatalogueHandle {
        &self.catalogue
    }

    pub fn providers(&self) -> &[ProviderClient] {
        &self.providers
    }

    pub fn storage_usage(&self) -> Option<crate::storage::StoreUsage> {
        self.store.usage()
    }

    /// What the storage journal holds, when the store has one (Redis).
    pub fn storage_journal(&self) -> Option<JournalStats> {
        self.store.journal().map(|j| j.stats())
    }

    pub fn storage_backend(&self) -> exai_proto::StorageBackend {
        self.store.backend()
    }

    pub fn limits(&self) -> &InflightLimits {
        &self.limits
    }

    pub async fn chat(
        &self,
        args: ChatArgs,
        correlation: &CorrelationId,
        cancel: &CancellationToken,
        progress: Option<&CallProgress>,
    ) -> Result<ChatAnswer, ChatError> {
        let model =
            self.catalogue
                .snapshot()
                .resolve(args.model.as_deref(), &self.default_model, |p| {
                    self.unavailable(p)
                })?;
        let thinking = args
            .thinking
            .field(&model)
            .map_err(ChatError::Unsupported)?;
        let Some(client) = self.provider(model.provider) else {
            return Err(ModelError::ProviderUnavailable {
                model: model.name,
                provider: model.provider,
                why: "not configured".into(),
            }
            .into());
        };
        // The place first, then the history: a chat waiting for a place holds no copy of
        // its thread, so a queue of waiting chats costs no more than their prompts.
        let permit = tokio::select! {
            _ = cancel.cancelled() => return Err(ChatError::Cancelled),
            permit = self.limits.acquire_carrying(model.provider, args.carried_bytes()) => permit?,
        };
        let in_flight = InFlight::new(&self.emitter);
        let History {
            continuation_id,
            thread,
            notice: mut history_notice,
            stalled,
        } = self
            .history(args.continuation_id.as_deref(), correlation)
            .await;
        let messages = messages(args.system_prompt.as_deref(), &thread, &args.prompt);
        let history_turns = thread.turns.len();
        // The messages hold what the call needs: the thread is not kept through it.
        drop(thread);
        let request = ChatRequest {
            model: &model.name,
            messages: &messages,
            temperature: args.temperature,
            stream: args.stream,
            request_id: correlation.as_str(),
            thinking,
            max_tokens: args.max_tokens,
            keep_reasoning: args.include_reasoning,
            progress,
        };
        let outcome = client.chat(request, cancel).await;
        // The model call is over: its places go back before the turn is stored.
        drop((in_flight, permit));
        self.record_call(&model, &outcome, correlation);
        let reply = match outcome {
            Ok(reply) => reply,
            Err(failure) if failure.error == CallError::Cancelled => {
                tracing::info!(model = %model.name, "model call cancelled by the client");
                return Err(ChatError::Cancelled);
            }
            Err(failure) => {
                // Logged inside the request's span: the line carries its correlation id.
                tracing::warn!(model = %model.name, error = %failure, "model call failed");
                if let CallError::ModelNotFound { status, message } = failure.error {
                    return Err(ChatError::ModelNotFound {
                        model: model.name,
                        provider: model.provider,
                        message: format!("HTTP {status}: {message}"),
                    });
                }
                return Err(failure.into());
            }
        };

        // Only the answer joins the thread: neither provider needs earlier reasoning sent
        // back for a conversation without tool calls (both would take it only to resume
        // tool use), and it would cost input tokens on every later turn.
        let turn = Turn {
            user: args.prompt,
            assistant: reply.content.clone(),
            model: model.name.clone(),
            at_unix_ms: crate::clock::now_unix_us() / 1000,
        };
        let persisted = match &self.persistence {
            Some(persistence) => Some(
                persistence
                    .record_turn(
                        &continuation_id,
                        &turn,
                        reply.usage.prompt_tokens,
                        reply.usage.completion_tokens,
                        correlation.as_str(),
                    )
                    .await,
            ),
            None => None,
        };
        if let Some(saved) = self
            .save_turn(&continuation_id, &turn, stalled, correlation)
            .await
        {
            history_notice = Some(match history_notice {
                Some(earlier) => format!("{earlier}; {saved}"),
                None => saved,
            });
        }
        Ok(ChatAnswer {
            content: reply.content,
            reasoning: reply.reasoning,
            model: model.name,
            provider: model.provider,
            continuation_id,
            history_turns,
            history_notice,
            usage: reply.usage,
            persisted,
            ttft: reply.ttft,
            ttfa: reply.ttfa,
            latency: reply.latency,
            attempts: reply.attempts,
            thinking: args.thinking,
        })
    }

    /// The thread `continuation_id` names (a new one without it), or an empty one with a
    /// notice when the store cannot give it.
    async fn history(&self, continuation_id: Option<&str>, correlation: &CorrelationId) -> History {
        let Some(id) = continuation_id.map(str::trim).filter(|id| !id.is_empty()) else {
            return History {
                continuation_id: crate::mcp::correlation::fast_uuid().to_string(),
                thread: Thread::default(),
                notice: None,
                stalled: false,
            };
        };
        match self.load(id, correlation).await {
            Ok(thread) => History {
                continuation_id: id.to_string(),
                thread: thread.unwrap_or_default(),
                // Turns kept while Redis was away, not yet replayed: newer than what it
                // gave, and not sent.
                notice: self.store.journal().filter(|j| j.holds(id)).map(|_| {
                    "this conversation's newest turns wait in the storage journal for Redis and were not sent".to_string()
                }),
                stalled: false,
            },
            Err(e) => History {
                continuation_id: id.to_string(),
                thread: Thread::default(),
                notice: Some(format!(
                    "{}; answered without earlier turns",
                    crate::cause::chain(&e)
                )),
                stalled: matches!(e, StorageError::Timeout { .. }),
            },
        }
    }

    fn record_call(
        &self,
        model: &Chosen,
        outcome: &Result<crate::providers::ChatReply, CallFailure>,
        correlation: &CorrelationId,
    ) {
        let totals = self.emitter.totals();
        let slot = totals.model_slot(model.provider, &model.name);
        let (status, tokens) = match outcome {
            Ok(r) => (
                CallStatus::Success,
                TokenCounts {
                    input: r.usage.prompt_tokens,
                    output: r.usage.completion_tokens,
                    reasoning: r.usage.reasoning_tokens,
                    cached: r.usage.cached_tokens,
                },
            ),
            Err(f) => (f.error.status(), TokenCounts::default()),
        };
        totals.provider_call(slot, status, tokens);
        let us = |d: Duration| d.as_micros() as u64;
        let narrow = |n: u64| n.min(u64::from(u32::MAX)) as u32;
        self.emitter
            .record(SampleClass::ProviderCalls, correlation, || {
                EventKind::ProviderCall(match outcome {
                    Ok(r) => ProviderCall {
                        provider: model.provider,
                        model: model.name.as_str().into(),
                        status,
                        latency_us: us(r.latency),
                        ttft_us: r.ttft.map(us),
                        ttfa_us: r.ttfa.map(us),
                        input_tokens: narrow(tokens.input),
                        output_tokens: narrow(tokens.output),
                        reasoning_tokens: narrow(tokens.reasoning),
                        cached_tokens: narrow(tokens.cached),
                        attempts: r.attempts.min(255) as u8,
                        bytes: narrow(r.bytes),
                    },
                    Err(f) => ProviderCall {
                        provider: model.provider,
                        model: model.name.as_str().into(),
                        status,
                        attempts: f.attempts.min(255) as u8,
                        ..ProviderCall::default()
                    },
                })
            });
    }

    async fn load(
        &self,
        id: &str,
        correlation: &CorrelationId,
    ) -> Result<Option<Thread>, StorageError> {
        let result = self
            .timed(StorageOp::Get, correlation, self.store.load(id))
            .await;
        result
    }

    async fn append(
        &self,
        id: &str,
        turn: &Turn,
        correlation: &CorrelationId,
    ) -> Result<(), StorageError> {
        let append = self.store.append(id, turn, self.max_turns);
        self.timed(StorageOp::Set, correlation, append).await
    }

    /// Adds the answered turn to its conversation; `Some` says why it is not there (yet).
    ///
    /// With a journal (Redis), the turn goes there instead when the read just stalled
    /// (the write would most likely wait as long) or the journal still holds earlier
    /// turns of this conversation (this one must land after them), and when the append
    /// fails in a way that passes. Without one, a stalled store is not paid for twice.
    async fn save_turn(
        &self,
        id: &str,
        turn: &Turn,
        stalled: bool,
        correlation: &CorrelationId,
    ) -> Option<String> {
        let journal = self.store.journal();
        let mut failure = None;
        if !stalled && !journal.is_some_and(|j| j.holds(id)) {
            match self.append(id, turn, correlation).await {
                Ok(()) => return None,
                Err(e) if e.is_transient() && journal.is_some() => failure = Some(e),
                Err(e) => {
                    return Some(format!(
                        "{}; this turn was not saved",
                        crate::cause::chain(&e)
                    ))
                }
            }
        }
        let Some(journal) = journal else {
            return Some("this turn was not saved".to_string());
        };
        let said = match journal.keep(id, turn).await {
            Kept::Written => {
                "this turn was kept on disk and joins the conversation when Redis takes it"
                    .to_string()
            }
            Kept::Late => "this turn is being written to the storage journal (its disk is slow) and joins the conversation when Redis takes it".to_string(),
            Kept::Refused(e) => format!("this turn was not saved: {}", crate::cause::chain(&e)),
        };
        Some(match failure {
            Some(e) => format!("{}; {said}", crate::cause::chain(&e)),
            None => said,
        })
    }

    /// Runs a storage operation under the storage timeout, counting and sampling it.
    async fn timed<T: StorageOutcome>(
        &self,
        op: StorageOp,
        correlation: &CorrelationId,
        work: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let backend = self.store.backend();
        let started = Instant::now();
        let result = match tokio::time::timeout(self.storage_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Timeout {
                backend,
                millis: self.storage_timeout.as_millis() as u64,
            }),
        };
        let outcome = match &result {
            Ok(value) => value.result(),
            Err(StorageError::Timeout { .. }) => StorageResult::Timeout,
            Err(_) => StorageResult::Error,
        };
        let latency_us = started.elapsed().as_micros() as u64;
        match &result {
            Ok(_) => self.storage_watch.succeeded(latency_us),
            Err(e) => self.storage_watch.failed(e.kind()),
        }
        self.emitter.totals().storage(op, backend, outcome);
        let class = if op == StorageOp::Get {
            SampleClass::StorageReads
        } else {
            SampleClass::StorageWrites
        };
        self.emitter
            .record(class, correlation, || EventKind::Storage {
                op,
                backend,
                result: outcome,
                latency_us,
            });
        result
    }
}

/// A conversation as loaded for one chat.
struct History {
    continuation_id: String,
    thread: Thread,
    /// Why the earlier turns are missing, when the store could not give them.
    notice: Option<String>,
    /// The store did not answer in time: the chat does not wait for it twice.
    stalled: bool,
}

/// What the model is sent: the system prompt, the thread's turns, then the prompt.
fn messages(system_prompt: Option<&str>, thread: &Thread, prompt: &str) -> Vec<Message> {
    let mut messages = Vec::with_capacity(thread.turns.len() * 2 + 2);
    if let Some(system) = system_prompt.filter(|s| !s.trim().is_empty()) {
        messages.push(Message {
            role: Role::System,
            content: system.to_string(),
        });
    }
    for turn in &thread.turns {
        messages.push(Message {
            role: Role::User,
            content: turn.user.clone(),
        });
        messages.push(Message {
            role: Role::Assistant,
            content: turn.assistant.clone(),
        });
    }
    messages.push(Message {
        role: Role::User,
        content: prompt.to_string(),
    });
    messages
}

impl DependencyViews for ChatService {
    fn storage(&self) -> StorageView {
        self.storage_watch
            .view(self.store.backend(), self.store.health().reachable)
    }

    fn supabase(&self) -> SupabaseView {
        self.persistence
            .as_ref()
            .map_or_else(SupabaseView::default, |p| p.view())
    }
}

/// How a successful storage operation is labelled.
trait StorageOutcome {
    fn result(&self) -> StorageResult;
}

impl StorageOutcome for Option<Thread> {
    fn result(&self) -> StorageResult {
        if self.is_some() {
            StorageResult::Hit
        } else {
            StorageResult::Miss
        }
    }
}

impl StorageOutcome for () {
    fn result(&self) -> StorageResult {
        StorageResult::Ok
    }
}
