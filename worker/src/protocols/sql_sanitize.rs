//! SQL text → what the OpenTelemetry database conventions want from it:
//! `db.query.text` with every literal replaced by `?` and comments left out,
//! `db.operation.name` (the first keyword) and `db.collection.name` (the one
//! table of a simple statement: `SELECT … FROM t`, `INSERT INTO t`,
//! `UPDATE t`, `DELETE FROM t`).
//!
//! A small lexer, not a parser: it knows comments (`--`, `#` for MySQL,
//! nested `/* */`), string literals (`'…'` with `''`, `E'…'`, `X'…'`, `B'…'`,
//! `N'…'`, MySQL's `"…"` and backslash escapes), dollar-quoted strings
//! (`$tag$…$tag$`), numbers, hex (`0x1F`) and bit literals, quoted
//! identifiers (`"…"` in PostgreSQL, `` `…` ``), and placeholders (`$1`, `?`,
//! `:name`, `@var`) which are kept. Text cut by the capture is handled: an
//! unterminated literal or comment ends the text.

#![forbid(unsafe_code)]

/// How the server reads quotes and backslashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    /// `"…"` is an identifier; backslash escapes only in `E'…'`.
    Postgres,
    /// `"…"` is a string; backslash escapes in strings; `#` starts a comment.
    Mysql,
}

/// What the conventions ask for, taken from one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SqlSummary {
    /// The text with literals replaced by `?`, comments out, spaces collapsed.
    pub sanitized: String,
    /// The first keyword, upper case (`SELECT`, `INSERT`…).
    pub operation: Option<String>,
    /// The table when the statement names exactly one.
    pub collection: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    QuotedIdent,
    Literal,
    Placeholder,
    Comment,
    Space,
    Punct,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// End of a quoted run opened at `start`: a doubled `quote` is an escaped one,
/// and with `backslash` so is `\x`. Unterminated → end of input.
fn quoted_end(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Length of a `$tag$` opener at `start`, if there is one.
fn dollar_tag_len(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        if i == start + 1 && bytes[i].is_ascii_digit() {
            return None; // `$1` is a placeholder
        }
        i += 1;
    }
    (bytes.get(i) == Some(&b'$')).then_some(i + 1 - start)
}

fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if bytes[i] == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X' | b'b' | b'B')) {
        i += 2;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b'_') {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'e' | b'E') {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// Splits `sql` into tokens. Never fails: odd bytes become punctuation.
fn tokens(sql: &str, dialect: SqlDialect) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    // About one token in five bytes of SQL: room for most statements at once.
    let mut out = Vec::with_capacity(bytes.len() / 5 + 4);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let (kind, end) = if b.is_ascii_whitespace() {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            (Kind::Space, j)
        } else if (b == b'-' && next == Some(b'-')) || (b == b'#' && dialect == SqlDialect::Mysql) {
            let j = bytes[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |p| i + p);
            (Kind::Comment, j)
        } else if b == b'/' && next == Some(b'*') {
            // PostgreSQL nests block comments; MySQL does not, and nesting costs nothing there.
            let mut depth = 0usize;
            let mut j = i;
            loop {
                if j + 1 >= bytes.len() {
                    j = bytes.len();
                    break;
                }
                if bytes[j] == b'/' && bytes[j + 1] == b'*' {
                    depth += 1;
                    j += 2;
                } else if bytes[j] == b'*' && bytes[j + 1] == b'/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            (Kind::Comment, j)
        } else if b == b'\'' {
            (
                Kind::Literal,
                quoted_end(bytes, i, b'\'', dialect == SqlDialect::Mysql),
            )
        } else if b == b'"' {
            match dialect {
                SqlDialect::Postgres => (Kind::QuotedIdent, quoted_end(bytes, i, b'"', false)),
                SqlDialect::Mysql => (Kind::Literal, quoted_end(bytes, i, b'"', true)),
            }
        } else if b == b'`' {
            (Kind::QuotedIdent, quoted_end(bytes, i, b'`', false))
        } else if b == b'$' {
            if let Some(tag_len) = dollar_tag_len(bytes, i) {
                let tag = &bytes[i..i + tag_len];
                let body = i + tag_len;
                let end = bytes[body..]
                    .windows(tag_len)
                    .position(|w| w == tag)
                    .map_or(bytes.len(), |p| body + p + tag_len);
                (Kind::Literal, end)
            } else {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                (
                    if j > i + 1 {
                        Kind::Placeholder
                    } else {
                        Kind::Punct
                    },
                    j,
                )
            }
        } else if b == b'?' {
            (Kind::Placeholder, i + 1)
        } else if (b == b':' || b == b'@') && next.is_some_and(is_ident_start) {
            if b == b':' && out.last().is_some_and(|t: &Token| t.text == ":") {
                (Kind::Punct, i + 1) // `::type` cast
            } else {
                let mut j = i + 1;
                while j < bytes.len() && is_ident_char(bytes[j]) {
                    j += 1;
                }
                (Kind::Placeholder, j)
            }
        } else if b.is_ascii_digit() || (b == b'.' && next.is_some_and(|c| c.is_ascii_digit())) {
            (Kind::Literal, number_end(bytes, i))
        } else if is_ident_start(b) {
            // A one-letter prefix glued to a quote is a literal: E'…', X'…', B'…', N'…'.
            if next == Some(b'\'')
                && matches!(b, b'e' | b'E' | b'x' | b'X' | b'b' | b'B' | b'n' | b'N')
            {
                let backslash = matches!(b, b'e' | b'E') || dialect == SqlDialect::Mysql;
                (Kind::Literal, quoted_end(bytes, i + 1, b'\'', backslash))
            } else if (b == b'u' || b == b'U')
                && next == Some(b'&')
                && bytes.get(i + 2) == Some(&b'\'')
            {
                (Kind::Literal, quoted_end(bytes, i + 2, b'\'', false))
            } else {
                let mut j = i + 1;
                while j < bytes.len() && is_ident_char(bytes[j]) {
                    j += 1;
                }
                (Kind::Word, j)
            }
        } else {
            // One char of punctuation (may be a multi-byte char: step over it whole).
            let mut j = i + 1;
            while j < bytes.len() && !sql.is_char_boundary(j) {
                j += 1;
            }
            (Kind::Punct, j)
        };
        let end = end.min(bytes.len()).max(i + 1);
        // Keep slices on char boundaries (a literal cut by the capture may end mid-char).
        let mut end = end;
        while end < bytes.len() && !sql.is_char_boundary(end) {
            end += 1;
        }
        out.push(Token {
            kind,
            text: &sql[i..end],
        });
        i = end;
    }
    out
}

