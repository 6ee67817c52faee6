//! The PreToolUse payload, as Claude Code documents it and Codex mirrors it:
//! `session_id`, `cwd`, `hook_event_name`, `tool_name`, `tool_input`, `tool_use_id`
//! (plus fields the hook does not need).

use serde_json::{Map, Value};

/// Which agent's protocol the event follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ClaudeCode,
    Codex,
}

impl Agent {
    pub fn parse(name: &str) -> Option<Agent> {
        match name {
            "claude-code" | "claude" => Some(Agent::ClaudeCode),
            "codex" => Some(Agent::Codex),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
        }
    }
}

/// One PreToolUse event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub session_id: String,
    pub cwd: String,
    pub hook_event_name: String,
    pub tool_name: String,
    pub tool_input: Map<String, Value>,
    pub tool_use_id: Option<String>,
}

/// Why a payload is not an event the hook can decide on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the hook input is not JSON: {0}")]
    NotJson(String),
    #[error("the hook input has no string field {0:?}")]
    Missing(&'static str),
    #[error("the hook input's tool_input is not an object")]
    ToolInput,
}

fn text(obj: &Map<String, Value>, key: &'static str) -> Result<String, EventError> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(EventError::Missing(key))
}

/// Parse a payload. Every field the decision depends on must be there.
pub fn parse_event(input: &[u8]) -> Result<Event, EventError> {
    let v: Value = serde_json::from_slice(input).map_err(|e| EventError::NotJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or(EventError::NotJson("not an object".into()))?;
    let tool_input = match obj.get("tool_input") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(EventError::ToolInput),
        None => Map::new(),
    };
    Ok(Event {
        session_id: text(obj, "session_id")?,
        cwd: text(obj, "cwd")?,
        hook_event_name: text(obj, "hook_event_name")?,
        tool_name: text(obj, "tool_name")?,
        tool_input,
        tool_use_id: obj
            .get("tool_use_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}
