//! Given a policy, when a caller asks, then the rule decides.

use super::parse::{parse, Check};
use super::*;

fn caller(user: &str, project: &str, roles: &[&str]) -> Caller {
    Caller {
        user_id: user.into(),
        project_id: project.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn target(p: &str) -> Target<'_> {
    Target { project_id: p }
}

fn policy(rules: &[(&str, &str)]) -> Result<Policy, PolicyError> {
    let overrides: Vec<Override> = rules
        .iter()
        .enumerate()
        .map(|(i, (n, r))| Override {
            name: n.to_string(),
            rule: r.to_string(),
            line: i + 1,
        })
        .collect();
    Policy::with_overrides(Some(Path::new("p.yaml")), &overrides)
}

#[test]
fn given_defaults_owner_and_admin_pass_and_others_do_not() {
    let p = Policy::defaults();
    let member = caller("alice", "p1", &["member"]);
    let admin = caller("ops", "p9", &["Admin"]);
    assert!(p.enforce("instance:delete", &member, target("p1")));
    assert!(!p.enforce("instance:delete", &member, target("p2")));
    assert!(
        p.enforce("instance:delete", &admin, target("p1")),
        "role check is case-insensitive"
    );
    assert!(!p.enforce("instance:reset_status", &member, target("p1")));
    assert!(p.enforce("instance:reset_status", &admin, target("p9")));
    assert!(
        p.enforce("flavor:index", &member, target("p2")),
        "empty rule: always"
    );
    assert!(!p.enforce("backup:index:all_projects", &member, target("p1")));
    assert!(!p.enforce("no:such:rule", &admin, target("p9")));
}

#[test]
fn given_an_override_when_enforced_then_it_replaces_the_default() {
    let p = policy(&[("instance:delete", "role:admin")]).unwrap();
    assert!(!p.enforce(
        "instance:delete",
        &caller("a", "p1", &["member"]),
        target("p1")
    ));
    assert!(p.enforce(
        "instance:delete",
        &caller("a", "p1", &["admin"]),
        target("p1")
    ));
    // Others keep their defaults.
    assert!(p.enforce(
        "instance:show",
        &caller("a", "p1", &["member"]),
        target("p1")
    ));
}

#[test]
fn generic_checks_compare_credentials_with_literals_targets_and_booleans() {
    let p = policy(&[
        ("instance:index", "user_id:'alice'"),
        ("instance:detail", "user_id:\"bob\" or is_admin:True"),
        (
            "instance:show",
            "project_id:%(tenant)s and not is_admin:True",
        ),
        ("instance:create", "is_admin:False"),
    ])
    .unwrap();
    let alice = caller("alice", "p1", &[]);
    let admin = caller("root", "p1", &["admin"]);
    assert!(p.enforce("instance:index", &alice, target("p1")));
    assert!(!p.enforce("instance:index", &admin, target("p1")));
    assert!(!p.enforce("instance:detail", &alice, target("p1")));
    assert!(p.enforce("instance:detail", &admin, target("p1")));
    assert!(p.enforce("instance:show", &alice, target("p1")));
    assert!(!p.enforce("instance:show", &alice, target("p2")));
    assert!(!p.enforce("instance:show", &admin, target("p1")));
    assert!(p.enforce("instance:create", &alice, target("p1")));
    assert!(!p.enforce("instance:create", &admin, target("p1")));
}

/// Table: a rule, and for callers with roles (a, b, c) whether it passes.
#[test]
fn precedence_is_not_then_and_then_or() {
    let roles_of = |mask: u8| -> Vec<&'static str> {
        [(1, "a"), (2, "b"), (4, "c")]
            .into_iter()
            .filter(|(bit, _)| mask & bit != 0)
            .map(|(_, r)| r)
            .collect()
    };
    type Expect = fn(bool, bool, bool) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("role:a or role:b and role:c", |a, b, c| a || (b && c)),
        ("role:a and role:b or role:c", |a, b, c| (a && b) || c),
        ("not role:a and role:b", |a, b, _| !a && b),
        ("not (role:a and role:b)", |a, b, _| !(a && b)),
        ("(role:a or role:b) and role:c", |a, b, c| (a || b) && c),
        ("not not role:a", |a, _, _| a),
        ("role:a AND NOT role:b OR role:c", |a, b, c| (a && !b) || c),
        ("((role:a))", |a, _, _| a),
        ("@ and role:c", |_, _, c| c),
        ("! or role:b", |_, b, _| b),
        ("", |_, _, _| true),
    ];
    for (rule, want) in cases {
        let p = policy(&[("instance:index", rule)]).unwrap();
        for mask in 0..8u8 {
            let c = caller("u", "p", &roles_of(mask));
            let got = p.enforce("instance:index", &c, target("p"));
            let expect = want(mask & 1 != 0, mask & 2 != 0, mask & 4 != 0);
            assert_eq!(got, expect, "{rule:?} with roles {:?}", roles_of(mask));
        }
    }
}

