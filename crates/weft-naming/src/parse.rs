//! The dtab parser: pure, over a `&str`, with line/column error positions.
//!
//! ```text
//! dtab     := [dentry (';' dentry)* [';']]
//! dentry   := prefix '=>' tree
//! prefix   := '/' | ('/' (label | '*'))+
//! tree     := union ('|' union)*
//! union    := weighted ('&' weighted)*
//! weighted := [number '*'] simple
//! simple   := path | '(' tree ')' | '!' | '~' | '$'
//! ```
//! Whitespace and `#` comments (to the end of the line) may appear between tokens.

use crate::path::is_label_byte;
use crate::{Dentry, Dtab, NameTree, Path, Prefix, PrefixElem, Weighted};

/// Nesting depth of parentheses the parser accepts, so hostile input cannot overflow the stack.
const MAX_NESTING: usize = 64;

/// A dtab that could not be parsed: where, what was expected and what was found.
///
/// Displays as `line L, column C: expected ..., found ...`. Lines and columns are 1-based;
/// columns count characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: expected {expected}, found {found}")]
pub struct DtabError {
    line: usize,
    column: usize,
    expected: &'static str,
    found: String,
}

impl DtabError {
    /// Line of the error, 1-based.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Column of the error, 1-based, in characters.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What the parser expected at that point, e.g. `'=>'`.
    pub fn expected(&self) -> &str {
        self.expected
    }
}

pub(crate) fn read_dtab(s: &str) -> Result<Dtab, DtabError> {
    let mut p = Parser::new(s);
    let mut dentries = Vec::new();
    p.skip_ws();
    if p.at_end() {
        return Ok(Dtab::empty());
    }
    loop {
        dentries.push(p.dentry()?);
        p.skip_ws();
        match p.peek() {
            None => break,
            Some(b';') => {
                p.pos += 1;
                p.skip_ws();
                if p.at_end() {
                    break;
                }
            }
            Some(_) => return Err(p.error("';', '|', '&' or end of input")),
        }
    }
    Ok(dentries.into_iter().collect())
}

pub(crate) fn read_dentry(s: &str) -> Result<Dentry, DtabError> {
    let mut p = Parser::new(s);
    p.skip_ws();
    let d = p.dentry()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("'|', '&' or end of input"));
    }
    Ok(d)
}

pub(crate) fn read_tree(s: &str) -> Result<NameTree<Path>, DtabError> {
    let mut p = Parser::new(s);
    let t = p.tree()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("'|', '&' or end of input"));
    }
    Ok(t)
}