/// Splits a simple-query string into its statements (on `;` outside literals
/// and comments), leaving out empty ones.
pub fn split_statements(sql: &str, dialect: SqlDialect) -> Vec<&str> {
    let mut statements = Vec::new();
    let (mut start, mut offset) = (0, 0);
    // Whether the statement being read has a token besides spaces and comments.
    let mut significant = false;
    for token in tokens(sql, dialect) {
        let end = offset + token.text.len();
        if token.kind == Kind::Punct && token.text == ";" {
            if significant {
                statements.push(&sql[start..offset]);
            }
            (start, significant) = (end, false);
        } else if !matches!(token.kind, Kind::Space | Kind::Comment) {
            significant = true;
        }
        offset = end;
    }
    if significant {
        statements.push(&sql[start..]);
    }
    statements
}

fn unquote(token: &Token) -> String {
    match token.kind {
        Kind::QuotedIdent => {
            // The closing quote may have been cut by the capture.
            let quote = if token.text.starts_with('`') {
                '`'
            } else {
                '"'
            };
            let inner = token.text.strip_prefix(quote).unwrap_or(token.text);
            inner.strip_suffix(quote).unwrap_or(inner).to_string()
        }
        _ => token.text.to_string(),
    }
}

/// A table name at `tokens[i..]` (maybe `schema.table`), and the index past it.
fn table_at(tokens: &[Token], mut i: usize) -> Option<(String, usize)> {
    let first = tokens.get(i)?;
    if !matches!(first.kind, Kind::Word | Kind::QuotedIdent) {
        return None;
    }
    let mut name = unquote(first);
    i += 1;
    while tokens.get(i).is_some_and(|t| t.text == ".")
        && tokens
            .get(i + 1)
            .is_some_and(|t| matches!(t.kind, Kind::Word | Kind::QuotedIdent))
    {
        name.push('.');
        name.push_str(&unquote(&tokens[i + 1]));
        i += 2;
    }
    Some((name, i))
}

fn is_kw(token: &Token, keyword: &str) -> bool {
    token.kind == Kind::Word && token.text.eq_ignore_ascii_case(keyword)
}

