//! What the proxy reads of a request body itself, beside the text walk: the fields a
//! route requires, the end user named in it, and who wrote each item (the user, the
//! application, or a tool), which decides the traps a text goes through.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The fields the proxy reads itself; the rest of the body is only walked for text.
#[derive(Deserialize)]
pub(super) struct Envelope<'a> {
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    safety_identifier: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub(super) stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    max_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_output_tokens: Option<serde_json::Value>,
}

/// A field's raw value whenever the field is there, `null` included (which `Option`
/// alone reads as absent).
pub(super) fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(value).map(Some)
}

/// Who wrote a piece of a request's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// The end user: the prompt proper.
    User,
    /// The application: the Responses API's `instructions`, system and developer
    /// messages or input items.
    Application,
    /// Neither: a tool's or function's result (`tool` and `function` messages, the
    /// Responses API's `function_call_output`, `custom_tool_call_output` and `mcp_call`
    /// items), where indirect injection arrives.
    Untrusted,
}

/// The origin of each item of `messages` and of `input`.
pub(super) struct Origins {
    messages: Vec<Origin>,
    input: Vec<Origin>,
}

impl Origins {
    /// Who wrote a string, by its channel.
    pub(super) fn of(&self, channel: &str) -> Origin {
        let mut path = channel.split('.').skip(1);
        let items = match path.next() {
            Some("instructions") => return Origin::Application,
            Some("messages") => &self.messages,
            Some("input") => &self.input,
            _ => return Origin::User,
        };
        path.next().and_then(|p| p.parse::<usize>().ok()).and_then(|p| items.get(p).copied()).unwrap_or(Origin::User)
    }
}

/// An item of `messages` or `input`, for its role or type.
#[derive(Deserialize)]
pub(super) struct Item {
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl Item {
    fn origin(&self) -> Origin {
        match (self.role.as_deref(), self.kind.as_deref()) {
            (Some("system" | "developer"), _) => Origin::Application,
            (Some("tool" | "function"), _) => Origin::Untrusted,
            (_, Some("function_call_output" | "custom_tool_call_output" | "mcp_call")) => Origin::Untrusted,
            _ => Origin::User,
        }
    }
}

impl Envelope<'_> {
    /// Who wrote each item of `messages` and `input`, read once per request.
    pub(super) fn origins(&self) -> Origins {
        let origins = |items: Option<&RawValue>| -> Vec<Origin> {
            let items = items.and_then(|items| serde_json::from_str::<Vec<&RawValue>>(items.get()).ok());
            items
                .unwrap_or_default()
                .into_iter()
                .map(|item| serde_json::from_str::<Item>(item.get()).map_or(Origin::User, |item| item.origin()))
                .collect()
        };
        Origins { messages: origins(self.messages), input: origins(self.input) }
    }

    pub(super) fn has(&self, field: &str) -> bool {
        let value = match field {
            "messages" => self.messages,
            "input" => self.input,
            _ => self.prompt,
        };
        value.is_some_and(|v| v.get() != "null")
    }

    /// Whether the client asks for a streamed answer (`"stream": true`).
    pub(super) fn streams(&self) -> bool {
        self.stream.is_some_and(|v| v.get() == "true")
    }

    /// The model asked for, when it is a string.
    pub(super) fn model(&self) -> Option<String> {
        self.model.and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// The most answer tokens the request allows, under whichever name its API uses.
    pub(super) fn max_output_tokens(&self) -> Option<u64> {
        [&self.max_completion_tokens, &self.max_tokens, &self.max_output_tokens]
            .into_iter()
            .find_map(|v| v.as_ref().and_then(serde_json::Value::as_u64))
    }

    /// The end user named in the body (`user`, or the Responses API's
    /// `safety_identifier`), when it is a string.
    pub(super) fn user(&self) -> Option<String> {
        [self.user, self.safety_identifier].into_iter().flatten().find_map(|v| serde_json::from_str(v.get()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::proxy::text;

    #[test]
    fn system_developer_and_instructions_are_the_applications_and_tool_results_are_untrusted() {
        let body = br#"{"instructions": "be safe", "messages": [{"role": "system", "content": "s"},
            {"role": "developer", "content": [{"type": "text", "text": "d"}]}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"}, {"role": "tool", "tool_call_id": "c1", "content": "t"}],
            "input": [{"role": "system", "content": "i"}, "plain",
            {"type": "function_call_output", "call_id": "c2", "output": "f"}]}"#;
        let envelope: Envelope<'_> = serde_json::from_slice(body).unwrap();
        let origins = envelope.origins();
        let of = |origin: Origin| -> Vec<String> {
            text::segments(body)
                .unwrap()
                .into_iter()
                .filter(|s| origins.of(&s.channel) == origin)
                .map(|s| s.text)
                .collect()
        };
        assert_eq!(of(Origin::Application), ["be safe", "s", "d", "i"]);
        assert_eq!(of(Origin::Untrusted), ["t", "f"]);
        assert_eq!(of(Origin::User), ["u", "a", "plain"]);
    }
}
