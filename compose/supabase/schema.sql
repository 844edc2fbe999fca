-- Tables exai-daemon writes when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set.
-- Apply once per project (SQL editor, or psql "$DATABASE_URL" -f schema.sql); it is
-- safe to run again.
--
-- The daemon upserts through PostgREST:
--   POST /rest/v1/conversations?on_conflict=id   (then)   POST /rest/v1/messages?on_conflict=id
--   Prefer: resolution=merge-duplicates,return=minimal
-- so every row has a stable primary key chosen by the daemon (its idempotency key): a
-- record sent twice (a retry whose answer was lost, a replay after a crash) updates the
-- same row instead of adding one.

create table if not exists public.conversations (
    -- The chat's continuation_id.
    id          text primary key,
    -- Model of the latest turn.
    model       text,
    -- Left to the default: an upsert of a later turn does not send it, so it stays.
    created_at  timestamptz not null default now(),
    -- Time of the latest turn.
    updated_at  timestamptz not null default now()
);

create table if not exists public.messages (
    -- A UUID drawn by the daemon when the turn was spooled.
    id               text primary key,
    conversation_id  text not null references public.conversations (id) on delete cascade,
    role             text not null check (role in ('user', 'assistant')),
    content          text not null,
    model            text,
    -- Prompt tokens for a user message, completion tokens for an answer.
    tokens           bigint,
    -- The request's correlation id, as in the daemon's logs and events.
    correlation_id   text,
    created_at       timestamptz not null default now()
);

create index if not exists messages_conversation_created
    on public.messages (conversation_id, created_at);

-- Only the service role (which bypasses row level security) reads and writes these.
alter table public.conversations enable row level security;
alter table public.messages enable row level security;
