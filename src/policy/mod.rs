//! oslo.policy-style authorization (issue #16): named rules in oslo's rule language,
//! upstream Trove's defaults ([`defaults`]), overridden per name by an operator's policy
//! file ([`file`], `--policy-file`).
//!
//! Everything that can be wrong with a policy is found when it is loaded, so that a
//! mistake stops troved at start-up instead of silently allowing or denying: a rule that
//! does not parse ([`parse`]), a `rule:` reference to a name that is not defined, a cycle
//! of `rule:` references, a credential or target key troved does not have, and a name in
//! the file that is neither upstream's nor referenced by some rule (a typo such as
//! `instance:delet` would otherwise be ignored).

pub mod defaults;
pub mod file;
pub mod parse;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use aggregates::instance::Caller;

use parse::{Check, Piece, Value};

/// The credentials a generic check (`KEY:VALUE`) may name.
pub const CREDENTIAL_KEYS: &[&str] = &["user_id", "project_id", "is_admin"];
/// The target keys a `%(key)s` may name: both are the project of the request's URL.
pub const TARGET_KEYS: &[&str] = &["tenant", "project_id"];
/// How deep `rule:` references may nest (a guard; cycles are refused at load).
const MAX_DEPTH: usize = 32;

/// A rule defined by the operator's file: its text and where.
#[derive(Clone, Debug)]
pub struct Override {
    pub name: String,
    pub rule: String,
    /// 1-based line of the key in the file.
    pub line: usize,
}

/// Why a policy cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("policy file {}{}: {message}", .path.as_ref().map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string()), .line.map_or_else(String::new, |l| format!(", line {l}")))]
pub struct PolicyError {
    pub path: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: HashMap<String, Check>,
}

/// The request's target: the project of its URL.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub project_id: &'a str,
}

/// A rule's definition while loading: parsed, and where it came from.
struct Loaded {
    check: Check,
    line: Option<usize>,
}

impl Policy {
    /// Upstream's defaults alone.
    pub fn defaults() -> Policy {
        Policy::with_overrides(None, &[]).expect("the default rules are valid")
    }

    /// Reads the policy file at `path` over the defaults.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            path: Some(path.to_path_buf()),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        let overrides = file::read(&text).map_err(|(line, message)| PolicyError {
            path: Some(path.to_path_buf()),
            line,
            message,
        })?;
        Policy::with_overrides(Some(path), &overrides)
    }

    /// The defaults, with `overrides` (from the file at `path`) replacing rules by name.
    pub fn with_overrides(
        path: Option<&Path>,
        overrides: &[Override],
    ) -> Result<Policy, PolicyError> {
        let err = |line: Option<usize>, message: String| PolicyError {
            path: path.map(Path::to_path_buf),
            line,
            message,
        };
        let mut rules: HashMap<String, Loaded> = HashMap::new();
        for (name, rule) in defaults::DEFAULTS {
            let check =
                parse::parse(rule).map_err(|e| err(None, format!("default rule `{name}`: {e}")))?;
            rules.insert(name.to_string(), Loaded { check, line: None });
        }
        for o in overrides {
            let check = parse::parse(&o.rule).map_err(|e| {
                err(
                    Some(o.line),
                    format!(
                        "rule `{}` = \"{}\" does not parse: {e}",
                        o.name,
                        shortened(&o.rule)
                    ),
                )
            })?;
            let line = Some(o.line);
            rules.insert(o.name.clone(), Loaded { check, line });
        }
        validate(&rules).map_err(|(line, message)| err(line, message))?;
        Ok(Policy {
            rules: rules.into_iter().map(|(k, v)| (k, v.check)).collect(),
        })
    }

    /// Whether a rule of this name exists.
    pub fn has_rule(&self, name: &str) -> bool {
        self.rules.contains_key(name)
    }

    /// Whether `caller` may perform `rule` on `target`. A name that is not defined is
    /// refused (the route table is checked against the defaults by a test).
    pub fn enforce(&self, rule: &str, caller: &Caller, target: Target<'_>) -> bool {
        let is_admin = self.is_admin(caller);
        let creds = Creds { caller, is_admin };
        self.eval_rule(rule, &creds, target, 0, &mut HashMap::new())
    }

    /// Upstream's `context_is_admin` rule for `caller` (is_admin itself counts as false
    /// while it is computed).
    pub fn is_admin(&self, caller: &Caller) -> bool {
        let creds = Creds {
            caller,
            is_admin: false,
        };
        let target = Target {
            project_id: &caller.project_id,
        };
        self.eval_rule("context_is_admin", &creds, target, 0, &mut HashMap::new())
    }

    /// A named rule's result. `memo` holds the rules already evaluated in this check
    /// (the credentials and the target are the same throughout), so each rule is
    /// evaluated once however often it is referred to: linear, not exponential, in
    /// `rN: "rule:rN+1 or rule:rN+1"` chains.
    fn eval_rule<'p>(
        &'p self,
        name: &str,
        creds: &Creds<'_>,
        target: Target<'_>,
        depth: usize,
        memo: &mut Memo<'p>,
    ) -> bool {
        let Some((key, check)) = self.rules.get_key_value(name) else {
            return false;
        };
        if let Some(&known) = memo.get(key.as_str()) {
            return known;
        }
        // Nesting is bounded at load; this guard is never reached by a loaded policy.
        let result = depth < MAX_DEPTH && self.eval(check, creds, target, depth + 1, memo);
        memo.insert(key, result);
        result
    }

    fn eval<'p>(
        &'p self,
        check: &'p Check,
        creds: &Creds<'_>,
        target: Target<'_>,
        depth: usize,
        memo: &mut Memo<'p>,
    ) -> bool {
        match check {
            Check::Always => true,
            Check::Never => false,
            Check::Rule(name) => self.eval_rule(name, creds, target, depth, memo),
            Check::Role(value) => value.resolve(target).is_some_and(|role| {
                creds
                    .caller
                    .roles
                    .iter()
                    .any(|r| r.to_lowercase() == role.to_lowercase())
            }),
            Check::Generic { key, value } => match (creds.get(key), value.resolve(target)) {
                (Some(have), Some(want)) => have == want,
                _ => false,
            },
            Check::Not(inner) => !self.eval(inner, creds, target, depth, memo),
            Check::And(terms) => terms
                .iter()
                .all(|t| self.eval(t, creds, target, depth, memo)),
            Check::Or(terms) => terms
                .iter()
                .any(|t| self.eval(t, creds, target, depth, memo)),
        }
    }
}

