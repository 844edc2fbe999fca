//! `EXAI_MODELS_FILE`: models added to the built-in table, or replacing an entry of it.
//! TOML (`.toml`) or JSON (`.json`), one list named `models`:
//!
//! ```toml
//! [[models]]
//! name = "glm-5.1"              # the provider's id (required)
//! provider = "glm"              # kimi or glm (required)
//! aliases = ["glm-next"]        # other names clients may use
//! context_window = 200000       # tokens
//! thinking = "optional"         # none, optional or always
//! description = "GLM-5.1"
//! ```

use super::catalogue::{check_id, Entry, Source, MAX_MODELS};
use super::models::{Thinking, SERVED};
use serde::Deserialize;
use std::path::Path;

/// A models file larger than this is refused: it is a table, not a data set.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCatalogue {
    models: Vec<FileModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    name: String,
    provider: String,
    #[serde(default)]
    aliases: Vec<String>,
    context_window: Option<u32>,
    thinking: Option<String>,
    #[serde(default)]
    description: String,
}

/// The built-in table with the file at `path` applied.
pub fn load(path: &Path, builtin: Vec<Entry>) -> Result<Vec<Entry>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {size} bytes; a models file is at most {MAX_FILE_BYTES}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let toml = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("toml") => true,
        Some(e) if e.eq_ignore_ascii_case("json") => false,
        _ => {
            return Err(format!(
                "{}: expected a .toml or .json file",
                path.display()
            ))
        }
    };
    let file = parse(&text, toml).map_err(|e| format!("{}: {e}", path.display()))?;
    merge(builtin, file).map_err(|e| format!("{}: {e}", path.display()))
}

/// The entries of a models file's text.
pub fn parse(text: &str, toml: bool) -> Result<Vec<Entry>, String> {
    let file: FileCatalogue = if toml {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    if file.models.len() > MAX_MODELS {
        return Err(format!(
            "{} models; at most {MAX_MODELS}",
            file.models.len()
        ));
    }
    file.models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let at = |why: String| format!("models[{i}] ({:?}): {why}", m.name);
            check_id(&m.name).map_err(at)?;
            let provider = SERVED
                .iter()
                .copied()
                .find(|p| p.as_str() == m.provider)
                .ok_or_else(|| at(format!("provider {:?}: expected kimi or glm", m.provider)))?;
            for alias in &m.aliases {
                check_id(alias).map_err(|e| at(format!("alias {alias:?}: {e}")))?;
            }
            let thinking = match m.thinking.as_deref() {
                None => Thinking::Unknown,
                Some(t) => Thinking::parse(t).ok_or_else(|| {
                    at(format!("thinking {t:?}: expected none, optional or always"))
                })?,
            };
            if m.context_window == Some(0) {
                return Err(at("context_window must be above 0".into()));
            }
            Ok(Entry {
                name: m.name.clone(),
                provider,
                aliases: m.aliases.clone(),
                context_window: m.context_window,
                thinking,
                description: m.description.clone(),
                source: Source::File,
            })
        })
        .collect()
}

