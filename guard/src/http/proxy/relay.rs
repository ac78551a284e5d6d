//! Model answers through the answer traps (secrets, personal data, invisible
//! characters), as `proxy.output.action` says: `flag` records, `redact` masks, `block`
//! withholds.
//!
//! A whole JSON answer is read (bounded), scanned and relayed. A server-sent-event
//! stream ([`sse`](super::sse) framing) is relayed event by event, each event once the text it
//! carries is past what the [`holdback`](super::holdback) scanner must still hold.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use futures::stream::BoxStream;
use godel_config::{Action, OutputAction};

use godel_traps::Finding;

use super::dialect::Dialect;
use super::error::ProxyError;
use super::holdback::Channel;
use super::sse::{self, Data, Partial};
use super::usage::{self, StreamUsage, Unasked};
use super::{redactions, text, upstream};
use crate::audit::{AuditDecision, AuditFinding, AuditLine, Direction, Pseudonyms};
use crate::engine::{Guard, Metering, Outcome};
use crate::http::AppState;
use crate::metrics::{AnswerFindingLabels, TierLabels};
use crate::pricing::TokenCount;

/// Largest whole answer scanned; a bigger one is relayed as it is, and logged.
const WHOLE_LIMIT: usize = 16 << 20;
/// Largest single stream event; an upstream that sends more without ending one has its
/// stream ended with an error event rather than buffered without bound.
const EVENT_LIMIT: usize = 1 << 20;

/// What the relay reads of an answer besides its text.
#[derive(Clone, Copy)]
pub(super) struct Reading {
    /// The upstream's token count, to settle and count.
    pub(super) usage: bool,
    /// The stream's usage chunk was asked for by the guard, not the client: it is read
    /// and taken out.
    pub(super) unasked_usage: bool,
}

/// Relays an allowed request's successful answer through the answer traps, reading its
/// usage when told to; a stream's own errors are written in `dialect`.
pub(super) async fn relay(
    state: Arc<AppState>,
    outcome: Outcome,
    answer: reqwest::Response,
    reading: Reading,
    dialect: Dialect,
) -> Result<Response, ProxyError> {
    let action = state.guard.output_action();
    let content_type = answer.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if action == OutputAction::None && !reading.usage {
        Ok(upstream::relay_unchanged(answer))
    } else if content_type.starts_with("text/event-stream") {
        let builder = upstream::head(&answer);
        let relay = Relay::new(state, outcome, action, reading, dialect, answer.bytes_stream().boxed());
        let events = futures::stream::unfold(relay, |mut relay| async move {
            relay.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), relay))
        });
        builder.body(Body::from_stream(events)).map_err(|_| ProxyError::UpstreamBroken)
    } else if content_type.starts_with("application/json") {
        whole(&state.guard, outcome, action, reading, answer).await
    } else {
        Ok(upstream::relay_unchanged(answer))
    }
}

/// The answer side of the [`Guard`], beside the relay that is its only caller.
impl Guard {
    /// What the proxy does with model answers.
    pub(crate) fn output_action(&self) -> OutputAction {
        self.output_action
    }

    /// Findings in a model's answer (secrets, personal data, invisible characters):
    /// empty when answers are not inspected.
    pub(crate) fn inspect_answer(&self, text: &str) -> Vec<Finding> {
        if self.output_action == OutputAction::None { Vec::new() } else { self.context_traps.inspect(text) }
    }

    /// The audit line for an answer with findings or metered tokens, beside the
    /// request's own line (same `request_id`): `direction: "answer"`, what was done
    /// (`allow` for a flagged answer, `redact`, `block`) and the tokens it was settled to.
    /// Written from a task of its own, so an answer stream dropped by its client still
    /// records what it carried.
    fn audit_answer(
        &self,
        request_id: &str,
        who: &Pseudonyms,
        action: OutputAction,
        findings: &[Finding],
        tokens: Option<u64>,
    ) {
        if findings.is_empty() && tokens.is_none() {
            return;
        }
        for f in findings {
            let labels =
                AnswerFindingLabels { trap: f.trap.as_str(), severity: f.severity.as_str(), action: action.as_str() };
            self.metrics.answer_findings.get_or_create(&labels).inc();
        }
        if action == OutputAction::Block && !findings.is_empty() {
            self.metrics.answers_withheld.get_or_create(&TierLabels { tier: who.tier.clone() }).inc();
        }
        let decision = match action {
            OutputAction::Block => AuditDecision::Block,
            OutputAction::Redact => AuditDecision::Redact,
            OutputAction::None | OutputAction::Flag => AuditDecision::Allow,
        };
        let findings = findings
            .iter()
            .map(|f| AuditFinding { trap: f.trap, rule: &f.rule, severity: f.severity, input: None })
            .collect();
        let line = AuditLine {
            direction: Some(Direction::Answer),
            tokens,
            ..AuditLine::new(request_id, who, decision, findings)
        };
        self.audit.write_detached(&line);
    }
}