/// The results of the rules evaluated so far in one check.
type Memo<'p> = HashMap<&'p str, bool>;

/// A rule's text for an error message: at most 80 characters.
fn shortened(rule: &str) -> String {
    match rule.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &rule[..cut]),
        None => rule.to_string(),
    }
}

/// What a generic check compares against.
struct Creds<'a> {
    caller: &'a Caller,
    is_admin: bool,
}

impl Creds<'_> {
    /// The credential as oslo compares it: Python's `str()` of the value.
    fn get(&self, key: &str) -> Option<String> {
        match key {
            "user_id" => Some(self.caller.user_id.clone()),
            "project_id" => Some(self.caller.project_id.clone()),
            "is_admin" => Some(if self.is_admin { "True" } else { "False" }.to_string()),
            _ => None,
        }
    }
}

impl Value {
    /// The text to compare, substitutions done (`None`: a key the target lacks).
    fn resolve(&self, target: Target<'_>) -> Option<String> {
        match self {
            Value::Literal(s) => Some(s.clone()),
            Value::Text(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Plain(s) => out.push_str(s),
                        Piece::Target(k) if TARGET_KEYS.contains(&k.as_str()) => {
                            out.push_str(target.project_id)
                        }
                        Piece::Target(_) => return None,
                    }
                }
                Some(out)
            }
        }
    }

    fn target_keys(&self) -> impl Iterator<Item = &str> {
        let pieces = match self {
            Value::Text(p) => p.as_slice(),
            Value::Literal(_) => &[],
        };
        pieces.iter().filter_map(|p| match p {
            Piece::Target(k) => Some(k.as_str()),
            Piece::Plain(_) => None,
        })
    }
}

/// Every check in `check`, depth first.
fn walk<'c>(check: &'c Check, out: &mut Vec<&'c Check>) {
    out.push(check);
    match check {
        Check::Not(inner) => walk(inner, out),
        Check::And(terms) | Check::Or(terms) => terms.iter().for_each(|t| walk(t, out)),
        _ => {}
    }
}

/// The rules `check` refers to, each once, in order of appearance.
fn references(check: &Check) -> Vec<&str> {
    let mut all = Vec::new();
    walk(check, &mut all);
    let mut seen = HashSet::new();
    all.into_iter()
        .filter_map(|c| match c {
            Check::Rule(name) => Some(name.as_str()),
            _ => None,
        })
        .filter(|name| seen.insert(*name))
        .collect()
}

