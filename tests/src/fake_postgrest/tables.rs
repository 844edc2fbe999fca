//! The two tables of `compose/supabase/schema.sql`, held in memory, with the PostgREST
//! behaviour the daemon relies on: insert, upsert on a conflict column, primary and
//! foreign key checks, unknown columns refused, `eq.` selects — and PostgREST's error
//! bodies and statuses for each refusal.

use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

/// A table's columns: name, and whether a row must have it.
struct Schema {
    name: &'static str,
    columns: &'static [(&'static str, bool)],
    /// `(column, referenced table)`.
    foreign_key: Option<(&'static str, &'static str)>,
}

const SCHEMAS: &[Schema] = &[
    Schema {
        name: "conversations",
        columns: &[
            ("id", true),
            ("model", false),
            ("created_at", false),
            ("updated_at", false),
        ],
        foreign_key: None,
    },
    Schema {
        name: "messages",
        columns: &[
            ("id", true),
            ("conversation_id", true),
            ("role", true),
            ("content", true),
            ("model", false),
            ("tokens", false),
            ("correlation_id", false),
            ("created_at", false),
        ],
        foreign_key: Some(("conversation_id", "conversations")),
    },
];

/// How a write treats a row whose key exists (`Prefer: resolution=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// No preference: a duplicate key is an error (409, 23505).
    Error,
    MergeDuplicates,
    IgnoreDuplicates,
}

/// A refusal, as PostgREST answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(
        status: u16,
        code: &str,
        message: impl Into<String>,
        details: Option<String>,
    ) -> Self {
        Self {
            status,
            body: json!({"code": code, "details": details, "hint": null, "message": message.into()}),
        }
    }
}

/// What each table received, for tests to count.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TableStats {
    /// Rows stored now.
    pub rows: u64,
    /// Rows received in accepted writes.
    pub received: u64,
    /// Received rows whose key already existed (replaced or ignored).
    pub duplicates: u64,
}

#[derive(Default)]
pub struct Tables {
    rows: BTreeMap<&'static str, BTreeMap<String, Map<String, Value>>>,
    stats: BTreeMap<&'static str, TableStats>,
}

fn schema(table: &str) -> Result<&'static Schema, ApiError> {
    SCHEMAS.iter().find(|s| s.name == table).ok_or_else(|| {
        ApiError::new(
            404,
            "PGRST205",
            format!("Could not find the table 'public.{table}' in the schema cache"),
            None,
        )
    })
}

