//! A chat answer as a tool result, and results cut to EXAI_MAX_RESULT_BYTES.

use super::ToolOutput;
use crate::chat::ChatAnswer;
use crate::supabase::Persisted;
use serde_json::json;
use std::time::Duration;

pub(super) fn chat(mut answer: ChatAnswer, max_bytes: usize) -> ToolOutput {
    // The answer travels twice (text and structuredContent) and the reasoning once: the
    // reasoning gets a quarter of the budget, the answer half of what is left.
    let mut truncated = false;
    let mut notices = Vec::new();
    if let Some(reasoning) = answer.reasoning.as_mut() {
        if let Some(original) = cut(reasoning, max_bytes / 4) {
            truncated = true;
            notices.push(format!(
                "[truncated: the reasoning was {original} bytes; EXAI_MAX_RESULT_BYTES leaves it {} here]",
                max_bytes / 4
            ));
        }
    }
    let reasoning_bytes = answer.reasoning.as_deref().map_or(0, escaped_str_len);
    let answer_budget = max_bytes.saturating_sub(reasoning_bytes + 1024) / 2;
    if let Some(original) = cut(&mut answer.content, answer_budget) {
        truncated = true;
        notices.insert(
            0,
            format!(
                "[truncated: the answer was {original} bytes; this server returns at most {max_bytes} (EXAI_MAX_RESULT_BYTES)]"
            ),
        );
    }
    let mut text = answer.content.clone();
    for notice in &notices {
        text.push_str("\n\n");
        text.push_str(notice);
    }
    if let Some(notice) = &answer.history_notice {
        text.push_str(&format!("\n\n[conversation history unavailable: {notice}]"));
    }
    let persisted = answer
        .persisted
        .as_ref()
        .map(|persisted| say_how_persisted(persisted, &mut text));
    text.push_str(&format!(
        "\n\ncontinuation_id: {} (pass it to chat as continuation_id to continue this conversation)",
        answer.continuation_id
    ));
    let ms = |d: Duration| d.as_millis() as u64;
    let continuation_id = answer.continuation_id.clone();
    let mut structured = json!({
        "answer": answer.content,
        "model": answer.model,
        "provider": answer.provider.as_str(),
        "continuation_id": answer.continuation_id,
        "history_available": answer.history_notice.is_none(),
        "history_turns": answer.history_turns,
        "thinking": answer.thinking.as_str(),
        "usage": {"input_tokens": answer.usage.prompt_tokens, "output_tokens": answer.usage.completion_tokens,
                  "reasoning_tokens": answer.usage.reasoning_tokens, "cached_tokens": answer.usage.cached_tokens},
        "latency_ms": ms(answer.latency),
        "attempts": answer.attempts,
    });
    let fields = structured.as_object_mut().expect("an object");
    if let Some(notice) = answer.history_notice {
        fields.insert("history_notice".into(), notice.into());
    }
    if let Some(ttft) = answer.ttft {
        fields.insert("time_to_first_token_ms".into(), ms(ttft).into());
    }
    if let Some(ttfa) = answer.ttfa {
        fields.insert("time_to_first_answer_token_ms".into(), ms(ttfa).into());
    }
    if let Some(reasoning) = answer.reasoning {
        fields.insert("reasoning".into(), reasoning.into());
    }
    if truncated {
        fields.insert("truncated".into(), true.into());
    }
    if let Some(persisted) = persisted {
        fields.insert("persisted".into(), persisted.into());
    }
    let mut output = ToolOutput::structured(text, structured);
    output
        .meta
        .insert("continuation_id".into(), continuation_id.into());
    output
}