/// The load-time checks; the error names the line of the rule at fault, if it came from
/// the file.
fn validate(rules: &HashMap<String, Loaded>) -> Result<(), (Option<usize>, String)> {
    let mut names: Vec<&String> = rules.keys().collect();
    // Report the first problem in file order, then by name: the same error every run.
    names.sort_by_key(|n| (rules[*n].line.unwrap_or(usize::MAX), n.as_str()));
    let known: HashSet<&str> = defaults::DEFAULTS.iter().map(|(n, _)| *n).collect();
    let referenced: HashSet<&str> = rules.values().flat_map(|l| references(&l.check)).collect();
    for name in &names {
        let loaded = &rules[*name];
        if !known.contains(name.as_str()) && !referenced.contains(name.as_str()) {
            return Err((
                loaded.line,
                format!("unknown rule name `{name}`: not one of upstream Trove's rules, and no rule refers to it with `rule:{name}`"),
            ));
        }
        check_keys(name, loaded)?;
    }
    let mut heights = HashMap::new();
    for name in &names {
        if let Err((blamed, message)) = cycle_or_depth(rules, name, &mut Vec::new(), &mut heights) {
            return Err((rules.get(&blamed).and_then(|l| l.line), message));
        }
    }
    Ok(())
}

fn check_keys(name: &str, loaded: &Loaded) -> Result<(), (Option<usize>, String)> {
    let mut all = Vec::new();
    walk(&loaded.check, &mut all);
    for c in all {
        let (key, value) = match c {
            Check::Rule(r) => {
                if r.is_empty() {
                    return Err((loaded.line, format!("rule `{name}`: `rule:` needs a name")));
                }
                continue;
            }
            Check::Role(v) => (None, v),
            Check::Generic { key, value } => (Some(key.as_str()), value),
            _ => continue,
        };
        if let Some(k) = key.filter(|k| !CREDENTIAL_KEYS.contains(k)) {
            return Err((
                loaded.line,
                format!("rule `{name}`: unknown credential `{k}` (troved has {CREDENTIAL_KEYS:?})"),
            ));
        }
        if let Some(k) = value.target_keys().find(|k| !TARGET_KEYS.contains(k)) {
            return Err((
                loaded.line,
                format!("rule `{name}`: unknown target key `%({k})s` (troved has {TARGET_KEYS:?})"),
            ));
        }
    }
    Ok(())
}

/// A `rule:` to an undefined name, a cycle through `name`, or nesting deeper than
/// [`MAX_DEPTH`]: the rule to blame and the message. Else the height of `name`: how many
/// rules its longest chain of `rule:` references has, itself included. `heights` keeps
/// the heights found, so each rule is walked once (linear, however often a rule is
/// referred to).
fn cycle_or_depth<'r>(
    rules: &'r HashMap<String, Loaded>,
    name: &'r str,
    stack: &mut Vec<&'r str>,
    heights: &mut HashMap<&'r str, usize>,
) -> Result<usize, (String, String)> {
    if let Some(at) = stack.iter().position(|n| *n == name) {
        let mut cycle: Vec<&str> = stack[at..].to_vec();
        cycle.push(name);
        let message = format!(
            "rules refer to each other in a cycle: {}",
            cycle.join(" -> ")
        );
        return Err((stack[at].to_string(), message));
    }
    let too_deep = |stack: &[&str]| {
        let root = stack.first().copied().unwrap_or(name).to_string();
        let message = format!("`rule:` references nest deeper than {MAX_DEPTH} from `{root}`");
        Err((root, message))
    };
    if stack.len() >= MAX_DEPTH {
        return too_deep(stack);
    }
    if let Some(&height) = heights.get(name) {
        return if stack.len() + height > MAX_DEPTH {
            too_deep(stack)
        } else {
            Ok(height)
        };
    }
    let Some((key, loaded)) = rules.get_key_value(name) else {
        let from = stack.last().copied().unwrap_or_default().to_string();
        let message = format!("rule `{from}` refers to `rule:{name}`, which is not defined");
        return Err((from, message));
    };
    stack.push(key);
    let mut below = 0;
    for r in references(&loaded.check) {
        below = below.max(cycle_or_depth(rules, r, stack, heights)?);
    }
    stack.pop();
    heights.insert(key, below + 1);
    Ok(below + 1)
}

#[cfg(test)]
mod tests;
