//! Exact running totals. Sampling gives distributions; totals must be exact, so the
//! request path bumps a relaxed atomic counter here and the pipe writer ships a snapshot
//! in every heartbeat. Each family is a dense array indexed by its label values.

use exai_proto::event::*;
use exai_proto::heartbeat::{
    ConnectionTotal, ProviderTotal, RequestTotal, StorageTotal, SupabaseTotal,
    Totals as WireTotals, WsTotal,
};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;

/// A model's row in the provider counters, resolved once when the model is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSlot(usize);

#[derive(Debug)]
pub struct Totals {
    /// `[direction][0 = messages, 1 = bytes]`.
    ws: [[AtomicU64; 2]; Direction::COUNT],
    requests: Box<[AtomicU64]>,
    /// One `other` per provider, then the models of the catalogue as they were announced.
    /// Append-only and bounded: the rows of `provider_calls` are allocated up front, and a
    /// slot never changes its model.
    models: RwLock<Vec<(Provider, ModelName)>>,
    /// `[slot][status][PER_CALL]`: calls, input, output, reasoning and cached tokens.
    provider_calls: Box<[AtomicU64]>,
    storage: Box<[AtomicU64]>,
    supabase: Box<[AtomicU64]>,
    connections: Box<[AtomicU64]>,
    /// Client connections open now.
    pub open_connections: AtomicI64,
    /// Model calls under way now.
    pub in_flight: AtomicI64,
    /// Records waiting in the Supabase spool.
    pub spool_depth: AtomicU64,
}

/// Counters per model and status: calls, then input, output, reasoning and cached tokens.
const PER_CALL: usize = 5;

/// Models with a row of their own: the catalogue's cap.
pub const MAX_MODEL_SLOTS: usize = crate::providers::catalogue::MAX_MODELS;