#[test]
fn malformed_rules_are_errors_with_a_position() {
    for (rule, needle) in [
        ("role:admin or", "a check is missing"),
        ("role:admin and and role:x", "expected a check"),
        ("(role:admin", "missing `)`"),
        ("role:admin)", "unbalanced"),
        ("admin", "is not a check"),
        ("role:", "nothing after"),
        ("role:a role:b", "expected `and`, `or`"),
        ("project_id:'x", "unterminated quote"),
        ("project_id:%(tenant", "without `)s`"),
        ("http://example.com", "not supported"),
    ] {
        let e = parse(rule).expect_err(rule);
        assert!(e.to_string().contains(needle), "{rule:?}: {e}");
    }
    assert_eq!(parse("role:a or").unwrap_err().at, 9);
    assert_eq!(parse("  ").unwrap(), Check::Always);
}

#[test]
fn load_time_errors_name_the_line() {
    type Case<'a> = (&'a [(&'a str, &'a str)], usize, &'a str);
    let cases: &[Case] = &[
        (&[("instance:delete", "role:admin or")], 1, "does not parse"),
        (
            &[("flavor:index", ""), ("instance:delet", "@")],
            2,
            "unknown rule name",
        ),
        (&[("instance:delete", "rule:nope")], 1, "not defined"),
        (&[("instance:delete", "uid:x")], 1, "unknown credential"),
        (
            &[("instance:delete", "project_id:%(project)s")],
            1,
            "unknown target key",
        ),
        (
            &[
                ("instance:delete", "rule:a"),
                ("a", "rule:b"),
                ("b", "rule:a"),
            ],
            2,
            "cycle",
        ),
        (&[("admin", "rule:admin_or_owner")], 1, "cycle"),
    ];
    for (rules, line, needle) in cases {
        let e = policy(rules).expect_err(needle);
        assert_eq!(e.line, Some(*line), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
        assert!(
            e.to_string().contains(&format!("p.yaml, line {line}")),
            "{e}"
        );
    }
}

#[test]
fn custom_aliases_are_allowed_when_referenced() {
    let p = policy(&[
        ("readers", "role:reader"),
        ("instance:index", "rule:readers"),
    ])
    .unwrap();
    assert!(p.enforce(
        "instance:index",
        &caller("u", "p", &["READER"]),
        target("p")
    ));
    assert!(!p.enforce(
        "instance:index",
        &caller("u", "p", &["member"]),
        target("p")
    ));
}

#[test]
fn policy_files_are_yaml_or_json_and_errors_name_lines() {
    let yaml = "# ours\n\"instance:delete\": \"role:admin\"\ninstance:index: 'role:reader or rule:admin'\n";
    let rules = file::read(yaml).unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        (rules[0].name.as_str(), rules[0].line),
        ("instance:delete", 2)
    );
    assert_eq!(rules[1].line, 3);
    let json = "{\n  \"instance:delete\": \"role:admin\",\n  \"flavor:index\": \"\"\n}\n";
    assert_eq!(file::read(json).unwrap()[1].line, 3);
    assert!(file::read("").unwrap().is_empty());
    for (text, line, needle) in [
        ("a: b\n  c: d: e\n", 2, "not valid YAML"),
        ("\"instance:delete\": 12\n", 1, "not a string"),
        ("x: y\n\"instance:delete\": true\n", 2, "not a string"),
        (
            "\"instance:delete\":\n  - role:admin\n",
            2,
            "must be a string",
        ),
        (
            "\"instance:delete\": \"@\"\n\"instance:delete\": \"!\"\n",
            2,
            "twice",
        ),
        ("- a\n", 1, "mapping"),
    ] {
        let (l, msg) = file::read(text).expect_err(text);
        assert_eq!(l, Some(line), "{text:?}: {msg}");
        assert!(msg.contains(needle), "{text:?}: {msg}");
    }
}

