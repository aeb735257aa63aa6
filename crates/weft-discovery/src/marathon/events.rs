//! A parser of server-sent events (the HTML Living Standard, "Server-sent events", section
//! 9.2.6 "Interpreting an event stream"), for Marathon's `/v2/events`. Pure: bytes in, events
//! out; the connection is driven in `mod.rs`.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, or `message` when the event had none (as the spec says).
    pub(crate) event_type: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// The longest line, or the most data in one event, the parser buffers (bytes); a stream
/// that goes past it is broken off (Marathon's events are a few KiB).
pub(crate) const MAX_EVENT_BYTES: usize = 1 << 20;

/// An event stream's incremental parser. Lines end with CRLF, LF or CR; a blank line
/// dispatches the event; lines starting with `:` are comments; `field: value` loses one space
/// after the colon; `id` and `retry` are read and ignored; a leading byte order mark is
/// skipped.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next one is its pair.
    after_cr: bool,
    started: bool,
    event_type: String,
    data: String,
}

/// The stream broke a limit ([`MAX_EVENT_BYTES`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl SseParser {
    /// Feeds the next bytes of the stream; returns the events they complete.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        let mut out = Vec::new();
        if !self.started && !chunk.is_empty() {
            // The BOM may arrive split; only a whole one at the very start is skipped.
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
            self.started = true;
        }
        for &b in chunk {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line)? {
                        out.push(ev);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_EVENT_BYTES {
                        return Err(TooLarge);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, TooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.event_type = value.into_owned(),
            b"data" => {
                if self.data.len() + value.len() >= MAX_EVENT_BYTES {
                    return Err(TooLarge);
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            // `id` and `retry` matter to browsers' reconnection; we reconnect with our backoff
            // and re-read the whole state, so neither is needed. Other fields are ignored.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event_type = std::mem::take(&mut self.event_type);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        Some(SseEvent {
            event_type: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, d: &str) -> SseEvent {
        SseEvent {
            event_type: t.into(),
            data: d.into(),
        }
    }

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        chunks.iter().flat_map(|c| p.feed(c).unwrap()).collect()
    }

    #[test]
    fn events_comments_and_multiline_data() {
        let stream =
            b"\xEF\xBB\xBF: a comment\nevent: status_update_event\ndata: {\"a\":\ndata:1}\n\n\
                       data: plain\n\nevent: no_data\n\n";
        assert_eq!(
            all(&[stream]),
            [
                ev("status_update_event", "{\"a\":\n1}"),
                ev("message", "plain")
            ]
        );
    }

    #[test]
    fn crlf_and_cr_line_ends_even_split_across_chunks() {
        let want = [ev("a", "1"), ev("b", "2"), ev("c", "3")];
        assert_eq!(
            all(&[b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\revent: c\ndata: 3\n\n"]),
            want
        );
        let split: &[&[u8]] = &[
            b"event: a\r",
            b"\ndata: 1\r",
            b"\n\r",
            b"\nevent: b\rdata: 2\r\r",
            b"event: c\ndata: 3\n",
            b"\n",
        ];
        assert_eq!(all(split), want);
        // One byte at a time.
        let bytes = b"event: a\r\ndata: 1\r\n\r\n";
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(all(&chunks), [ev("a", "1")]);
    }

    #[test]
    fn field_forms() {
        // No space after the colon; only one space is removed; a line with no colon is a
        // field with an empty value; `id` and `retry` are ignored.
        assert_eq!(
            all(&[b"event:x\nid: 7\nretry: 10\ndata:  two spaces\ndata\n\n"]),
            [ev("x", " two spaces\n")]
        );
        // An incomplete event at the end of the stream is not dispatched.
        assert_eq!(all(&[b"data: half"]), []);
    }

    #[test]
    fn oversized_lines_and_events_are_refused() {
        let mut p = SseParser::default();
        let long = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&long), Err(TooLarge));
        let mut p = SseParser::default();
        let line = format!("data: {}\n", "y".repeat(MAX_EVENT_BYTES / 2));
        p.feed(line.as_bytes()).unwrap();
        assert_eq!(p.feed(line.as_bytes()), Err(TooLarge));
    }
}