/// The tokens of one model call, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    /// Of the output, spent reasoning.
    pub reasoning: u64,
    /// Of the input, served from the provider's cache.
    pub cached: u64,
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Totals {
    /// Counters for the given models; any other model name counts under `other`.
    pub fn new(models: &[(Provider, &str)]) -> Self {
        let table: Vec<(Provider, ModelName)> = Provider::ALL
            .iter()
            .map(|p| (*p, ModelName::new("other")))
            .collect();
        let totals = Self {
            ws: Default::default(),
            requests: counters(
                Transport::COUNT * McpMethod::COUNT * Tool::COUNT * RequestStatus::COUNT,
            ),
            provider_calls: counters(
                (Provider::COUNT + MAX_MODEL_SLOTS) * CallStatus::COUNT * PER_CALL,
            ),
            models: RwLock::new(table),
            storage: counters(StorageOp::COUNT * StorageBackend::COUNT * StorageResult::COUNT),
            supabase: counters(SupabaseOp::COUNT * SupabaseTable::COUNT * SupabaseResult::COUNT),
            connections: counters(Transport::COUNT * ConnectionPhase::COUNT * RefusalReason::COUNT),
            open_connections: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            spool_depth: AtomicU64::new(0),
        };
        totals.register_models(models.iter().copied());
        totals
    }

    /// Gives each model not seen before a row of its own, while rows are left; later
    /// ones count under `other`. Called when the catalogue changes, never per request.
    pub fn register_models<'a>(&self, models: impl IntoIterator<Item = (Provider, &'a str)>) {
        let mut table = self.models.write().unwrap_or_else(|e| e.into_inner());
        for (provider, model) in models {
            let name = ModelName::new(model);
            if table.len() >= Provider::COUNT + MAX_MODEL_SLOTS {
                return;
            }
            if !table.iter().any(|(p, m)| *p == provider && *m == name) {
                table.push((provider, name));
            }
        }
    }

    /// The slot for `model`, or the provider's `other` slot. Found once per model call.
    pub fn model_slot(&self, provider: Provider, model: &str) -> ModelSlot {
        let name = ModelName::new(model);
        let table = self.models.read().unwrap_or_else(|e| e.into_inner());
        let found = table[Provider::COUNT..]
            .iter()
            .position(|(p, m)| *p == provider && *m == name)
            .map(|i| i + Provider::COUNT);
        ModelSlot(found.unwrap_or(provider.index()))
    }

    #[inline]
    pub fn ws_message(&self, direction: Direction, bytes: usize) {
        let row = &self.ws[direction.index()];
        row[0].fetch_add(1, Relaxed);
        row[1].fetch_add(bytes as u64, Relaxed);
    }

    #[inline]
    pub fn request(
        &self,
        transport: Transport,
        method: McpMethod,
        tool: Tool,
        status: RequestStatus,
    ) {
        let i = ((transport.index() * McpMethod::COUNT + method.index()) * Tool::COUNT
            + tool.index())
            * RequestStatus::COUNT
            + status.index();
        self.requests[i].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn provider_call(&self, slot: ModelSlot, status: CallStatus, tokens: TokenCounts) {
        let i = (slot.0 * CallStatus::COUNT + status.index()) * PER_CALL;
        let c = &self.provider_calls[i..i + PER_CALL];
        c[0].fetch_add(1, Relaxed);
        for (counter, n) in
            c[1..]
                .iter()
                .zip([tokens.input, tokens.output, tokens.reasoning, tokens.cached])
        {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
    }

    #[inline]
    pub fn storage(&self, op: StorageOp, backend: StorageBackend, result: StorageResult) {
        let i = (op.index() * StorageBackend::COUNT + backend.index()) * StorageResult::COUNT
            + result.index();
        self.storage[i].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn supabase(&self, op: SupabaseOp, table: SupabaseTable, result: SupabaseResult) {
        let i = (op.index() * SupabaseTable::COUNT + table.index()) * SupabaseResult::COUNT
            + result.index();
        self.supabase[i].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn connection(&self, transport: Transport, phase: ConnectionPhase, reason: RefusalReason) {
        let i = (transport.index() * ConnectionPhase::COUNT + phase.index()) * RefusalReason::COUNT
            + reason.index();
        self.connections[i].fetch_add(1, Relaxed);
    }

    /// The non-zero totals, for a heartbeat.
    pub fn snapshot(&self) -> WireTotals {
        let mut out = WireTotals::default();
        for direction in Direction::ALL {
            let row = &self.ws[direction.index()];
            let (messages, bytes) = (row[0].load(Relaxed), row[1].load(Relaxed));
            if messages > 0 {
                out.ws_messages.push(WsTotal {
                    direction: *direction,
                    messages,
                    bytes,
                });
            }
        }
        let mut i = 0;
        for transport in Transport::ALL {
            for method in McpMethod::ALL {
                for tool in Tool::ALL {
                    for status in RequestStatus::ALL {
                        let count = self.requests[i].load(Relaxed);
                        i += 1;
                        if count > 0 {
                            out.requests.push(RequestTotal {
                                transport: *transport,
                                method: *method,
                                tool: *tool,
                                status: *status,
                                count,
                            });
                        }
                    }
                }
            }
        }
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        for (slot, (provider, model)) in models.iter().enumerate() {
            for status in CallStatus::ALL {
                let i = (slot * CallStatus::COUNT + status.index()) * PER_CALL;
                let c = &self.provider_calls[i..i + PER_CALL];
                let calls = c[0].load(Relaxed);
                if calls > 0 {
                    out.provider_calls.push(ProviderTotal {
                        provider: *provider,
                        model: *model,
                        status: *status,
                        calls,
                        input_tokens: c[1].load(Relaxed),
                        output_tokens: c[2].load(Relaxed),
                        reasoning_tokens: c[3].load(Relaxed),
                        cached_tokens: c[4].load(Relaxed),
                    });
                }
            }
        }
        let mut i = 0;
        for op in StorageOp::ALL {
            for backend in StorageBackend::ALL {
                for result in StorageResult::ALL {
                    let count = self.storage[i].load(Relaxed);
                    i += 1;
                    if count > 0 {
                        out.storage.push(StorageTotal {
                            op: *op,
                            backend: *backend,
                            result: *result,
                            count,
                        });
                    }
                }
            }
        }
        let mut i = 0;
        for op in SupabaseOp::ALL {
            for table in SupabaseTable::ALL {
                for result in SupabaseResult::ALL {
                    let count = self.supabase[i].load(Relaxed);
                    i += 1;
                    if count > 0 {
                        out.supabase.push(SupabaseTotal {
                            op: *op,
                            table: *table,
                            result: *result,
                            count,
                        });
                    }
                }
            }
        }
        let mut i = 0;
        for transport in Transport::ALL {
            for phase in ConnectionPhase::ALL {
                for reason in RefusalReason::ALL {
                    let count = self.connections[i].load(Relaxed);
                    i += 1;
                    if count > 0 {
                        out.connections.push(ConnectionTotal {
                            transport: *transport,
                            phase: *phase,
                            reason: *reason,
                            count,
                        });
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_exact_counts_under_their_labels() {
        let t = Totals::new(&[
            (Provider::Glm, "glm-4.5-flash"),
            (Provider::Kimi, "kimi-k2-0905-preview"),
        ]);
        for _ in 0..7 {
            t.request(
                Transport::WebSocket,
                McpMethod::ToolsCall,
                Tool::Chat,
                RequestStatus::Success,
            );
        }
        t.request(
            Transport::Http,
            McpMethod::Ping,
            Tool::None,
            RequestStatus::Success,
        );
        let glm = t.model_slot(Provider::Glm, "glm-4.5-flash");
        let tokens = |input, output| TokenCounts {
            input,
            output,
            reasoning: output / 2,
            cached: input / 2,
        };
        t.provider_call(glm, CallStatus::Success, tokens(10, 20));
        t.provider_call(glm, CallStatus::Success, tokens(2, 4));
        t.provider_call(
            t.model_slot(Provider::Kimi, "made-up"),
            CallStatus::Timeout,
            TokenCounts::default(),
        );
        t.ws_message(Direction::Inbound, 100);

        let s = t.snapshot();
        assert_eq!(
            s.requests,
            vec![
                RequestTotal {
                    transport: Transport::WebSocket,
                    method: McpMethod::ToolsCall,
                    tool: Tool::Chat,
                    status: RequestStatus::Success,
                    count: 7
                },
                RequestTotal {
                    transport: Transport::Http,
                    method: McpMethod::Ping,
                    tool: Tool::None,
                    status: RequestStatus::Success,
                    count: 1
                },
            ]
        );
        assert_eq!(s.provider_calls.len(), 2);
        // `other` rows come first.
        assert_eq!(s.provider_calls[0].model.as_str(), "other");
        assert_eq!(s.provider_calls[0].provider, Provider::Kimi);
        let glm_calls = s.provider_calls[1];
        assert_eq!(
            (
                glm_calls.calls,
                glm_calls.input_tokens,
                glm_calls.output_tokens,
                glm_calls.reasoning_tokens,
                glm_calls.cached_tokens
            ),
            (2, 12, 24, 12, 6)
        );
        assert_eq!(
            s.ws_messages,
            vec![WsTotal {
                direction: Direction::Inbound,
                messages: 1,
                bytes: 100
            }]
        );
        assert!(s.storage.is_empty() && s.supabase.is_empty() && s.connections.is_empty());
    }

    #[test]
    fn models_announced_later_get_rows_until_the_cap() {
        let t = Totals::new(&[(Provider::Glm, "glm-4.5-flash")]);
        assert_eq!(
            t.model_slot(Provider::Glm, "glm-9"),
            t.model_slot(Provider::Glm, "x")
        );
        t.register_models([(Provider::Glm, "glm-9"), (Provider::Glm, "glm-4.5-flash")]);
        let glm9 = t.model_slot(Provider::Glm, "glm-9");
        assert_ne!(glm9, t.model_slot(Provider::Glm, "x"));
        assert_ne!(
            glm9,
            t.model_slot(Provider::Kimi, "glm-9"),
            "a row is per provider"
        );
        let many: Vec<String> = (0..MAX_MODEL_SLOTS + 5).map(|i| format!("m{i}")).collect();
        t.register_models(many.iter().map(|m| (Provider::Kimi, m.as_str())));
        assert_eq!(
            t.model_slot(Provider::Glm, "glm-9"),
            glm9,
            "a slot keeps its model"
        );
        let last = many.last().unwrap();
        assert_eq!(
            t.model_slot(Provider::Kimi, last),
            t.model_slot(Provider::Kimi, "other")
        );
        t.provider_call(glm9, CallStatus::Success, TokenCounts::default());
        let s = t.snapshot();
        assert_eq!(s.provider_calls.len(), 1);
        assert_eq!(s.provider_calls[0].model.as_str(), "glm-9");
    }
}
