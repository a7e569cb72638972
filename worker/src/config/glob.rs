//! Executable patterns: OBI's glob syntax (gobwas: `*`, `?`, classes,
//! `{a,b}` alternatives), compiled to a linear-time `regex`, and OBI's older
//! regular expressions; both behind [`ExePattern`], as selectors use them.

use regex::Regex;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::values::Text;

const GLOB_HINT: &str = "expected e.g. /usr/bin/* or *nginx";

/// A glob with OBI's (gobwas) syntax: `*` any characters (also `/`), `?` one
/// character, `[abc]`, `[a-z]`, `[!abc]`, `{alt1,alt2}` (nestable) and `\`
/// escapes. Matches the whole string.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: Regex,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, String> {
        let body = glob_to_regex(pattern)?;
        let regex = Regex::new(&format!("(?s)^(?:{body})$")).map_err(|e| regex_reason(&e))?;
        Ok(Self {
            pattern: pattern.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

fn push_literal(out: &mut String, c: char) {
    out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
}

fn glob_to_regex(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut open_braces = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                out.push_str(".*");
                while chars.get(i + 1) == Some(&'*') {
                    i += 1;
                }
            }
            '?' => out.push('.'),
            '[' => i = glob_class(&chars, i, &mut out)?,
            '{' => {
                open_braces += 1;
                out.push_str("(?:");
            }
            ',' if open_braces > 0 => out.push('|'),
            '}' if open_braces > 0 => {
                open_braces -= 1;
                out.push(')');
            }
            '\\' => {
                i += 1;
                let escaped = chars.get(i).ok_or("ends with a lone \\")?;
                push_literal(&mut out, *escaped);
            }
            other => push_literal(&mut out, other),
        }
        i += 1;
    }
    if open_braces > 0 {
        return Err("a { has no closing }".into());
    }
    Ok(out)
}

/// Translates the class starting at `chars[start] == '['`; returns the index of its `]`.
fn glob_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut body = String::new();
    loop {
        let c = *chars.get(i).ok_or("a [ has no closing ]")?;
        match c {
            ']' if body.is_empty() => return Err("[] matches nothing".into()),
            ']' => break,
            '\\' => {
                i += 1;
                push_literal(&mut body, *chars.get(i).ok_or("ends with a lone \\")?);
            }
            low if chars.get(i + 1) == Some(&'-')
                && chars.get(i + 2).is_some_and(|&h| h != ']') =>
            {
                let high = chars[i + 2];
                if low > high {
                    return Err(format!("range {low}-{high} is reversed"));
                }
                push_literal(&mut body, low);
                body.push('-');
                push_literal(&mut body, high);
                i += 2;
            }
            other => push_literal(&mut body, other),
        }
        i += 1;
    }
    out.push('[');
    if negated {
        out.push('^');
    }
    out.push_str(&body);
    out.push(']');
    Ok(i)
}

/// The last line of a regex error (`error: unclosed group`), without the caret drawing.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_owned))
        .unwrap_or(text)
}

/// OBI's regex form; the error shows what a valid one looks like.
pub(super) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        format!(
            "{pattern:?} is not a valid regular expression: {} (expected e.g. ^/usr/bin/ or nginx$)",
            regex_reason(&e)
        )
    })
}

/// A glob; the error names the pattern and shows what a valid one looks like.
pub(super) fn compile_glob(pattern: &str) -> Result<Glob, String> {
    Glob::new(pattern).map_err(|e| format!("{pattern:?} is not a valid glob: {e} ({GLOB_HINT})"))
}

/// How a selector matches the executable path: OBI's glob, or its older regex
/// (unanchored, like Go's `MatchString`).
#[derive(Debug, Clone)]
pub enum ExePattern {
    Glob(Glob),
    Regex(Regex),
}

impl ExePattern {
    pub fn matches(&self, exe_path: &str) -> bool {
        match self {
            Self::Glob(glob) => glob.matches(exe_path),
            Self::Regex(regex) => regex.is_match(exe_path),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Glob(glob) => glob.as_str(),
            Self::Regex(regex) => regex.as_str(),
        }
    }
}

impl PartialEq for ExePattern {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Self::Glob(_), Self::Glob(_)) | (Self::Regex(_), Self::Regex(_))
        ) && self.as_str() == other.as_str()
    }
}

/// `exe_path` in `instrument` lists: a glob.
#[derive(Debug, Clone)]
pub(super) struct GlobField(pub(super) ExePattern);

impl<'de> Deserialize<'de> for GlobField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        compile_glob(&text)
            .map(|g| GlobField(ExePattern::Glob(g)))
            .map_err(de::Error::custom)
    }
}

/// `exe_path` in the deprecated `services` lists, and `exe_path_regexp`: a regex.
#[derive(Debug, Clone)]
pub(super) struct RegexField(pub(super) ExePattern);

impl<'de> Deserialize<'de> for RegexField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(text) = Text::deserialize(d)?;
        compile_regex(&text)
            .map(|r| RegexField(ExePattern::Regex(r)))
            .map_err(de::Error::custom)
    }
}

/// Either kind of `exe_path` field, for the generic selector entry.
pub(super) trait ExeField {
    fn into_pattern(self) -> ExePattern;
}

impl ExeField for GlobField {
    fn into_pattern(self) -> ExePattern {
        self.0
    }
}

impl ExeField for RegexField {
    fn into_pattern(self) -> ExePattern {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_obi_syntax() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "/usr/bin/anything", true),
            ("/usr/bin/*", "/usr/bin/nginx", true),
            ("/usr/bin/*", "/usr/sbin/nginx", false),
            ("*nginx", "/usr/sbin/nginx", true),
            ("nginx", "/usr/sbin/nginx", false),
            ("/bin/?ython", "/bin/python", true),
            ("/bin/[pj]ava", "/bin/java", true),
            ("/bin/[!pj]ava", "/bin/java", false),
            ("/bin/[a-c]x", "/bin/bx", true),
            ("*otelcol-contrib[!/]*", "/bin/otelcol-contrib2", true),
            ("*otelcol-contrib[!/]*", "/bin/otelcol-contrib/x", false),
            ("{*beyla,*obi}", "/opt/obi", true),
            ("{*beyla,*obi}", "/opt/nginx", false),
            ("/a/{b,c{d,e}}", "/a/ce", true),
            ("/a\\*b", "/a*b", true),
            ("/a\\*b", "/axb", false),
            ("/a.b", "/axb", false),
        ];
        for (pattern, text, expected) in cases {
            let glob = Glob::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(glob.matches(text), *expected, "{pattern} vs {text}");
        }
        for bad in ["/bin/[abc", "{a,b", "a\\", "[]", "[z-a]"] {
            assert!(Glob::new(bad).is_err(), "{bad} accepted");
        }
    }
}
