//! Reading a secrets rule file: TOML with a line index, so every problem
//! names its file and line; all of a file's problems at once.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
}

pub(super) const FIELDS: &[&str] = &[
    "id",
    "description",
    "regex",
    "keywords",
    "no_keywords_because",
    "secret_group",
    "min_entropy",
    "checksum",
    "generic",
    "examples",
    "counter_examples",
];

/// Byte offsets where each line starts, to turn spans into line numbers.
pub(super) struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines(starts)
    }

    /// 1-based line of a byte offset.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Parse a rule file. `file` names it in errors. Every problem in the
/// file is reported, each with its line.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<Rule>, Vec<RuleError>> {
    let lines = Lines::new(text);
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map_or(0, |s| lines.of(s.start));
            return Err(vec![RuleError {
                file: file.to_owned(),
                line,
                message: format!(
                    "not a rule file: {}; write one `[[rule]]` table per format",
                    e.message()
                ),
            }]);
        }
    };
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for table in raw.rule {
        let rule_line = lines.of(table.span().start);
        let mut p = RuleParser {
            file,
            lines: &lines,
            rule_line,
            errors: &mut errors,
        };
        if let Some(rule) = p.rule(table.into_inner()) {
            if !seen.insert(rule.id.to_string()) {
                errors.push(rule.error(format!(
                    "duplicate rule id `{}`; give each rule its own id",
                    rule.id
                )));
            } else {
                rules.push(rule);
            }
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Reads one `[[rule]]` table, pushing every problem it finds.
pub(super) struct RuleParser<'a> {
    file: &'a str,
    lines: &'a Lines,
    rule_line: usize,
    errors: &'a mut Vec<RuleError>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

impl RuleParser<'_> {
    fn push(&mut self, line: usize, message: String) {
        self.errors.push(RuleError {
            file: self.file.to_owned(),
            line,
            message,
        });
    }

    fn line(&self, v: &Spanned<toml::Value>) -> usize {
        self.lines.of(v.span().start)
    }

    fn string(&mut self, key: &str, v: &Spanned<toml::Value>) -> Option<String> {
        match v.get_ref() {
            toml::Value::String(s) if s.len() <= MAX_FIELD_BYTES => Some(s.clone()),
            toml::Value::String(_) => {
                self.push(
                    self.line(v),
                    format!("`{key}` is longer than {MAX_FIELD_BYTES} bytes; shorten it"),
                );
                None
            }
            other => {
                self.push(
                    self.line(v),
                    format!("`{key}` must be a string, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn strings(&mut self, key: &str, v: &Spanned<toml::Value>) -> Option<Vec<String>> {
        let toml::Value::Array(items) = v.get_ref() else {
            self.push(
                self.line(v),
                format!("`{key}` must be an array of strings, e.g. {key} = [\"...\"]"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                toml::Value::String(s) if s.len() <= MAX_FIELD_BYTES => out.push(s.clone()),
                _ => {
                    self.push(
                        self.line(v),
                        format!(
                            "`{key}` must hold strings of at most {MAX_FIELD_BYTES} bytes; \
                             quote each item"
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn rule(&mut self, table: RawTable) -> Option<Rule> {
        let before = self.errors.len();
        let mut fields: BTreeMap<&'static str, Spanned<toml::Value>> = BTreeMap::new();
        for (key, value) in table {
            match FIELDS.iter().find(|f| **f == key.get_ref().as_str()) {
                Some(name) => {
                    fields.insert(name, value);
                }
                None => {
                    let line = self.lines.of(key.span().start);
                    self.push(
                        line,
                        format!(
                            "unknown field `{}`; a rule's fields are: {}",
                            key.get_ref(),
                            FIELDS.join(", ")
                        ),
                    );
                }
            }
        }
        let rule_line = self.rule_line;
        let id = match fields.get("id") {
            Some(v) => self.string("id", v).and_then(|id| {
                let ok = !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    self.push(
                        self.line(v),
                        format!(
                            "id `{id}` must be 1 to 64 characters of [a-z0-9-], \
                             e.g. `github-pat-classic`"
                        ),
                    );
                }
                ok.then_some(id)
            }),
            None => {
                self.push(rule_line, "rule without `id`; add id = \"...\"".into());
                None
            }
        };
        let description = match fields.get("description") {
            Some(v) => self.string("description", v),
            None => {
                self.push(
                    rule_line,
                    "rule without `description`; say which credential it finds".into(),
                );
                None
            }
        };
        let regex = match fields.get("regex") {
            Some(v) => self.string("regex", v).and_then(|src| match compile(&src) {
                Ok(re) => Some(re),
                Err(e) => {
                    self.push(
                        self.line(v),
                        format!("bad regex: {e}; fix it in Rust `regex` syntax"),
                    );
                    None
                }
            }),
            None => {
                self.push(
                    rule_line,
                    "rule without `regex`; add regex = '''...'''".into(),
                );
                None
            }
        };
        let keywords = match fields.get("keywords") {
            Some(v) => self.strings("keywords", v).and_then(|ks| {
                if ks.iter().any(String::is_empty) {
                    self.push(
                        self.line(v),
                        "`keywords` holds an empty string; remove it".into(),
                    );
                    return None;
                }
                Some(ks.into_iter().map(|k| k.to_ascii_lowercase()).collect())
            }),
            None => Some(Vec::new()),
        };
        let no_keywords_because = match fields.get("no_keywords_because") {
            Some(v) => self.string("no_keywords_because", v),
            None => None,
        };
        if keywords.as_ref().is_some_and(Vec::is_empty) && no_keywords_because.is_none() {
            self.push(
                rule_line,
                "rule without `keywords`; add keywords = [\"prefix\"] (the rule runs only \
                 when one occurs), or no_keywords_because = \"...\" to run it on every text"
                    .into(),
            );
        }
        let secret_group = match fields.get("secret_group") {
            Some(v) => match v.get_ref() {
                toml::Value::Integer(n) if *n >= 0 => usize::try_from(*n).ok(),
                _ => {
                    self.push(
                        self.line(v),
                        "`secret_group` must be a capture group number, 0 or more".into(),
                    );
                    None
                }
            },
            None => Some(0),
        };
        if let (Some(re), Some(g), Some(v)) = (&regex, secret_group, fields.get("secret_group"))
            && g >= re.captures_len()
        {
            self.push(
                self.line(v),
                format!(
                    "`secret_group` is {g} but the regex has {} group(s); \
                     point it at a group of the regex",
                    re.captures_len() - 1
                ),
            );
        }
        let min_entropy = match fields.get("min_entropy") {
            Some(v) => match v.get_ref() {
                toml::Value::Float(f) if (0.0..=8.0).contains(f) => Some(Some(*f)),
                toml::Value::Integer(n) if (0..=8).contains(n) => Some(Some(*n as f64)),
                _ => {
                    self.push(
                        self.line(v),
                        "`min_entropy` must be a number of bits per character, 0 to 8".into(),
                    );
                    None
                }
            },
            None => Some(None),
        };
        let check = match fields.get("checksum") {
            Some(v) => self
                .string("checksum", v)
                .and_then(|name| match Check::parse(&name) {
                    Some(c) => Some(Some(c)),
                    None => {
                        let known: Vec<&str> = Check::NAMES.iter().map(|(n, _)| *n).collect();
                        self.push(
                            self.line(v),
                            format!(
                                "unknown checksum `{name}`; use one of: {}",
                                known.join(", ")
                            ),
                        );
                        None
                    }
                }),
            None => Some(None),
        };
        let generic = match fields.get("generic") {
            Some(v) => match v.get_ref() {
                toml::Value::Boolean(b) => Some(*b),
                _ => {
                    self.push(self.line(v), "`generic` must be true or false".into());
                    None
                }
            },
            None => Some(false),
        };
        let examples = match fields.get("examples") {
            Some(v) => self.strings("examples", v).and_then(|ex| {
                if ex.is_empty() {
                    self.push(
                        self.line(v),
                        "`examples` is empty; add at least one text the rule must find".into(),
                    );
                    return None;
                }
                Some(ex)
            }),
            None => {
                self.push(
                    rule_line,
                    "rule without `examples`; add at least one text the rule must find".into(),
                );
                None
            }
        };
        let counter_examples = match fields.get("counter_examples") {
            Some(v) => self.strings("counter_examples", v),
            None => Some(Vec::new()),
        };
        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            id: Arc::from(id?),
            description: description?,
            regex: regex?,
            keywords: keywords?,
            no_keywords_because,
            secret_group: secret_group?,
            min_entropy: min_entropy?,
            check: check?,
            generic: generic?,
            examples: examples?,
            counter_examples: counter_examples?,
            file: self.file.to_owned(),
            line: rule_line,
        })
    }
}

/// A rule's regex, as the `regex` crate would build it (same syntax,
/// Unicode on, matches on character boundaries, a 1 MiB bound on the
/// compiled program) but without the one-pass DFA: that engine only
/// speeds up capture groups on a match, and matches are rare here, while
/// its tables for the shipped rules took about 5 MiB of every process.
fn compile(src: &str) -> Result<regex_automata::meta::Regex, String> {
    use regex_automata::meta::Regex;
    const LIMIT: Option<usize> = Some(1 << 20);
    Regex::builder()
        .configure(Regex::config().onepass(false).nfa_size_limit(LIMIT))
        .build(src)
        .map_err(|e| match e.syntax_error() {
            Some(syntax) => syntax.to_string(),
            None => e.to_string(),
        })
}