impl NameTree<Path> {
    /// Parses a tree in dtab syntax, e.g. `/a | 2 * /b & /c` (the right side of a dentry).
    /// Errors as for [`Dtab::read`].
    pub fn read(s: &str) -> Result<NameTree<Path>, DtabError> {
        read_tree(s)
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Parser<'a> {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Skips whitespace and `#` comments.
    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if b == b'#' {
                while let Some(b) = self.peek() {
                    if b == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn error(&self, expected: &'static str) -> DtabError {
        let before = self.src.get(..self.pos).unwrap_or(self.src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        let found = match self.src.get(self.pos..).and_then(|s| s.chars().next()) {
            None => "end of input".to_string(),
            Some(c) => format!("{:?}", c),
        };
        DtabError {
            line,
            column,
            expected,
            found,
        }
    }

    fn dentry(&mut self) -> Result<Dentry, DtabError> {
        let prefix = self.prefix()?;
        self.skip_ws();
        if !self.src[self.pos..].starts_with("=>") {
            return Err(self.error("'=>'"));
        }
        self.pos += 2;
        let dst = self.tree()?;
        Ok(Dentry { prefix, dst })
    }

    fn prefix(&mut self) -> Result<Prefix, DtabError> {
        if self.peek() != Some(b'/') {
            return Err(self.error("a prefix starting with '/'"));
        }
        let mut elems = Vec::new();
        while self.peek() == Some(b'/') {
            self.pos += 1;
            if self.peek() == Some(b'*') {
                self.pos += 1;
                if self.peek().is_some_and(|b| is_label_byte(b) || b == b'\\') {
                    return Err(self.error("'/' or '=>' after '*'"));
                }
                elems.push(PrefixElem::Any);
                continue;
            }
            let label = self.label()?;
            if label.is_empty() {
                if elems.is_empty() && self.peek() != Some(b'/') {
                    break; // `/` alone: the empty prefix
                }
                return Err(self.error("a label or '*'"));
            }
            elems.push(PrefixElem::Label(label.into_boxed_slice()));
        }
        Ok(Prefix::new(elems))
    }

    fn path(&mut self) -> Result<Path, DtabError> {
        let mut labels = Vec::new();
        while self.peek() == Some(b'/') {
            self.pos += 1;
            let label = self.label()?;
            if label.is_empty() {
                if labels.is_empty() && self.peek() != Some(b'/') {
                    break; // `/` alone: the empty path
                }
                return Err(self.error("a label"));
            }
            labels.push(label);
        }
        Ok(Path::from_labels(labels))
    }

    /// Label bytes and `\xNN` escapes, possibly none.
    fn label(&mut self) -> Result<Vec<u8>, DtabError> {
        let mut label = Vec::new();
        while let Some(b) = self.peek() {
            if is_label_byte(b) {
                label.push(b);
                self.pos += 1;
            } else if b == b'\\' {
                let hex = |i: usize| self.bytes.get(i).and_then(|b| (*b as char).to_digit(16));
                if self.bytes.get(self.pos + 1) != Some(&b'x') {
                    self.pos += 1;
                    return Err(self.error("'x' after '\\' (escapes are \\xNN)"));
                }
                match (hex(self.pos + 2), hex(self.pos + 3)) {
                    (Some(hi), Some(lo)) => {
                        // Both digits are < 16, so the value fits in a byte.
                        label.push((hi * 16 + lo) as u8);
                        self.pos += 4;
                    }
                    (None, _) => {
                        self.pos += 2;
                        return Err(self.error("a hex digit"));
                    }
                    (Some(_), None) => {
                        self.pos += 3;
                        return Err(self.error("a hex digit"));
                    }
                }
            } else {
                break;
            }
        }
        Ok(label)
    }

    fn tree(&mut self) -> Result<NameTree<Path>, DtabError> {
        let mut alts = vec![self.union()?];
        loop {
            self.skip_ws();
            if self.peek() != Some(b'|') {
                break;
            }
            self.pos += 1;
            alts.push(self.union()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(NameTree::Neg)
        } else {
            NameTree::Alt(alts)
        })
    }

    fn union(&mut self) -> Result<NameTree<Path>, DtabError> {
        let (first, explicit) = self.weighted()?;
        let mut ws = vec![first];
        loop {
            self.skip_ws();
            if self.peek() != Some(b'&') {
                break;
            }
            self.pos += 1;
            ws.push(self.weighted()?.0);
        }
        // A single branch without a weight is just that branch; with an explicit weight it
        // stays a one-branch union so that it prints back the same.
        Ok(if ws.len() == 1 && !explicit {
            ws.pop().map_or(NameTree::Neg, |w| w.tree)
        } else {
            NameTree::Union(ws)
        })
    }

    /// A union branch and whether its weight was written.
    fn weighted(&mut self) -> Result<(Weighted<Path>, bool), DtabError> {
        self.skip_ws();
        if self.peek().is_some_and(|b| b.is_ascii_digit() || b == b'.') {
            let weight = self.number()?;
            self.skip_ws();
            if self.peek() != Some(b'*') {
                return Err(self.error("'*' after a weight"));
            }
            self.pos += 1;
            let tree = self.simple()?;
            return Ok((Weighted { weight, tree }, true));
        }
        Ok((Weighted::new(self.simple()?), false))
    }

    fn number(&mut self) -> Result<f64, DtabError> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            if self.pos == frac {
                return Err(self.error("a digit"));
            }
        }
        match self.src[start..self.pos].parse::<f64>() {
            Ok(w) if w.is_finite() => Ok(w),
            _ => {
                self.pos = start;
                Err(self.error("a finite weight"))
            }
        }
    }

    fn simple(&mut self) -> Result<NameTree<Path>, DtabError> {
        self.skip_ws();
        match self.peek() {
            Some(b'/') => Ok(NameTree::Leaf(self.path()?)),
            Some(b'~') => {
                self.pos += 1;
                Ok(NameTree::Neg)
            }
            Some(b'!') => {
                self.pos += 1;
                Ok(NameTree::Fail)
            }
            Some(b'$') => {
                self.pos += 1;
                Ok(NameTree::Empty)
            }
            Some(b'(') => {
                if self.depth >= MAX_NESTING {
                    return Err(self.error("less nesting of '('"));
                }
                self.pos += 1;
                self.depth += 1;
                let t = self.tree()?;
                self.depth -= 1;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    return Err(self.error("')', '|' or '&'"));
                }
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.error("a path, '(', '!', '~' or '$'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }
    fn leaf(s: &str) -> NameTree<Path> {
        NameTree::Leaf(p(s))
    }
    fn err(s: &str) -> DtabError {
        Dtab::read(s).expect_err(s)
    }

    #[test]
    fn parses_simple_dtab() {
        let d = Dtab::read("/svc => /#/fs; /svc/books=>/$/inet/127.0.0.1/8080;").unwrap();
        assert_eq!(d.dentries().len(), 2);
        assert_eq!(d.dentries()[0].prefix, Prefix::from(p("/svc")));
        assert_eq!(d.dentries()[0].dst, leaf("/#/fs"));
        assert_eq!(d.dentries()[1].dst, leaf("/$/inet/127.0.0.1/8080"));
        assert!(Dtab::read("").unwrap().is_empty());
        assert!(Dtab::read("  # only a comment\n\n").unwrap().is_empty());
    }

    #[test]
    fn comments_and_newlines() {
        let text = "# routing\n/k8s => /#/fs; # the namer\n\n/svc => /k8s  # trailing\n;\n";
        let d = Dtab::read(text).unwrap();
        assert_eq!(d, Dtab::read("/k8s=>/#/fs;/svc=>/k8s").unwrap());
        // Inside a path '#' is a label character.
        let d = Dtab::read("/a => /b#c").unwrap();
        assert_eq!(d.dentries()[0].dst, leaf("/b#c"));
    }

    #[test]
    fn operators_and_weights() {
        let d = Dtab::read("/a => /b | 9 * /c & 1*/d | (/e | ~) & 0.5 * !").unwrap();
        let want = NameTree::Alt(vec![
            leaf("/b"),
            NameTree::Union(vec![
                Weighted {
                    weight: 9.0,
                    tree: leaf("/c"),
                },
                Weighted {
                    weight: 1.0,
                    tree: leaf("/d"),
                },
            ]),
            NameTree::Union(vec![
                Weighted::new(NameTree::Alt(vec![leaf("/e"), NameTree::Neg])),
                Weighted {
                    weight: 0.5,
                    tree: NameTree::Fail,
                },
            ]),
        ]);
        assert_eq!(d.dentries()[0].dst, want);
        let d = Dtab::read("/a => .25*$").unwrap();
        assert_eq!(
            d.dentries()[0].dst,
            NameTree::Union(vec![Weighted {
                weight: 0.25,
                tree: NameTree::Empty
            }])
        );
    }

    #[test]
    fn wildcards_and_root_prefix() {
        let d = Dtab::read("/svc/*/books => /x; / => /y").unwrap();
        assert_eq!(
            d.dentries()[0].prefix.elems(),
            &[
                PrefixElem::Label(b"svc"[..].into()),
                PrefixElem::Any,
                PrefixElem::Label(b"books"[..].into())
            ]
        );
        assert!(d.dentries()[1].prefix.is_empty());
        assert!(d.dentries()[0].prefix.matches(&p("/svc/any/books/x")));
        assert!(!d.dentries()[0].prefix.matches(&p("/svc/any/cats")));
        assert_eq!(d.to_string(), "/svc/*/books => /x; / => /y");
    }

    #[test]
    fn round_trips() {
        for text in [
            "/svc => /#/fs",
            "/svc/books => 9*/k8s/books-v1 & 1*/k8s/books-v2",
            "/a => /b | (/c | /d) | ~",
            "/a => (/b | /c) & 2*(/d & /e) | !",
            "/a => 1*/b; /c => $; /d => /$/nil; / => /",
            r"/a\x20b/* => /x\x2a/y",
            "/a => 0.1*/b & 1e3",
        ] {
            let Ok(d) = Dtab::read(text) else {
                assert!(text.ends_with("1e3"));
                continue;
            };
            let printed = d.to_string();
            assert_eq!(
                Dtab::read(&printed).unwrap(),
                d,
                "{text} printed as {printed}"
            );
            let pretty = format!("{d:#}");
            assert_eq!(Dtab::read(&pretty).unwrap(), d, "{pretty}");
        }
        assert_eq!(
            Dtab::read("/svc/books => 9 * /k8s/books-v1 & 1 * /k8s/books-v2")
                .unwrap()
                .to_string(),
            "/svc/books => 9*/k8s/books-v1 & 1*/k8s/books-v2"
        );
    }

    #[test]
    fn errors_name_line_column_and_expectation() {
        let e = err("/svc => /#/fs;\n/svc /books => /x");
        assert_eq!((e.line(), e.column()), (2, 6));
        assert_eq!(e.to_string(), "line 2, column 6: expected '=>', found '/'");
        let e = err("/a => ");
        assert_eq!(
            e.to_string(),
            "line 1, column 7: expected a path, '(', '!', '~' or '$', found end of input"
        );
        let e = err("svc => /a");
        assert_eq!(
            (e.line(), e.column(), e.expected()),
            (1, 1, "a prefix starting with '/'")
        );
        let e = err("/a => /b /c");
        assert_eq!((e.line(), e.column()), (1, 10));
        let e = err("/a => (/b | /c");
        assert_eq!(e.expected(), "')', '|' or '&'");
        let e = err("/a => 3 /b");
        assert_eq!(e.expected(), "'*' after a weight");
        let e = err("/a//b => /c");
        assert_eq!((e.column(), e.expected()), (4, "a label or '*'"));
        let e = err("/a => /b\\x4g");
        assert_eq!((e.column(), e.expected()), (12, "a hex digit"));
        let e = err("/a => /b;;");
        assert_eq!(e.column(), 10);
        let e = err("/é => /b");
        assert_eq!(e.found, "'é'");
        assert_eq!(err("/* => /a*").column(), 9);
        assert_eq!(err("/*x => /a").expected(), "'/' or '=>' after '*'");
        let deep = format!("/a => {}/b{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(err(&deep).expected(), "less nesting of '('");
    }

    #[test]
    fn lookup_orders_matches_last_to_first() {
        let d = Dtab::read("/svc => /a; /svc/books => /b; /other => /c; /svc/* => /d").unwrap();
        assert_eq!(d.lookup(&p("/nope")), NameTree::Neg);
        assert_eq!(d.lookup(&p("/svc")), leaf("/a"));
        assert_eq!(
            d.lookup(&p("/svc/books/x")),
            NameTree::Alt(vec![leaf("/d/x"), leaf("/b/x"), leaf("/a/books/x")])
        );
        let d = Dtab::read("/svc => /x | 2*/y & ~").unwrap();
        assert_eq!(
            d.lookup(&p("/svc/z")),
            NameTree::read("/x/z | 2*/y/z & ~").unwrap()
        );
    }

    #[test]
    fn concat_puts_other_last() {
        let a = Dtab::read("/svc => /a").unwrap();
        let b = Dtab::read("/svc => /b").unwrap();
        let ab = a.concat(&b);
        assert_eq!(ab.to_string(), "/svc => /a; /svc => /b");
        assert_eq!(
            ab.lookup(&p("/svc")),
            NameTree::Alt(vec![leaf("/b"), leaf("/a")])
        );
        assert_eq!(Dtab::empty().concat(&a), a);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "/", "=>", "/ =>", "/=>/", "(", "/a=>(", "/a=>1.", "/a=>1.*/b", "\\", "/a=>/\\", "/a=>/\\x",
            "/a=>99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999*/b",
            "\u{0}", "/a=>/b\u{fffd}", "#\n#", "/a => /b # c ; /d => /e",
        ] {
            let _ = Dtab::read(s);
        }
        assert!(Dtab::read("/=>/").is_ok());
        assert_eq!(Dtab::read("/a=>1.").unwrap_err().expected(), "a digit");
    }
}

#[cfg(test)]
#[path = "parse_props.rs"]
mod props;