proptest::proptest! {
    /// Any rule built from the grammar parses, and parsing never panics on any text.
    #[test]
    fn parser_never_panics(s in "[ ()a-z:@!%'\"_.]{0,40}") {
        let _ = parse(&s);
    }

    #[test]
    fn generated_rules_parse(parts in proptest::collection::vec((0usize..4, 0usize..3, proptest::bool::ANY), 1..6)) {
        let atoms = ["role:a", "@", "!", "project_id:%(tenant)s"];
        let ops = ["and", "or", "and not"];
        let mut rule = String::new();
        for (i, (atom, op, paren)) in parts.iter().enumerate() {
            if i > 0 { rule.push_str(&format!(" {} ", ops[*op])); }
            if *paren { rule.push_str(&format!("({})", atoms[*atom])); } else { rule.push_str(atoms[*atom]); }
        }
        proptest::prop_assert!(parse(&rule).is_ok(), "{}", rule);
    }
}

#[test]
fn nesting_deeper_than_the_cap_is_a_parse_error_not_a_stack_overflow() {
    for n in [super::parse::MAX_NESTING + 1, 10_000, 30_000] {
        let nots = format!("{}@", "not ".repeat(n));
        let e = parse(&nots).unwrap_err();
        assert!(e.message.contains("nest"), "{n}: {e}");
        let parens = format!("{}@{}", "(".repeat(n), ")".repeat(n));
        let e = parse(&parens).unwrap_err();
        assert!(e.message.contains("nest"), "{n}: {e}");
    }
    let e = policy(&[
        ("flavor:index", ""),
        ("instance:delete", &format!("{}@", "not ".repeat(30_000))),
    ])
    .unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    // At the cap, still a rule.
    let deep = format!("{}@", "not ".repeat(super::parse::MAX_NESTING));
    assert!(parse(&deep).is_ok());
    let deep = format!(
        "{}@{}",
        "(".repeat(super::parse::MAX_NESTING),
        ")".repeat(super::parse::MAX_NESTING)
    );
    assert!(parse(&deep).is_ok());
}

/// `rN: "rule:rN+1 or rule:rN+1"`: without memoisation, loading and evaluating walk
/// every one of the 2^31 paths and never finish.
#[test]
fn doubling_rule_chains_load_and_evaluate_in_linear_time() {
    let depth = MAX_DEPTH - 1;
    let names: Vec<String> = (1..=depth).map(|i| format!("r{i}")).collect();
    let mut rules: Vec<(String, String)> =
        vec![("instance:delete".into(), "rule:r1 or rule:r1".into())];
    for (i, name) in names.iter().enumerate() {
        let rule = match names.get(i + 1) {
            Some(next) => format!("rule:{next} or rule:{next}"),
            None => "role:deep".to_string(),
        };
        rules.push((name.clone(), rule));
    }
    let rules: Vec<(&str, &str)> = rules
        .iter()
        .map(|(n, r)| (n.as_str(), r.as_str()))
        .collect();
    let p = policy(&rules).unwrap();
    for _ in 0..100 {
        assert!(!p.enforce(
            "instance:delete",
            &caller("a", "p1", &["member"]),
            target("p1")
        ));
    }
    assert!(p.enforce(
        "instance:delete",
        &caller("a", "p1", &["deep"]),
        target("p1")
    ));
}

#[test]
fn parse_errors_count_characters_not_bytes() {
    assert!(parse("é:x or")
        .unwrap_err()
        .to_string()
        .contains("at character 7"));
    assert!(parse("é:x )")
        .unwrap_err()
        .to_string()
        .contains("at character 5"));
}