fn key_of(row: &Map<String, Value>, column: &str) -> Option<String> {
    match row.get(column)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Tables {
    /// `POST /rest/v1/<table>`: all rows are written, or none. The rows as stored are
    /// returned when `representation` is asked for (`Prefer: return=representation`).
    pub fn write(
        &mut self,
        table: &str,
        body: &[u8],
        on_conflict: Option<&str>,
        resolution: Resolution,
        representation: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let schema = schema(table)?;
        let invalid = |why: String| ApiError::new(400, "PGRST102", why, None);
        let rows: Vec<Map<String, Value>> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(map),
                    _ => Err(invalid("All object keys must match".into())),
                })
                .collect::<Result<_, _>>()?,
            Ok(Value::Object(map)) => vec![map],
            _ => return Err(invalid("Empty or invalid json".into())),
        };
        if let Some(first) = rows.first() {
            if rows
                .iter()
                .any(|r| r.len() != first.len() || r.keys().any(|k| !first.contains_key(k)))
            {
                return Err(invalid("All object keys must match".into()));
            }
        }
        // Postgres `text` cannot hold NUL: the whole statement fails.
        if rows
            .iter()
            .flat_map(|r| r.values())
            .any(|v| v.as_str().is_some_and(|s| s.contains('\0')))
        {
            return Err(ApiError::new(
                400,
                "22P05",
                "unsupported Unicode escape sequence",
                Some("\\u0000 cannot be converted to text.".into()),
            ));
        }
        let conflict = on_conflict.unwrap_or("id");
        if !schema.columns.iter().any(|(c, _)| *c == conflict) {
            return Err(ApiError::new(
                400,
                "42703",
                format!("column \"{conflict}\" does not exist"),
                None,
            ));
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut seen = HashSet::with_capacity(rows.len());
        for row in &rows {
            if let Some(column) = row
                .keys()
                .find(|k| !schema.columns.iter().any(|(c, _)| c == k))
            {
                return Err(ApiError::new(
                    400,
                    "PGRST204",
                    format!(
                        "Could not find the '{column}' column of '{table}' in the schema cache"
                    ),
                    None,
                ));
            }
            if let Some((column, _)) = schema
                .columns
                .iter()
                .find(|(c, required)| *required && key_of(row, c).is_none())
            {
                return Err(ApiError::new(
                    400,
                    "23502",
                    format!("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"),
                    None,
                ));
            }
            let key = key_of(row, conflict).unwrap_or_default();
            let repeated = !seen.insert(key.clone());
            if resolution == Resolution::Error && repeated {
                return Err(ApiError::new(
                    409,
                    "23505",
                    format!("duplicate key value violates unique constraint \"{table}_pkey\""),
                    Some(format!("Key ({conflict})=({key}) already exists.")),
                ));
            }
            if resolution == Resolution::MergeDuplicates && repeated {
                return Err(ApiError::new(
                    400,
                    "21000",
                    "ON CONFLICT DO UPDATE command cannot affect row a second time",
                    Some("Ensure that no rows proposed for insertion within the same command have duplicate constrained values.".into()),
                ));
            }
            keys.push(key);
        }
        if let Some((column, parent)) = schema.foreign_key {
            let parents = self.rows.get(parent);
            for row in &rows {
                let value = key_of(row, column).unwrap_or_default();
                if !parents.is_some_and(|p| p.contains_key(&value)) {
                    return Err(ApiError::new(
                        409,
                        "23503",
                        format!("insert or update on table \"{table}\" violates foreign key constraint \"{table}_{column}_fkey\""),
                        Some(format!("Key ({column})=({value}) is not present in table \"{parent}\".")),
                    ));
                }
            }
        }
        let stored = self.rows.entry(schema.name).or_default();
        if resolution == Resolution::Error {
            if let Some(key) = keys.iter().find(|k| stored.contains_key(*k)) {
                return Err(ApiError::new(
                    409,
                    "23505",
                    format!("duplicate key value violates unique constraint \"{table}_pkey\""),
                    Some(format!("Key ({conflict})=({key}) already exists.")),
                ));
            }
        }
        let stats = self.stats.entry(schema.name).or_default();
        let mut written = Vec::with_capacity(rows.len());
        for (key, row) in keys.into_iter().zip(rows) {
            stats.received += 1;
            match stored.get_mut(&key) {
                Some(existing) => {
                    stats.duplicates += 1;
                    if resolution == Resolution::MergeDuplicates {
                        existing.extend(row);
                        if representation {
                            written.push(Value::Object(existing.clone()));
                        }
                    }
                }
                None => {
                    if representation {
                        written.push(Value::Object(row.clone()));
                    }
                    stored.insert(key, row);
                }
            }
        }
        stats.rows = stored.len() as u64;
        Ok(written)
    }

    /// `GET /rest/v1/<table>?col=eq.value&…`; `select`, `order`, `limit` and `offset` are
    /// accepted and, except `limit`, ignored.
    pub fn select(&self, table: &str, query: &[(String, String)]) -> Result<Vec<Value>, ApiError> {
        let schema = schema(table)?;
        let mut filters = Vec::new();
        let mut limit = usize::MAX;
        for (column, value) in query {
            match column.as_str() {
                "select" | "order" | "offset" => continue,
                "limit" => {
                    limit = value.parse().map_err(|_| {
                        ApiError::new(
                            400,
                            "PGRST100",
                            format!("failed to parse limit ({value})"),
                            None,
                        )
                    })?;
                    continue;
                }
                _ => {}
            }
            if !schema.columns.iter().any(|(c, _)| c == column) {
                return Err(ApiError::new(
                    400,
                    "42703",
                    format!("column {table}.{column} does not exist"),
                    None,
                ));
            }
            let Some(wanted) = value.strip_prefix("eq.") else {
                return Err(ApiError::new(
                    400,
                    "PGRST100",
                    format!("\"failed to parse filter ({value})\" (only eq. is supported here)"),
                    None,
                ));
            };
            filters.push((column.as_str(), wanted));
        }
        Ok(self
            .rows
            .get(schema.name)
            .into_iter()
            .flat_map(|rows| rows.values())
            .filter(|row| {
                filters
                    .iter()
                    .all(|(c, v)| key_of(row, c).as_deref() == Some(*v))
            })
            .take(limit)
            .map(|row| Value::Object(row.clone()))
            .collect())
    }

    pub fn stats(&self) -> BTreeMap<String, TableStats> {
        SCHEMAS
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    self.stats.get(s.name).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