/// What became of the turn in the Supabase spool (`written`, `queued` or `refused`), with a
/// line in the text unless it was written.
fn say_how_persisted(persisted: &Persisted, text: &mut String) -> &'static str {
    match persisted {
        Persisted::Written => "written",
        Persisted::Queued { waited } => {
            text.push_str(&format!(
                "\n\n[this turn is queued for Supabase but not yet on disk: the spool's disk did not answer within {} ms (EXAI_SPOOL_WRITE_TIMEOUT_MS); it is written when the disk recovers]",
                waited.as_millis()
            ));
            "queued"
        }
        Persisted::Refused(why) => {
            text.push_str(&format!("\n\n[this turn will not reach Supabase: {why}]"));
            "refused"
        }
    }
}

/// Bytes `c` takes inside a JSON string.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_str_len(s: &str) -> usize {
    s.chars().map(escaped_len).sum()
}

/// Cuts `text` where its JSON-escaped size passes `max` bytes, at a character boundary;
/// returns its original length when it cut. It is the escaped text (quotes, backslashes
/// and newlines doubled) that travels, and the Python SDK's WebSocket client drops frames
/// over 1 MiB.
fn cut(text: &mut String, max: usize) -> Option<usize> {
    let mut escaped = 0;
    let end = text.char_indices().find_map(|(at, c)| {
        escaped += escaped_len(c);
        (escaped > max).then_some(at)
    })?;
    let original = text.len();
    text.truncate(end);
    Some(original)
}

/// Cuts a result's text above `max` bytes, with a notice.
pub(super) fn truncate(mut output: ToolOutput, max: usize) -> ToolOutput {
    let Some(original) = cut(&mut output.text, max) else {
        return output;
    };
    output.text.push_str(&format!(
        "\n\n[truncated: the result was {original} bytes; this server returns at most {max} (EXAI_MAX_RESULT_BYTES)]"
    ));
    output.meta.insert("truncated".into(), true.into());
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ThinkingChoice;
    use crate::providers::wire::Usage;
    use exai_proto::Provider;

    fn answer(content: &str) -> ChatAnswer {
        ChatAnswer {
            content: content.into(),
            reasoning: None,
            model: "glm-5".into(),
            provider: Provider::Glm,
            continuation_id: "c-1".into(),
            history_turns: 0,
            history_notice: None,
            persisted: None,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
                reasoning_tokens: 2,
                cached_tokens: 1,
            },
            ttft: Some(Duration::from_millis(10)),
            ttfa: Some(Duration::from_millis(20)),
            latency: Duration::from_millis(30),
            attempts: 1,
            thinking: ThinkingChoice::Auto,
        }
    }

    #[test]
    fn a_chat_answer_ends_with_how_to_continue_and_is_structured() {
        let out = chat(answer("hello"), 10_000);
        assert_eq!(
            out.text,
            "hello\n\ncontinuation_id: c-1 (pass it to chat as continuation_id to continue this conversation)"
        );
        let s = out.structured.unwrap();
        assert_eq!(s["continuation_id"], "c-1");
        assert_eq!(s["usage"]["reasoning_tokens"], 2);
        assert_eq!(s["time_to_first_answer_token_ms"], 20);
        assert_eq!(out.meta.keys().collect::<Vec<_>>(), ["continuation_id"]);
    }

    #[test]
    fn long_answers_are_cut_with_a_notice() {
        let out = chat(answer(&"é".repeat(10_000)), 8_000);
        let s = out.structured.unwrap();
        assert_eq!(s["truncated"], true);
        let kept = s["answer"].as_str().unwrap();
        assert!(kept.len() <= (8_000 - 1024) / 2 && !kept.is_empty());
        assert!(out.text.contains("[truncated: the answer was 20000 bytes"));
        assert!(out.text.ends_with("to continue this conversation)"));

        // Escaping counts: 600 newlines are 1,200 bytes on the wire.
        let mut text = "\n".repeat(600);
        assert_eq!(cut(&mut text, 1000), Some(600));
        assert_eq!(text.len(), 500);
        let short = ToolOutput::structured("ok".into(), json!({}));
        assert_eq!(truncate(short.clone(), 1000), short);
    }
}
