//! Splits bytes read from a file into lines, holding a partial last line until its newline
//! arrives and cutting lines longer than the maximum (the rest of such a line is skipped, so
//! memory stays bounded by the maximum).

/// A complete line found by [`LineSplitter::push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// The bytes, without the newline (and without a trailing `\r`), at most the maximum.
    pub(crate) bytes: Vec<u8>,
    /// Offset just past the newline.
    pub(crate) end: u64,
    /// Whether the line was longer than the maximum.
    pub(crate) truncated: bool,
}

/// Line state of one file.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    truncated: bool,
    /// Offset where the line being assembled starts.
    line_start: u64,
    /// Offset of the next byte to read.
    read_pos: u64,
}

impl LineSplitter {
    pub(crate) fn new(max: usize, start: u64) -> Self {
        Self {
            max,
            buf: Vec::new(),
            truncated: false,
            line_start: start,
            read_pos: start,
        }
    }

    /// The next byte to read.
    pub(crate) fn read_pos(&self) -> u64 {
        self.read_pos
    }

    /// Where the unfinished line starts: everything before is complete lines.
    pub(crate) fn line_start(&self) -> u64 {
        self.line_start
    }

    /// Forgets the unfinished line and restarts at `offset`.
    pub(crate) fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.buf.shrink_to(64 * 1024);
        self.truncated = false;
        self.line_start = offset;
        self.read_pos = offset;
    }

    fn append(&mut self, piece: &[u8]) {
        let room = self.max.saturating_sub(self.buf.len());
        if piece.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// Feeds bytes read at [`read_pos`](Self::read_pos); calls `emit` for each complete line.
    /// Stops early (keeping its state consistent up to that line) when `emit` returns false.
    pub(crate) fn push(&mut self, data: &[u8], mut emit: impl FnMut(Line) -> bool) -> bool {
        let mut rest = data;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.append(&rest[..i]);
            let end = self.read_pos + i as u64 + 1;
            let mut bytes = std::mem::take(&mut self.buf);
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            let line = Line {
                bytes,
                end,
                truncated: std::mem::take(&mut self.truncated),
            };
            self.read_pos = end;
            self.line_start = end;
            rest = &rest[i + 1..];
            if !emit(line) {
                // The rest of `data` is not consumed: read_pos stays at the line's end.
                return false;
            }
        }
        self.append(rest);
        self.read_pos += rest.len() as u64;
        true
    }

    /// The unfinished line as a final line (for a file that will not grow any more), if any.
    pub(crate) fn finish(&mut self) -> Option<Line> {
        if self.read_pos == self.line_start {
            return None;
        }
        let line = Line {
            bytes: std::mem::take(&mut self.buf),
            end: self.read_pos,
            truncated: std::mem::take(&mut self.truncated),
        };
        self.line_start = self.read_pos;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut LineSplitter, data: &[u8]) -> Vec<(String, u64, bool)> {
        let mut out = Vec::new();
        s.push(data, |l| {
            out.push((String::from_utf8(l.bytes).unwrap(), l.end, l.truncated));
            true
        });
        out
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let mut s = LineSplitter::new(100, 0);
        assert_eq!(run(&mut s, b"one\ntw"), [("one".into(), 4, false)]);
        assert_eq!(s.line_start(), 4);
        assert_eq!(s.read_pos(), 6);
        assert_eq!(run(&mut s, b"o\r\nthree"), [("two".into(), 9, false)]);
        assert_eq!(
            s.finish().map(|l| (l.bytes, l.end)),
            Some((b"three".to_vec(), 14))
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let mut s = LineSplitter::new(4, 0);
        assert!(run(&mut s, b"abcdef").is_empty());
        assert_eq!(
            run(&mut s, b"gh\nok\n"),
            [("abcd".into(), 9, true), ("ok".into(), 12, false)]
        );
        assert!(s.buf.capacity() <= 64 * 1024);
    }

    #[test]
    fn stopping_early_keeps_the_position_of_the_last_emitted_line() {
        let mut s = LineSplitter::new(10, 100);
        let mut n = 0;
        assert!(!s.push(b"a\nb\nc\n", |_| {
            n += 1;
            n < 2
        }));
        assert_eq!((s.read_pos(), s.line_start()), (104, 104));
    }
}