/// The built-in table with `file` applied: an entry of the same provider and id replaces
/// the built-in one; a name or alias the file gives may take a built-in alias over, but
/// never a built-in id, and no two entries of the file may share one.
pub fn merge(mut entries: Vec<Entry>, file: Vec<Entry>) -> Result<Vec<Entry>, String> {
    let builtin = entries.len();
    for entry in file {
        match entries
            .iter()
            .position(|e| e.provider == entry.provider && e.name == entry.name)
        {
            Some(at) => entries[at] = entry,
            None => entries.push(entry),
        }
    }
    for i in 0..entries.len() {
        if entries[i].source != Source::File {
            continue;
        }
        let this = entries[i].name.clone();
        let names: Vec<String> = std::iter::once(&entries[i].name)
            .chain(&entries[i].aliases)
            .map(|n| n.to_ascii_lowercase())
            .collect();
        for j in (0..entries.len()).filter(|j| *j != i) {
            let other = &mut entries[j];
            if let Some(clash) = names.iter().find(|n| other.name.eq_ignore_ascii_case(n)) {
                if other.source == Source::File && j < i {
                    continue; // reported once, for the first of the two
                }
                return Err(format!("{clash:?} names both {} and {this}", other.name));
            }
            let taken_by_file = |a: &String| names.iter().any(|n| a.eq_ignore_ascii_case(n));
            if other.source == Source::File {
                if let Some(clash) = other.aliases.iter().find(|a| taken_by_file(a)) {
                    return Err(format!("{clash:?} names both {} and {this}", other.name));
                }
            } else {
                other.aliases.retain(|a| !taken_by_file(a));
            }
        }
    }
    if entries.len() > MAX_MODELS {
        return Err(format!(
            "{} models with the {builtin} built in; at most {MAX_MODELS}",
            entries.len()
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::catalogue::Catalogue;
    use exai_proto::Provider;

    const TOML: &str = r#"
[[models]]
name = "glm-5.1"
provider = "glm"
aliases = ["glm", "glm-next"]
context_window = 200000
thinking = "optional"
description = "GLM-5.1"

[[models]]
name = "kimi-k2.6"
provider = "kimi"
aliases = ["k26"]
thinking = "always"
"#;

    #[test]
    fn toml_and_json_give_the_same_entries() {
        let toml = parse(TOML, true).unwrap();
        let json = parse(
            r#"{"models": [
                {"name": "glm-5.1", "provider": "glm", "aliases": ["glm", "glm-next"],
                 "context_window": 200000, "thinking": "optional", "description": "GLM-5.1"},
                {"name": "kimi-k2.6", "provider": "kimi", "aliases": ["k26"], "thinking": "always"}]}"#,
            false,
        )
        .unwrap();
        assert_eq!(toml, json);
        assert_eq!(toml[0].provider, Provider::Glm);
        assert_eq!(toml[1].context_window, None);
    }

    #[test]
    fn the_file_adds_replaces_and_takes_over_aliases() {
        let merged = merge(Catalogue::builtin(), parse(TOML, true).unwrap()).unwrap();
        let c = Catalogue::new(merged);
        // "glm" was glm-5's alias; the file gave it to glm-5.1.
        assert_eq!(c.find("glm").unwrap().name, "glm-5.1");
        assert!(!c.find("glm-5").unwrap().aliases.iter().any(|a| a == "glm"));
        let k26 = c.find("k26").unwrap();
        assert_eq!(
            (k26.name.as_str(), k26.thinking),
            ("kimi-k2.6", Thinking::Always)
        );
        assert!(
            c.find("kimi-k2-0905-preview").is_none(),
            "the file's aliases replace the built-in ones"
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            (
                r#"[[models]]
name = "x"
provider = "openai""#,
                "models[0] (\"x\"): provider \"openai\": expected kimi or glm",
            ),
            (
                r#"[[models]]
name = "x"
provider = "glm"
thinking = "sometimes""#,
                "thinking \"sometimes\": expected none, optional or always",
            ),
            (
                r#"[[models]]
name = "x y"
provider = "glm""#,
                "' ' is not allowed in a model id",
            ),
            (
                r#"[[models]]
name = "x"
provider = "glm"
colour = "red""#,
                "unknown field `colour`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text, true).unwrap_err();
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
        let clash = parse(
            r#"{"models": [{"name": "a", "provider": "glm", "aliases": ["glm-4.6"]}]}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            merge(Catalogue::builtin(), clash).unwrap_err(),
            "\"glm-4.6\" names both glm-4.6 and a"
        );
        let twice = parse(
            r#"{"models": [{"name": "a", "provider": "glm", "aliases": ["z"]},
                           {"name": "b", "provider": "kimi", "aliases": ["z"]}]}"#,
            false,
        )
        .unwrap();
        assert!(merge(Catalogue::builtin(), twice).is_err());
    }
}
