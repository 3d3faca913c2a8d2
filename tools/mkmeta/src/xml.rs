//! A small XML tokenizer for thin_dump output: start tags with attributes (self-closing or not),
//! end tags, `<?...?>` declarations and comments skipped, whitespace between tags. Anything else
//! (text, CDATA, DOCTYPE, bad syntax) is an error with the line and column where it starts.

/// A position in the input, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    Start {
        name: &'a str,
        attrs: Vec<(&'a str, String)>,
        /// `<name .../>`
        empty: bool,
    },
    End {
        name: &'a str,
    },
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub msg: String,
}

pub struct Tokenizer<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Tokenizer<'a> {
    pub fn new(s: &'a [u8]) -> Self {
        Tokenizer { s, pos: 0, line: 1, line_start: 0 }
    }

    /// The position of the next unread byte.
    pub fn pos(&self) -> Pos {
        self.pos_at(self.pos)
    }

    fn pos_at(&self, at: usize) -> Pos {
        // `at` is never before the start of the current line.
        Pos { line: self.line, col: at.saturating_sub(self.line_start) + 1 }
    }

    fn err<T>(&self, at: Pos, msg: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError { pos: at, msg: msg.into() })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.line_start = self.pos;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.bump();
        }
    }

    fn starts_with(&self, p: &[u8]) -> bool {
        self.s[self.pos..].starts_with(p)
    }

    /// Skips past `end`, or fails at EOF naming what was left open at `open`.
    fn skip_past(&mut self, end: &[u8], open: Pos, what: &str) -> Result<(), SyntaxError> {
        while !self.starts_with(end) {
            if self.bump().is_none() {
                return self.err(open, format!("unterminated {what}"));
            }
        }
        for _ in 0..end.len() {
            self.bump();
        }
        Ok(())
    }

    fn name(&mut self) -> Result<&'a str, SyntaxError> {
        let start = self.pos;
        let at = self.pos();
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-' | b'.') || (c >= 0x80);
            if !ok {
                break;
            }
            self.bump();
        }
        if start == self.pos || self.s[start].is_ascii_digit() {
            return self.err(at, "expected a name");
        }
        match std::str::from_utf8(&self.s[start..self.pos]) {
            Ok(n) => Ok(n),
            Err(_) => self.err(at, "name is not valid UTF-8"),
        }
    }

    /// The next tag (whitespace, declarations and comments skipped), with where it starts.
    pub fn next_event(&mut self) -> Result<(Pos, Event<'a>), SyntaxError> {
        loop {
            self.skip_ws();
            let at = self.pos();
            let Some(c) = self.peek() else {
                return Ok((at, Event::Eof));
            };
            if c != b'<' {
                let text: String = String::from_utf8_lossy(&self.s[self.pos..(self.pos + 20).min(self.s.len())])
                    .chars()
                    .take_while(|&c| c != '\n')
                    .collect();
                return self.err(at, format!("unexpected text '{text}' (expected a tag)"));
            }
            if self.starts_with(b"<?") {
                self.skip_past(b"?>", at, "<? ... ?> declaration")?;
                continue;
            }
            if self.starts_with(b"<!--") {
                self.skip_past(b"-->", at, "comment")?;
                continue;
            }
            if self.starts_with(b"<!") {
                return self.err(at, "DOCTYPE and CDATA sections are not supported");
            }
            self.bump();
            if self.peek() == Some(b'/') {
                self.bump();
                let name = self.name()?;
                self.skip_ws();
                if self.bump() != Some(b'>') {
                    return self.err(self.pos(), format!("expected '>' to close </{name}"));
                }
                return Ok((at, Event::End { name }));
            }
            let name = self.name()?;
            let mut attrs: Vec<(&'a str, String)> = Vec::new();
            loop {
                let had_ws = matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n'));
                self.skip_ws();
                match self.peek() {
                    None => return self.err(at, format!("unterminated tag <{name}")),
                    Some(b'>') => {
                        self.bump();
                        return Ok((at, Event::Start { name, attrs, empty: false }));
                    }
                    Some(b'/') => {
                        self.bump();
                        if self.bump() != Some(b'>') {
                            return self.err(self.pos(), format!("expected '/>' to close <{name}"));
                        }
                        return Ok((at, Event::Start { name, attrs, empty: true }));
                    }
                    Some(_) => {
                        let apos = self.pos();
                        if !had_ws {
                            return self.err(apos, "expected whitespace before an attribute");
                        }
                        let aname = self.name()?;
                        self.skip_ws();
                        if self.bump() != Some(b'=') {
                            return self.err(self.pos(), format!("expected '=' after attribute '{aname}'"));
                        }
                        self.skip_ws();
                        let value = self.quoted(aname)?;
                        if attrs.iter().any(|(n, _)| *n == aname) {
                            return self.err(apos, format!("duplicate attribute '{aname}'"));
                        }
                        attrs.push((aname, value));
                    }
                }
            }
        }
    }

    fn quoted(&mut self, aname: &str) -> Result<String, SyntaxError> {
        let at = self.pos();
        let q = match self.bump() {
            Some(q @ (b'"' | b'\'')) => q,
            _ => return self.err(at, format!("expected a quoted value for attribute '{aname}'")),
        };
        let start = self.pos;
        loop {
            match self.peek() {
                None => return self.err(at, format!("unterminated value of attribute '{aname}'")),
                Some(b'<') => return self.err(self.pos(), format!("'<' in the value of attribute '{aname}'")),
                Some(c) if c == q => break,
                Some(_) => {
                    self.bump();
                }
            }
        }
        let raw = &self.s[start..self.pos];
        self.bump();
        let Ok(raw) = std::str::from_utf8(raw) else {
            return self.err(at, format!("value of attribute '{aname}' is not valid UTF-8"));
        };
        unescape(raw).map_err(|m| SyntaxError { pos: at, msg: m })
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or_else(|| format!("unterminated entity in '{raw}'"))?;
        let ent = &after[..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x") {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32).ok_or_else(|| format!("unknown entity '&{ent};'"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Result<Vec<Event<'_>>, SyntaxError> {
        let mut t = Tokenizer::new(s.as_bytes());
        let mut v = Vec::new();
        loop {
            let (_, e) = t.next_event()?;
            if e == Event::Eof {
                return Ok(v);
            }
            v.push(e);
        }
    }

    #[test]
    fn tokenizes_tags_and_attributes() {
        let v =
            all("<?xml version=\"1.0\"?>\n<!-- hi -->\n<a x=\"1\" y='&lt;2&#65;'>\n  <b z=\"3\"/>\n</a>\n").unwrap();
        assert_eq!(
            v,
            vec![
                Event::Start { name: "a", attrs: vec![("x", "1".into()), ("y", "<2A".into())], empty: false },
                Event::Start { name: "b", attrs: vec![("z", "3".into())], empty: true },
                Event::End { name: "a" },
            ]
        );
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = all("<a>\n  <b x=1/>\n</a>").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 8 });
        assert!(e.msg.contains("quoted value"), "{}", e.msg);
        let e = all("<a>\n\n  hello\n</a>").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 3 });
        let e = all("<a x=\"1\" x=\"2\"/>").unwrap_err();
        assert!(e.msg.contains("duplicate"));
        let e = all("<a\n x=\"1\"").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, col: 1 });
        assert!(e.msg.contains("unterminated tag"));
        assert!(all("<!-- open").is_err());
        assert!(all("<a x=\"&bogus;\"/>").is_err());
    }
}