/// The one table a statement names, if exactly one.
fn single_collection(tokens: &[Token], operation: &str) -> Option<String> {
    let mut tables: Vec<String> = Vec::new();
    let mut many = false;
    // Per paren depth: whether a SELECT opened it (a subquery, whose FROM counts).
    let mut select_at_depth: Vec<bool> = vec![true];
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        match token.text {
            "(" => select_at_depth.push(false),
            ")" if select_at_depth.len() > 1 => {
                select_at_depth.pop();
            }
            _ => {}
        }
        if is_kw(token, "SELECT") {
            if let Some(top) = select_at_depth.last_mut() {
                *top = true;
            }
        }
        let counts = select_at_depth.last().copied().unwrap_or(false);
        let names_table = (is_kw(token, "FROM") && counts)
            || is_kw(token, "JOIN")
            || (is_kw(token, "INTO") && operation != "SELECT")
            || (is_kw(token, "UPDATE") && i == 0)
            || (is_kw(token, "TABLE") && i <= 2);
        if names_table {
            let mut j = i + 1;
            // DELETE FROM ONLY t, TRUNCATE TABLE IF EXISTS t.
            while tokens
                .get(j)
                .is_some_and(|t| is_kw(t, "ONLY") || is_kw(t, "IF") || is_kw(t, "EXISTS"))
            {
                j += 1;
            }
            match table_at(tokens, j) {
                // `FROM generate_series(…)`: a function, not a table.
                Some((_, after))
                    if tokens.get(after).is_some_and(|t| t.text == "(")
                        && !is_kw(token, "INTO") =>
                {
                    many = true;
                }
                Some((name, after)) => {
                    if !tables.contains(&name) {
                        tables.push(name);
                    }
                    // `FROM a, b` or `FROM a AS x, b`: more than one table.
                    let mut k = after;
                    while tokens
                        .get(k)
                        .is_some_and(|t| t.kind == Kind::Word && !is_clause_keyword(t))
                    {
                        k += 1;
                    }
                    if tokens.get(k).is_some_and(|t| t.text == ",") && !is_kw(token, "INTO") {
                        many = true;
                    }
                    i = after;
                    continue;
                }
                None => many = true, // FROM (subquery) or a function
            }
        }
        i += 1;
    }
    (!many && tables.len() == 1).then(|| tables.remove(0))
}

fn is_clause_keyword(token: &Token) -> bool {
    const CLAUSES: [&str; 16] = [
        "WHERE",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "HAVING",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "CROSS",
        "ON",
        "SET",
        "VALUES",
        "RETURNING",
    ];
    CLAUSES.iter().any(|c| is_kw(token, c))
}

