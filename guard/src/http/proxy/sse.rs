//! Server-sent-event framing of an answer stream, as the SSE standard reads it: events
//! end at a blank line (`\n\n` or `\r\n\r\n`, possibly split across chunks), and an
//! event's payload is its `data:` lines joined by newlines. Offsets map back from the
//! payload to the raw event, so a masked string is spliced into the bytes as sent.

use std::ops::Range;

/// An event's payload: its `data:` lines joined by newlines, as the SSE standard reads
/// them, and where each line starts in the payload and in the raw event.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Data {
    pub(super) payload: Vec<u8>,
    /// `(start in payload, start in raw)` of each line, in order.
    lines: Vec<(usize, usize)>,
}

impl Data {
    /// The raw event's bytes of a payload range. A JSON string literal never spans a line
    /// (a raw newline cannot be in one), so every literal maps; `None` if one did not.
    pub(super) fn to_raw(&self, range: &Range<usize>) -> Option<Range<usize>> {
        let index = self.lines.partition_point(|&(start, _)| start <= range.start).checked_sub(1)?;
        let (start, raw) = self.lines[index];
        let line_end = self.lines.get(index + 1).map_or(self.payload.len(), |&(next, _)| next - 1);
        (range.end <= line_end).then(|| raw + range.start - start..raw + range.end - start)
    }
}

/// Stream bytes not yet making up a whole event.
#[derive(Default)]
pub(super) struct Partial(Vec<u8>);

impl Partial {
    /// Adds `bytes`; the events they complete, in order. Only the new bytes (and the
    /// three before them, as a separator may straddle chunks) are searched, so an event
    /// arriving in many small chunks is not rescanned each time.
    pub(super) fn split(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut from = self.0.len().saturating_sub(3);
        self.0.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.0[from..]).map(|end| from + end) {
            events.push(self.0.drain(..end).collect());
            from = 0;
        }
        events
    }

    /// Bytes held that no blank line has ended yet.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The held bytes, leaving none: at the end of a stream, its last (unterminated) event.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// The end of the first complete event in `buffer` (its blank line included).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The payload of an event's `data:` lines; `None` if it has none.
pub(super) fn data_of(raw: &[u8]) -> Option<Data> {
    let mut data = Data::default();
    let mut line_start = 0;
    for line in raw.split(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = content.strip_prefix(b"data:") {
            let skip = usize::from(rest.first() == Some(&b' '));
            if !data.lines.is_empty() {
                data.payload.push(b'\n');
            }
            data.lines.push((data.payload.len(), line_start + 5 + skip));
            data.payload.extend_from_slice(&rest[skip..]);
        }
        line_start += line.len() + 1;
    }
    (!data.lines.is_empty()).then_some(data)
}

/// An event of `data:` lines carrying `payload`.
pub(super) fn data_event(payload: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(payload.len() + 8);
    for line in payload.split(|&b| b == b'\n') {
        raw.extend_from_slice(b"data: ");
        raw.extend_from_slice(line);
        raw.push(b'\n');
    }
    raw.push(b'\n');
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn events_split_anywhere_across_chunks_are_put_back_together() {
        let first = "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"a\"}}]}\r\n\r\n";
        let events = format!("{first}data: [DONE]\n\n");
        for cut in 1..events.len() {
            let mut partial = Partial::default();
            let mut found = partial.split(&events.as_bytes()[..cut]);
            found.extend(partial.split(&events.as_bytes()[cut..]));
            assert_eq!(found, [first.as_bytes(), b"data: [DONE]\n\n"], "cut at {cut}");
            assert!(partial.0.is_empty());
        }
    }

    #[test]
    fn the_data_lines_are_the_payload_and_its_literals_map_back() {
        let raw = b"event: response.output_text.delta\ndata: {\"delta\": \"x\"}\n\n";
        let data = data_of(raw).unwrap();
        assert_eq!(data.payload, b"{\"delta\": \"x\"}");
        assert_eq!(data.to_raw(&(10..13)).map(|r| &raw[r]), Some(&b"\"x\""[..]));
        assert_eq!(data_of(b": comment\n\n"), None);

        let raw = b"data: {\"a\": \"x\",\r\ndata:\"b\": \"yz\"}\r\n\r\n";
        let data = data_of(raw).unwrap();
        assert_eq!(data.payload, b"{\"a\": \"x\",\n\"b\": \"yz\"}");
        let literal = 16..20;
        assert_eq!(&data.payload[literal.clone()], b"\"yz\"");
        assert_eq!(data.to_raw(&literal).map(|r| &raw[r]), Some(&b"\"yz\""[..]));
        assert_eq!(data.to_raw(&(6..20)), None, "a range across lines does not map");
    }
}
