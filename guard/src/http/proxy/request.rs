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
    /// Anthropic's `metadata.user_id` (OpenAI's `metadata` is free-form and holds no
    /// user field the API knows).
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
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
    /// The application: the Responses API's `instructions`, Anthropic's `system`,
    /// system and developer messages or input items.
    Application,
    /// Neither: a tool's or function's result or a tool call's input (`tool` and
    /// `function` messages, the Responses API's `function_call_output`,
    /// `custom_tool_call_output` and `mcp_call` items, Anthropic's `tool_use` and
    /// `tool_result` content blocks), where indirect injection arrives.
    Untrusted,
}

/// Who wrote an item of `messages` or `input`, and each of its content blocks.
struct ItemOrigin {
    own: Origin,
    /// By position in the item's `content`: a tool block's origin is its own.
    blocks: Vec<Origin>,
}

/// The origin of each item of `messages` and of `input`.
pub(super) struct Origins {
    messages: Vec<ItemOrigin>,
    input: Vec<ItemOrigin>,
}

impl Origins {
    /// Who wrote a string, by its channel.
    pub(super) fn of(&self, channel: &str) -> Origin {
        let mut path = channel.split('.').skip(1);
        let items = match path.next() {
            Some("instructions" | "system") => return Origin::Application,
            Some("messages") => &self.messages,
            Some("input") => &self.input,
            _ => return Origin::User,
        };
        let Some(item) = path.next().and_then(|p| p.parse::<usize>().ok()).and_then(|p| items.get(p)) else {
            return Origin::User;
        };
        let block = match (path.next(), path.next().and_then(|p| p.parse::<usize>().ok())) {
            (Some("content"), Some(block)) => item.blocks.get(block).copied(),
            _ => None,
        };
        block.unwrap_or(item.own)
    }
}

/// An item of `messages` or `input`, for its role or type and its content blocks'.
#[derive(Deserialize)]
pub(super) struct Item<'a> {
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// A content block, for its type.
#[derive(Deserialize)]
struct Block {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl Item<'_> {
    fn origin(&self) -> ItemOrigin {
        let own = match (self.role.as_deref(), self.kind.as_deref()) {
            (Some("system" | "developer"), _) => Origin::Application,
            (Some("tool" | "function"), _) => Origin::Untrusted,
            (_, Some("function_call_output" | "custom_tool_call_output" | "mcp_call")) => Origin::Untrusted,
            _ => Origin::User,
        };
        let blocks = self.content.and_then(|c| serde_json::from_str::<Vec<Block>>(c.get()).ok()).unwrap_or_default();
        let blocks = blocks
            .into_iter()
            .map(|block| match block.kind.as_deref() {
                Some(
                    "tool_use"
                    | "tool_result"
                    | "server_tool_use"
                    | "web_search_tool_result"
                    | "mcp_tool_use"
                    | "mcp_tool_result",
                ) => Origin::Untrusted,
                _ => own,
            })
            .collect();
        ItemOrigin { own, blocks }
    }
}

impl Envelope<'_> {
    /// Who wrote each item of `messages` and `input`, read once per request.
    pub(super) fn origins(&self) -> Origins {
        let origins = |items: Option<&RawValue>| -> Vec<ItemOrigin> {
            let items = items.and_then(|items| serde_json::from_str::<Vec<&RawValue>>(items.get()).ok());
            let user = || ItemOrigin { own: Origin::User, blocks: Vec::new() };
            items
                .unwrap_or_default()
                .into_iter()
                .map(|item| serde_json::from_str::<Item>(item.get()).map_or_else(|_| user(), |item| item.origin()))
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

    /// The end user named in the body (`user`, the Responses API's
    /// `safety_identifier`, Anthropic's `metadata.user_id`), when it is a string.
    pub(super) fn user(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Metadata {
            user_id: Option<String>,
        }
        let mut named = [self.user, self.safety_identifier].into_iter().flatten();
        named.find_map(|v| serde_json::from_str(v.get()).ok()).or_else(|| {
            self.metadata.and_then(|m| serde_json::from_str::<Metadata>(m.get()).ok()).and_then(|m| m.user_id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::proxy::text;

    /// The texts of `body` that `envelope`'s origins give to `origin`, in order.
    fn texts_by(body: &[u8], envelope: &Envelope<'_>, origin: Origin) -> Vec<String> {
        let origins = envelope.origins();
        text::segments(body).unwrap().into_iter().filter(|s| origins.of(&s.channel) == origin).map(|s| s.text).collect()
    }

    #[test]
    fn system_developer_and_instructions_are_the_applications_and_tool_results_are_untrusted() {
        let body = br#"{"instructions": "be safe", "messages": [{"role": "system", "content": "s"},
            {"role": "developer", "content": [{"type": "text", "text": "d"}]}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"}, {"role": "tool", "tool_call_id": "c1", "content": "t"}],
            "input": [{"role": "system", "content": "i"}, "plain",
            {"type": "function_call_output", "call_id": "c2", "output": "f"}]}"#;
        let envelope: Envelope<'_> = serde_json::from_slice(body).unwrap();
        let of = |origin: Origin| texts_by(body, &envelope, origin);
        assert_eq!(of(Origin::Application), ["be safe", "s", "d", "i"]);
        assert_eq!(of(Origin::Untrusted), ["t", "f"]);
        assert_eq!(of(Origin::User), ["u", "a", "plain"]);
    }

    #[test]
    fn anthropics_system_is_the_applications_and_its_tool_blocks_are_untrusted() {
        let body = br#"{"model": "claude-sonnet-4-5", "max_tokens": 64, "metadata": {"user_id": "u-9"},
            "system": [{"type": "text", "text": "be kind"}],
            "messages": [{"role": "user", "content": "hi"},
              {"role": "assistant", "content": [{"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "fetch", "input": {"q": "weather"}}]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ignore that"},
                {"type": "text", "text": "thanks"}]}]}"#;
        let envelope: Envelope<'_> = serde_json::from_slice(body).unwrap();
        let of = |origin: Origin| texts_by(body, &envelope, origin);
        assert_eq!(of(Origin::Application), ["be kind"]);
        assert_eq!(of(Origin::Untrusted), ["fetch", "weather", "ignore that"]);
        assert_eq!(of(Origin::User), ["hi", "calling", "thanks"]);
        assert_eq!(envelope.user().as_deref(), Some("u-9"));
        assert_eq!(envelope.max_output_tokens(), Some(64));
    }
}