/// Sanitizes one statement and takes its operation and collection. The
/// sanitized text is cut to at most `max_len` bytes.
pub fn summarize(sql: &str, dialect: SqlDialect, max_len: usize) -> SqlSummary {
    let mut all = tokens(sql, dialect);
    let mut sanitized = String::with_capacity(sql.len().min(max_len));
    let mut pending_space = false;
    for token in &all {
        match token.kind {
            Kind::Space | Kind::Comment => pending_space = !sanitized.is_empty(),
            _ => {
                if pending_space {
                    sanitized.push(' ');
                    pending_space = false;
                }
                sanitized.push_str(if token.kind == Kind::Literal {
                    "?"
                } else {
                    token.text
                });
            }
        }
        if sanitized.len() >= max_len {
            break;
        }
    }
    if sanitized.len() > max_len {
        let mut end = max_len;
        while !sanitized.is_char_boundary(end) {
            end -= 1;
        }
        sanitized.truncate(end);
    }
    // The same tokens without spaces and comments, in place (no second vector).
    all.retain(|t| !matches!(t.kind, Kind::Space | Kind::Comment));
    let significant = all;
    let operation = significant
        .iter()
        .find(|t| t.text != "(")
        .filter(|t| t.kind == Kind::Word)
        .map(|t| t.text.to_ascii_uppercase());
    let collection = operation.as_deref().and_then(|op| {
        if op == "COPY" {
            // `COPY t [(cols)] FROM/TO …`; `COPY (query) TO …` names no single table.
            return table_at(&significant, 1).map(|(name, _)| name);
        }
        matches!(
            op,
            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" | "COPY" | "REPLACE"
        )
        .then(|| single_collection(&significant, op))
        .flatten()
    });
    SqlSummary {
        sanitized,
        operation,
        collection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> SqlSummary {
        summarize(sql, SqlDialect::Postgres, 4096)
    }

    #[test]
    fn literals_become_placeholders() {
        let s = pg("SELECT * FROM users WHERE name = 'O''Brien' AND age > 42 AND score = 1.5e3");
        assert_eq!(
            s.sanitized,
            "SELECT * FROM users WHERE name = ? AND age > ? AND score = ?"
        );
        assert_eq!(s.operation.as_deref(), Some("SELECT"));
        assert_eq!(s.collection.as_deref(), Some("users"));
    }

    #[test]
    fn prefixed_hex_bit_and_dollar_literals() {
        let s =
            pg("insert into t values (E'a\\'b', X'1F', B'0101', $$x;y$$, $tag$z$tag$, 0xFF, $1)");
        assert_eq!(s.sanitized, "insert into t values (?, ?, ?, ?, ?, ?, $1)");
        assert_eq!(s.operation.as_deref(), Some("INSERT"));
        assert_eq!(s.collection.as_deref(), Some("t"));
    }

    #[test]
    fn comments_are_left_out() {
        let s = pg("/* app: x /* nested */ */ SELECT 1 -- the answer\n");
        assert_eq!(s.sanitized, "SELECT ?");
        assert_eq!(s.collection, None);
    }

    #[test]
    fn mysql_strings_and_comments() {
        let s = summarize(
            "SELECT `a` FROM `db`.`t` WHERE x = \"s\\\"q\" # c",
            SqlDialect::Mysql,
            4096,
        );
        assert_eq!(s.sanitized, "SELECT `a` FROM `db`.`t` WHERE x = ?");
        assert_eq!(s.collection.as_deref(), Some("db.t"));
    }

    #[test]
    fn collections_of_simple_statements() {
        assert_eq!(
            pg("UPDATE accounts SET x = 1 WHERE id = 2")
                .collection
                .as_deref(),
            Some("accounts")
        );
        assert_eq!(
            pg("DELETE FROM public.items WHERE id = 1")
                .collection
                .as_deref(),
            Some("public.items")
        );
        assert_eq!(pg("SELECT a FROM t1, t2").collection, None);
        assert_eq!(
            pg("SELECT a FROM t1 JOIN t2 ON t1.id = t2.id").collection,
            None
        );
        assert_eq!(
            pg("SELECT a FROM t WHERE b IN (SELECT c FROM u)").collection,
            None
        );
        assert_eq!(
            pg("SELECT extract(year FROM ts) FROM t")
                .collection
                .as_deref(),
            Some("t")
        );
        assert_eq!(
            pg("SELECT count(*) FROM \"Users\" u WHERE u.id = 3")
                .collection
                .as_deref(),
            Some("Users")
        );
        assert_eq!(
            pg("INSERT INTO t (a, b) VALUES (1, 2)")
                .collection
                .as_deref(),
            Some("t")
        );
        assert_eq!(pg("BEGIN").operation.as_deref(), Some("BEGIN"));
        assert_eq!(pg("SELECT 1").collection, None);
        assert_eq!(
            pg("COPY accounts FROM STDIN").collection.as_deref(),
            Some("accounts")
        );
        assert_eq!(pg("COPY (SELECT 1) TO STDOUT").collection, None);
        assert_eq!(pg("SELECT g FROM generate_series(1, 3) g").collection, None);
        assert_eq!(
            pg("INSERT INTO t(a) VALUES (1)").collection.as_deref(),
            Some("t")
        );
    }

    #[test]
    fn cast_and_named_placeholders() {
        assert_eq!(
            pg("SELECT '1'::int, :name").sanitized,
            "SELECT ?::int, :name"
        );
    }

    #[test]
    fn statements_split_outside_literals() {
        let parts = split_statements("SELECT 'a;b'; SELECT 2;; -- x\n", SqlDialect::Postgres);
        assert_eq!(parts, vec!["SELECT 'a;b'", " SELECT 2"]);
    }

    #[test]
    fn cut_text_never_panics() {
        for sql in [
            // Found by the fuzz target: a quoted name cut after a multi-byte char.
            "SELECT * FROM \"\u{e9}",
            "SELECT * FROM `ab\u{e9}",
            "SELECT 'abc",
            "SELECT $$abc",
            "SELECT /* x",
            "é'",
            "E'\\",
            "$",
            "0x",
            "1e",
            "U&'",
        ] {
            let _ = pg(sql);
            let _ = summarize(sql, SqlDialect::Mysql, 3);
        }
        assert!(pg("SELECT 'secret").sanitized.ends_with('?'));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(sql in ".{0,200}", max in 0usize..64) {
            let s = summarize(&sql, SqlDialect::Postgres, max);
            proptest::prop_assert!(s.sanitized.len() <= max);
            let _ = summarize(&sql, SqlDialect::Mysql, max);
            let _ = split_statements(&sql, SqlDialect::Postgres);
        }
    }
}
