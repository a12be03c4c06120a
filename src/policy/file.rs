//! The policy file: a YAML mapping of rule names to rules, as oslo.policy's
//! (`"instance:delete": "rule:admin"`); JSON is YAML too. Read with yaml-rust2's event
//! parser, whose markers give the line of every key and value, so that each error names
//! its line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Override;

/// An error: its 1-based line (if known) and what.
pub type FileError = (Option<usize>, String);

/// The rules of a policy file, in file order.
pub fn read(text: &str) -> Result<Vec<Override>, FileError> {
    let mut parser = Parser::new_from_str(text);
    let mut next = move || -> Result<(Event, Marker), FileError> {
        parser.next_token().map_err(|e| {
            (
                Some(e.marker().line()),
                format!("not valid YAML: {}", e.info()),
            )
        })
    };
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut documents = 0;
    loop {
        let (event, mark) = next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(out),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err((Some(mark.line()), "more than one YAML document".into()));
                }
            }
            Event::MappingStart(..) => read_mapping(&mut next, &mut seen, &mut out)?,
            // An empty file, or one with only comments: no rules.
            Event::Scalar(ref s, TScalarStyle::Plain, ..) if s.is_empty() || s == "~" => {}
            _ => {
                return Err((
                    Some(mark.line()),
                    "the file must be a mapping of rule names to rules".into(),
                ))
            }
        }
    }
}

fn read_mapping(
    next: &mut impl FnMut() -> Result<(Event, Marker), FileError>,
    seen: &mut HashMap<String, usize>,
    out: &mut Vec<Override>,
) -> Result<(), FileError> {
    loop {
        let (key, key_mark) = next()?;
        let name = match key {
            Event::MappingEnd => return Ok(()),
            Event::Scalar(s, ..) => s,
            _ => return Err((Some(key_mark.line()), "a rule name must be a string".into())),
        };
        let line = key_mark.line();
        let (value, value_mark) = next()?;
        let rule = match value {
            Event::Scalar(s, style, ..)
                if style != TScalarStyle::Plain || !plain_non_string(&s) =>
            {
                s
            }
            Event::Scalar(s, ..) => {
                return Err((
                    Some(value_mark.line()),
                    format!("rule `{name}`: `{s}` is not a string (quote it)"),
                ))
            }
            _ => {
                return Err((
                    Some(value_mark.line()),
                    format!("rule `{name}`: the rule must be a string"),
                ))
            }
        };
        if let Some(first) = seen.insert(name.clone(), line) {
            return Err((
                Some(line),
                format!("rule `{name}` appears twice (first on line {first})"),
            ));
        }
        out.push(Override { name, rule, line });
    }
}

/// Whether an unquoted scalar is a YAML null, boolean or number rather than a string.
fn plain_non_string(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "" | "~" | "null" | "true" | "false" | ".inf" | "-.inf" | "+.inf" | ".nan"
    ) {
        return true;
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let number = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0o"));
    if let Some(rest) = number {
        return !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit());
    }
    !digits.is_empty()
        && digits.chars().any(|c| c.is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && digits.parse::<f64>().is_ok()
}