async fn whole(
    guard: &Guard,
    outcome: Outcome,
    action: OutputAction,
    reading: Reading,
    answer: reqwest::Response,
) -> Result<Response, ProxyError> {
    let builder = upstream::head(&answer);
    let mut chunks = answer.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::warn!(error = %e.without_url(), "upstream answer broke off");
            ProxyError::UpstreamBroken
        })?;
        body.extend_from_slice(&chunk);
        if body.len() > WHOLE_LIMIT {
            tracing::warn!(limit = WHOLE_LIMIT, "answer too large to inspect; relayed unscanned");
            let rest = futures::stream::once(async move { Ok(Bytes::from(body)) }).chain(chunks);
            return builder.body(Body::from_stream(rest)).map_err(|_| ProxyError::UpstreamBroken);
        }
    }
    let mut relayed = body;
    let tokens = match usage::usage_of(&relayed).filter(|_| reading.usage) {
        Some(used) => {
            // On the request's server span, when traces are exported (a stream's usage
            // arrives after that span has ended).
            tracing::Span::current()
                .record("gen_ai.usage.input_tokens", i64::try_from(used.input).unwrap_or(i64::MAX))
                .record("gen_ai.usage.output_tokens", i64::try_from(used.output).unwrap_or(i64::MAX));
            guard.settle(&outcome.who, &outcome.metering, used).await
        }
        None => None,
    };
    let segments = if action == OutputAction::None { Vec::new() } else { text::segments(&relayed).unwrap_or_default() };
    let (text, starts) = text::joined(&segments);
    let findings = guard.inspect_answer(&text);
    guard.audit_answer(&outcome.request_id, &outcome.who, action, &findings, tokens);
    match action {
        OutputAction::Block if !findings.is_empty() => return Err(ProxyError::AnswerBlocked { findings }),
        OutputAction::Redact if !findings.is_empty() => {
            let masked: Vec<Finding> = findings.into_iter().map(|f| Finding { action: Action::Redact, ..f }).collect();
            relayed = text::splice(&relayed, redactions(&segments, &starts, &masked));
        }
        _ => {}
    }
    builder.body(Body::from(relayed)).map_err(|_| ProxyError::UpstreamBroken)
}

/// One server-sent event waiting to go out.
struct Event {
    raw: Vec<u8>,
    pieces: Vec<Piece>,
    /// Where each line of the payload sits in `raw`, for pieces' literals.
    data: Option<Data>,
}

/// A string of an event's payload, placed in its channel's text.
struct Piece {
    channel: String,
    /// Offsets in the channel's whole text.
    span: Range<usize>,
    /// The string literal in the payload.
    literal: Range<usize>,
}

/// An answer stream on its way to the client.
struct Relay {
    state: Arc<AppState>,
    request_id: String,
    who: Pseudonyms,
    action: OutputAction,
    reading: Reading,
    dialect: Dialect,
    metering: Metering,
    /// The upstream's usage, read from the events that carry it.
    stream_usage: StreamUsage,
    /// The upstream's usage once its events have arrived, until it is settled.
    used: Option<TokenCount>,
    settled: bool,
    /// The tokens the answer was settled to, for its audit line.
    tokens: Option<u64>,
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    partial: Partial,
    queue: VecDeque<Event>,
    channels: HashMap<String, Channel>,
    /// Every finding, for the audit line written when the stream ends or is dropped.
    findings: Vec<Finding>,
    ended: bool,
    stopped: bool,
}

impl Relay {
    fn new(
        state: Arc<AppState>,
        outcome: Outcome,
        action: OutputAction,
        reading: Reading,
        dialect: Dialect,
        upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    ) -> Self {
        Self {
            state,
            request_id: outcome.request_id,
            who: outcome.who,
            action,
            reading,
            dialect,
            stream_usage: StreamUsage::default(),
            used: None,
            settled: false,
            tokens: None,
            metering: outcome.metering,
            upstream,
            partial: Partial::default(),
            queue: VecDeque::new(),
            channels: HashMap::new(),
            findings: Vec::new(),
            ended: false,
            stopped: false,
        }
    }

    /// The next bytes for the client: every event that may go out, once upstream has
    /// sent enough to decide; `None` when the stream is over.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.stopped {
                return None;
            }
            // Settled before anything after the usage goes out: the client's next request
            // meets the real count, not the reservation.
            if let (Some(used), false) = (self.used, self.settled) {
                self.settled = true;
                self.tokens = self.state.guard.settle(&self.who, &self.metering, used).await;
            }
            let out = self.release();
            if !out.is_empty() {
                return Some(out.into());
            }
            if self.ended {
                return None;
            }
            match self.upstream.next().await {
                Some(Ok(bytes)) => self.feed(&bytes),
                Some(Err(e)) => {
                    let timed_out = e.is_timeout();
                    tracing::warn!(error = %e.without_url(), "upstream stream broke off");
                    self.finish();
                    // After what arrived, an error event: SDKs raise it, where a stream
                    // that just stops would look complete.
                    let (code, message) = if timed_out {
                        ("upstream_timeout", "the upstream API did not finish its answer in time")
                    } else {
                        ("upstream_error", "the upstream API's answer broke off")
                    };
                    self.queue.push_back(Event {
                        raw: self.dialect.error_event(StatusCode::BAD_GATEWAY, "upstream_error", code, message),
                        pieces: Vec::new(),
                        data: None,
                    });
                }
                None => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.ended = true;
        if self.partial.len() > 0 {
            let raw = self.partial.take();
            self.push(raw);
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for raw in self.partial.split(bytes) {
            self.push(raw);
        }
        if self.partial.len() > EVENT_LIMIT {
            tracing::warn!(limit = EVENT_LIMIT, "upstream stream event too large; stream ended");
            self.partial.take();
            self.ended = true;
            let event = self.dialect.error_event(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream_error",
                "the upstream API sent an event too large to relay",
            );
            self.queue.push_back(Event { raw: event, pieces: Vec::new(), data: None });
        }
    }

    fn push(&mut self, mut raw: Vec<u8>) {
        let mut data = sse::data_of(&raw);
        if let Some(payload) = data.as_ref().map(|d| &d.payload) {
            if self.reading.usage && self.used.is_none() {
                self.used = self.stream_usage.read(payload);
            }
            if self.reading.unasked_usage {
                match usage::unasked(payload) {
                    Unasked::Drop => return,
                    Unasked::Strip(payload) => {
                        raw = sse::data_event(&payload);
                        data = sse::data_of(&raw);
                    }
                    Unasked::Keep => {}
                }
            }
        }
        let mut pieces = Vec::new();
        if let Some(data) = &data {
            if data.payload == b"[DONE]" {
                self.ended = true;
            } else if let Ok(segments) = text::segments(&data.payload) {
                for segment in segments {
                    let span = self.channels.entry(segment.channel.clone()).or_default().push(&segment.text);
                    pieces.push(Piece { channel: segment.channel, span, literal: segment.literal });
                }
            }
        }
        self.queue.push_back(Event { raw, pieces, data });
    }

    /// Sends every event at the head of the queue whose text is past what must be held.
    fn release(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(event) = self.queue.front() {
            let ready = self.ended
                || event
                    .pieces
                    .iter()
                    .all(|p| self.channels.get(&p.channel).is_none_or(|c| p.span.end <= c.safe_end(self.action)));
            if !ready {
                break;
            }
            let Some(event) = self.queue.pop_front() else { break };
            for piece in &event.pieces {
                if let Some(channel) = self.channels.get_mut(&piece.channel) {
                    channel.scan(|text| self.state.guard.inspect_answer(text), &mut self.findings);
                }
            }
            if self.action == OutputAction::Block && !self.findings.is_empty() {
                out.extend_from_slice(&blocked_event(self.dialect, &self.findings));
                self.stopped = true;
                return out;
            }
            out.extend_from_slice(&self.render(event));
        }
        out
    }

    fn render(&mut self, event: Event) -> Vec<u8> {
        let mut replacements = Vec::new();
        if let (OutputAction::Redact, Some(data)) = (self.action, &event.data) {
            for piece in &event.pieces {
                let masked = self.channels.get(&piece.channel).and_then(|c| c.masked(&piece.span));
                if let (Some(masked), Some(literal)) = (masked, data.to_raw(&piece.literal)) {
                    replacements.push((literal, masked));
                }
            }
        }
        for piece in &event.pieces {
            if let Some(channel) = self.channels.get_mut(&piece.channel) {
                channel.release(piece.span.end);
            }
        }
        if replacements.is_empty() { event.raw } else { text::splice(&event.raw, replacements) }
    }
}

impl Drop for Relay {
    /// The answer's audit line, whether the stream ended or its client went away.
    fn drop(&mut self) {
        self.state.guard.audit_answer(&self.request_id, &self.who, self.action, &self.findings, self.tokens);
    }
}

/// The event that ends a blocked stream, which the SDKs raise: the error a whole
/// withheld answer gets.
fn blocked_event(dialect: Dialect, findings: &[Finding]) -> Vec<u8> {
    let (status, kind, code, message) = ProxyError::AnswerBlocked { findings: findings.to_vec() }.parts();
    dialect.error_event(status, kind, code, &message)
}
