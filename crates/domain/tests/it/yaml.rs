//! The YAML reader's observable behaviour: scalar resolution, positions
//! and paths, anchors, interpolation, typed accessors, durations, unknown
//! keys and suggestions. Written to catch mutants of `yaml.rs`, so each
//! assertion names an exact value, message or position.

use countersign_domain::diag::{Diagnostic, Pos};
use countersign_domain::yaml::{self, Node, Value, interpolate, parse_duration_ms, suggest};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(src: &str) -> Node {
    yaml::parse(src, &no_env).unwrap_or_else(|e| panic!("{src:?}: {e:?}"))
}

fn errors(src: &str) -> Vec<String> {
    yaml::parse(src, &no_env)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The value of `x:` in `x: {src}`.
fn value(src: &str) -> Value {
    let root = parse(&format!("x: {src}\n"));
    root.as_map().unwrap()[0].1.value.clone()
}

fn at(line: usize, col: usize) -> Pos {
    Pos { line, col }
}

#[test]
fn plain_scalars_resolve_like_the_yaml_1_2_core_schema() {
    for null in ["~", "null", "Null", "NULL", "''"] {
        let want = if null == "''" {
            Value::Str(String::new())
        } else {
            Value::Null
        };
        assert_eq!(value(null), want, "{null}");
    }
    // An empty plain value is null too.
    assert_eq!(parse("x:\n").as_map().unwrap()[0].1.value, Value::Null);
    for t in ["true", "True", "TRUE"] {
        assert_eq!(value(t), Value::Bool(true), "{t}");
    }
    for f in ["false", "False", "FALSE"] {
        assert_eq!(value(f), Value::Bool(false), "{f}");
    }
    for inf in [".inf", ".Inf", ".INF", "+.inf"] {
        assert_eq!(value(inf), Value::Float(f64::INFINITY), "{inf}");
    }
    for inf in ["-.inf", "-.Inf", "-.INF"] {
        assert_eq!(value(inf), Value::Float(f64::NEG_INFINITY), "{inf}");
    }
    for nan in [".nan", ".NaN", ".NAN"] {
        assert!(matches!(value(nan), Value::Float(f) if f.is_nan()), "{nan}");
    }
    assert_eq!(value("0x1F"), Value::Int(31));
    assert_eq!(value("0o17"), Value::Int(15));
    // Not a valid number in its base: neither a number nor a string.
    assert_eq!(value("0xZZ"), Value::Str("0xZZ".into()));
    assert_eq!(value("0o9"), Value::Str("0o9".into()));
    assert_eq!(value("42"), Value::Int(42));
    assert_eq!(value("-7"), Value::Int(-7));
    assert_eq!(value("+3"), Value::Int(3));
    assert_eq!(value("1e3"), Value::Float(1000.0));
    assert_eq!(value("2E2"), Value::Float(200.0));
    assert_eq!(value("-0.5"), Value::Float(-0.5));
    // Number-shaped characters without a digit, or that do not parse,
    // stay strings.
    for s in [
        "+", "-e", ".", "e", "E", "+-", "1.2.3", "1-2", "12a", "a12", "yes",
    ] {
        assert_eq!(value(s), Value::Str(s.into()), "{s}");
    }
}

#[test]
fn quoted_and_str_tagged_scalars_stay_strings() {
    assert_eq!(value("'42'"), Value::Str("42".into()));
    assert_eq!(value("\"true\""), Value::Str("true".into()));
    assert_eq!(value("!!str 42"), Value::Str("42".into()));
    assert_eq!(value("!!str true"), Value::Str("true".into()));
    // Another tag does not force a string.
    assert_eq!(value("!!int 42"), Value::Int(42));
}

#[test]
fn every_node_knows_its_line_column_path_and_key() {
    let root = parse("a: 1\nlist:\n  - x\n  - { k: v }\nmap:\n  inner:   true\n");
    assert_eq!(
        (root.pos, root.path.as_str(), root.key_pos),
        (at(1, 1), "", None)
    );
    let m = root.as_map().unwrap();
    let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "list", "map"]);
    let a = &m[0].1;
    assert_eq!(
        (a.pos, a.path.as_str(), a.key_pos),
        (at(1, 4), "a", Some(at(1, 1)))
    );
    let list = &m[1].1;
    assert_eq!(
        (list.pos, list.path.as_str(), list.key_pos),
        (at(3, 3), "list", Some(at(2, 1)))
    );
    let items = list.as_seq().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0].pos, items[0].path.as_str(), items[0].key_pos),
        (at(3, 5), "list[0]", None)
    );
    let k = &items[1].as_map().unwrap()[0].1;
    assert_eq!(
        (k.pos, k.path.as_str(), k.key_pos),
        (at(4, 10), "list[1].k", Some(at(4, 7)))
    );
    let inner = &m[2].1.as_map().unwrap()[0].1;
    assert_eq!(
        (inner.pos, inner.path.as_str(), inner.key_pos),
        (at(6, 12), "map.inner", Some(at(6, 3)))
    );
    assert!(!inner.from_env);
}

#[test]
fn node_errors_point_at_the_node_and_key_errors_at_its_key() {
    let root = parse("outer:\n  key:\n    - 1\n");
    let key = &root.as_map().unwrap()[0].1.as_map().unwrap()[0].1;
    assert_eq!(key.error("bad").to_string(), "3:5: outer.key: bad");
    assert_eq!(key.key_error("bad").to_string(), "2:3: outer.key: bad");
    // A node that is not a mapping's value: the key error is at the node.
    let item = &key.as_seq().unwrap()[0];
    assert_eq!(item.key_error("bad").to_string(), "3:7: outer.key[0]: bad");
    assert_eq!(root.key_error("bad").to_string(), "1:1: bad");
}

#[test]
fn anchors_and_aliases_copy_the_value_to_the_alias_position() {
    let root = parse(
        "s: &s hello\nq: &q [1, 2]\nm: &m { k: v }\nn: &n\n\nuse_s: *s\nuse_q: *q\nuse_m: *m\nuse_n: *n\n",
    );
    let m = root.as_map().unwrap();
    let get = |name: &str| &m.iter().find(|(k, _)| k == name).unwrap().1;
    let s = get("use_s");
    assert_eq!(s.value, Value::Str("hello".into()));
    assert_eq!((s.pos, s.path.as_str()), (at(6, 8), "use_s"));
    assert_eq!(s.key_pos, Some(at(6, 1)));
    let q = get("use_q");
    assert_eq!(q.to_json(), serde_json::json!([1, 2]));
    assert_eq!((q.pos, q.path.as_str()), (at(7, 8), "use_q"));
    let mm = get("use_m");
    assert_eq!(mm.to_json(), serde_json::json!({"k": "v"}));
    assert_eq!((mm.pos, mm.path.as_str()), (at(8, 8), "use_m"));
    assert_eq!(get("use_n").value, Value::Null);
}

#[test]
fn structural_problems_are_located() {
    assert_eq!(errors(""), ["1:1: the file is empty"]);
    assert_eq!(errors("# only a comment\n"), ["2:1: the file is empty"]);
    assert_eq!(
        errors("a: 1\n---\nb: 2\n"),
        ["2:1: a workflow file holds exactly one YAML document"]
    );
    // An explicit end of the one document is fine.
    assert_eq!(parse("a: 1\n...\n").to_json(), serde_json::json!({"a": 1}));
    assert_eq!(
        errors("? [a, b]\n: 1\n"),
        ["1:3: mapping keys must be plain strings"]
    );
    assert_eq!(
        errors("outer:\n  ? { k: v }\n  : 1\n"),
        ["2:5: outer: mapping keys must be plain strings"]
    );
    assert_eq!(
        errors("a: [1, 2\nb: 3\n"),
        ["2:2: invalid YAML: illegal placement of ':' indicator"]
    );
}

#[test]
fn duplicate_keys_are_all_reported_and_the_first_value_kept() {
    let errs = yaml::parse("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", &no_env).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(text, ["4:3: b.c: duplicate key", "5:1: a: duplicate key"]);
}

#[test]
fn a_document_may_hold_exactly_max_nodes() {
    // The root and 99 999 items: 100 000 nodes.
    let mut src = String::from("[");
    src.push_str(&"1,".repeat(99_999));
    src.push(']');
    let root = parse(&src);
    assert_eq!(root.as_seq().unwrap().len(), 99_999);
    src.insert_str(1, "1,");
    let errs = yaml::parse(&src, &no_env).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].message, "document too large");
    assert_eq!(errs[0].path, "[99999]");
}

#[test]
fn an_alias_bomb_is_refused() {
    let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'] {
        src.push_str(&format!(
            "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = name;
    }
    let errs = yaml::parse(&src, &no_env).unwrap_err();
    // Before `e`: 1 + 11 + 111 + 1 111 + 11 111 nodes; `e` itself and
    // eight copies of `d` (11 111 each) pass 100 000.
    assert_eq!(
        errs,
        [Diagnostic::new(at(5, 36), "e[7]", "document too large")]
    );
}

#[test]
fn aliases_count_as_the_nodes_they_copy() {
    let list = |item: &str, n: usize| vec![item; n].join(", ");
    // root 1; g: 1; m: 1 + 3 = 4; a: 1 + 9 = 10; d: 1 + 10 × 10 = 101;
    // e: 1 + 988 × 101 = 99 789; f: 1 + 1 + 4 + n. With n = 88: 100 000
    // nodes. (A scalar, a mapping and lists are anchored, and an anchor
    // holding aliases counts them expanded.)
    let src = |n: usize| {
        format!(
            "g: &g 1\nm: &m {{ k: 1, l: 2, n: 3 }}\na: &a [{}]\nd: &d [{}]\ne: [{}]\nf: [*g, *m, {}]\n",
            list("1", 9),
            list("*a", 10),
            list("*d", 988),
            list("2", n)
        )
    };
    let root = parse(&src(88));
    let m = root.as_map().unwrap();
    assert_eq!(m[4].1.as_seq().unwrap().len(), 988);
    assert_eq!(
        m[4].1.as_seq().unwrap()[987].to_json()[9],
        serde_json::json!([1, 1, 1, 1, 1, 1, 1, 1, 1])
    );
    assert_eq!(
        m[5].1.to_json()[1],
        serde_json::json!({"k": 1, "l": 2, "n": 3})
    );
    let errs = yaml::parse(&src(89), &no_env).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].path.as_str(), errs[0].message.as_str()),
        ("f[90]", "document too large")
    );
}

#[test]
fn interpolation_in_documents_marks_values_from_env() {
    let env = |n: &str| match n {
        "A" => Some("alpha".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let root = yaml::parse(
        "a: x${env:A}\nb: plain\nc: ${env:EMPTY:-fallback}\nd: '$${env:A}'\n",
        &env,
    )
    .unwrap();
    let m = root.as_map().unwrap();
    let got: Vec<(Value, bool)> = m
        .iter()
        .map(|(_, n)| (n.value.clone(), n.from_env))
        .collect();
    assert_eq!(
        got,
        [
            (Value::Str("xalpha".into()), true),
            (Value::Str("plain".into()), false),
            (Value::Str("fallback".into()), true),
            (Value::Str("${env:A}".into()), false),
        ]
    );
    let errs = yaml::parse("a: 1\nb: '${env:NOPE}'\n", &env).unwrap_err();
    assert_eq!(
        errs,
        [Diagnostic::new(
            at(2, 4),
            "b",
            "environment variable NOPE is not set (give a default with `${env:NOPE:-…}`)"
        )]
    );
}

#[test]
fn interpolate_replaces_each_variable_and_keeps_the_rest() {
    let env = |n: &str| match n {
        "A" => Some("alpha".to_string()),
        "B_2" => Some("beta".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let ok = |s: &str| interpolate(s, &env).unwrap();
    assert_eq!(ok("no vars"), ("no vars".into(), false));
    assert_eq!(ok("cost $5 and $"), ("cost $5 and $".into(), false));
    assert_eq!(ok("a$b ${env:A}"), ("a$b alpha".into(), true));
    assert_eq!(ok("${env:A}-${env:B_2}!"), ("alpha-beta!".into(), true));
    assert_eq!(ok("${env:A}${env:A}"), ("alphaalpha".into(), true));
    assert_eq!(ok("${env:EMPTY:-d}"), ("d".into(), true));
    assert_eq!(ok("${env:A:-d}"), ("alpha".into(), true));
    assert_eq!(ok("[${env:NONE:-}]"), ("[]".into(), true));
    assert_eq!(ok("$${x} ${env:A}"), ("${x} alpha".into(), true));
    assert_eq!(ok("$${"), ("${".into(), false));
    let err = |s: &str| interpolate(s, &env).unwrap_err();
    assert_eq!(err("x ${env:A"), "unterminated `${`");
    assert_eq!(
        err("${A}"),
        "unknown interpolation `${A}`: only `${env:NAME}` and `${env:NAME:-default}` exist (write `$${` for a literal `${`)"
    );
    assert_eq!(err("${env:}"), "invalid environment variable name \"\"");
    assert_eq!(err("${env::-x}"), "invalid environment variable name \"\"");
    assert_eq!(
        err("${env:A-B}"),
        "invalid environment variable name \"A-B\""
    );
    assert_eq!(
        err("${env:EMPTY}"),
        "environment variable EMPTY is not set (give a default with `${env:EMPTY:-…}`)"
    );
}

#[test]
fn accessors_accept_their_kind_and_name_the_wrong_one() {
    let root = parse(
        "n: ~\nb: true\ni: 3\nneg: -2\nzero: 0\nf: 1.5\ns: '12'\nw: word\nl: [1]\nm: { k: 1 }\n",
    );
    let m = root.as_map().unwrap();
    let get = |name: &str| &m.iter().find(|(k, _)| k == name).unwrap().1;
    let kinds: Vec<&str> = ["n", "b", "i", "f", "s", "l", "m"]
        .iter()
        .map(|k| get(k).kind_name())
        .collect();
    assert_eq!(
        kinds,
        [
            "null",
            "a boolean",
            "an integer",
            "a number",
            "a string",
            "a list",
            "a mapping"
        ]
    );
    let msg = |r: Result<_, Diagnostic>| -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(d) => d.to_string(),
        }
    };

    assert_eq!(get("w").as_str().unwrap(), "word");
    assert_eq!(
        msg(get("i").as_str().map(drop)),
        "3:4: i: expected a string, found an integer"
    );

    assert_eq!(get("w").as_scalar_string().unwrap(), "word");
    assert_eq!(get("i").as_scalar_string().unwrap(), "3");
    assert_eq!(get("f").as_scalar_string().unwrap(), "1.5");
    assert_eq!(get("b").as_scalar_string().unwrap(), "true");
    assert_eq!(
        msg(get("l").as_scalar_string().map(drop)),
        "9:4: l: expected a string, found a list"
    );

    assert_eq!(get("i").as_u64().unwrap(), 3);
    assert_eq!(get("zero").as_u64().unwrap(), 0);
    assert_eq!(get("s").as_u64().unwrap(), 12);
    assert_eq!(
        msg(get("neg").as_u64().map(drop)),
        "4:6: neg: expected a non-negative integer, found an integer"
    );
    assert_eq!(
        msg(get("w").as_u64().map(drop)),
        "8:4: w: expected a non-negative integer, found a string"
    );

    assert_eq!(get("i").as_f64().unwrap(), 3.0);
    assert_eq!(get("neg").as_f64().unwrap(), -2.0);
    assert_eq!(get("f").as_f64().unwrap(), 1.5);
    assert_eq!(
        msg(get("s").as_f64().map(drop)),
        "7:4: s: expected a number, found a string"
    );

    assert!(get("b").as_bool().unwrap());
    assert!(
        !parse("x: false\n").as_map().unwrap()[0]
            .1
            .as_bool()
            .unwrap()
    );
    assert_eq!(
        msg(get("n").as_bool().map(drop)),
        "1:4: n: expected true or false, found null"
    );

    assert_eq!(get("l").as_seq().unwrap().len(), 1);
    assert_eq!(
        msg(get("m").as_seq().map(drop)),
        "10:4: m: expected a list, found a mapping"
    );
    assert_eq!(get("m").as_map().unwrap()[0].0, "k");
    assert_eq!(
        msg(get("l").as_map().map(drop)),
        "9:4: l: expected a mapping, found a list"
    );
    assert_eq!(
        msg(get("l").fields().map(drop)),
        "9:4: l: expected a mapping, found a list"
    );
}

#[test]
fn durations_from_nodes() {
    let root = parse("a: 2\nb: 0\nc: 90s\nd: -1\ne: soon\nf: [1]\n");
    let m = root.as_map().unwrap();
    assert_eq!(m[0].1.as_duration_ms().unwrap(), 2_000);
    assert_eq!(m[1].1.as_duration_ms().unwrap(), 0);
    assert_eq!(m[2].1.as_duration_ms().unwrap(), 90_000);
    assert_eq!(
        m[3].1.as_duration_ms().unwrap_err().to_string(),
        "4:4: d: expected a duration, found an integer"
    );
    assert_eq!(
        m[4].1.as_duration_ms().unwrap_err().to_string(),
        "5:4: e: invalid duration \"soon\": use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d"
    );
    assert_eq!(
        m[5].1.as_duration_ms().unwrap_err().to_string(),
        "6:4: f: expected a duration, found a list"
    );
}

#[test]
fn parse_duration_ms_units() {
    let cases = [
        ("2", Some(2_000)),
        ("1.5", Some(1_500)),
        ("0", Some(0)),
        ("0ms", Some(0)),
        ("250ms", Some(250)),
        ("7s", Some(7_000)),
        (" 7 s ", Some(7_000)),
        ("3m", Some(180_000)),
        ("2h", Some(7_200_000)),
        ("2d", Some(172_800_000)),
        ("", None),
        ("s", None),
        ("-1s", None),
        ("1x", None),
        ("1.2.3s", None),
        ("1w", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_duration_ms(s), want, "{s:?}");
    }
    // Too large to be a finite number of milliseconds.
    assert_eq!(parse_duration_ms(&"9".repeat(400)), None);
}

#[test]
fn to_json_keeps_each_kind() {
    let root =
        parse("n: ~\nb: false\ni: -3\nf: 2.5\nnan: .nan\ns: x\nl: [1, a]\nm: { k: { j: true } }\n");
    assert_eq!(
        root.to_json(),
        serde_json::json!({
            "n": null, "b": false, "i": -3, "f": 2.5, "nan": null, "s": "x",
            "l": [1, "a"], "m": {"k": {"j": true}}
        })
    );
}

#[test]
fn fields_report_keys_nobody_read() {
    let root = parse("outer:\n  name: x\n  colour: red\n  nmae: y\n  zzzzzz: 1\n");
    let outer = &root.as_map().unwrap()[0].1;
    let mut f = outer.fields().unwrap();
    assert!(std::ptr::eq(f.node(), outer));
    assert_eq!(f.get("name").unwrap().as_str().unwrap(), "x");
    assert!(f.get("absent").is_none());
    assert_eq!(
        f.require("missing").unwrap_err().to_string(),
        "2:3: outer: missing required field `missing`"
    );
    assert_eq!(f.require("name").unwrap().path, "outer.name");
    let mut errors = Vec::new();
    f.finish(&mut errors);
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "3:3: outer.colour: unknown field `colour`; expected one of: absent, missing, name",
            "4:3: outer.nmae: unknown field `nmae` (did you mean `name`?)",
            "5:3: outer.zzzzzz: unknown field `zzzzzz`; expected one of: absent, missing, name",
        ]
    );

    // Nothing read: no list of expected keys.
    let mut errors = Vec::new();
    outer.fields().unwrap().finish(&mut errors);
    assert_eq!(errors[0].message, "unknown field `name`");
    assert_eq!(errors.len(), 4);

    // Everything read: nothing to report.
    let mut errors = Vec::new();
    let mut f = outer.fields().unwrap();
    for k in ["name", "colour", "nmae", "zzzzzz"] {
        f.get(k);
    }
    f.finish(&mut errors);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn suggest_picks_the_closest_within_two_edits() {
    assert_eq!(suggest("triag", ["input", "triage"]), Some("triage"));
    // Exactly two edits still suggest; three do not.
    assert_eq!(suggest("tria", ["triage"]), Some("triage"));
    assert_eq!(suggest("tri", ["triage"]), None);
    // The nearest wins, whatever the order.
    assert_eq!(suggest("abcd", ["abxy", "abcx"]), Some("abcx"));
    assert_eq!(suggest("abcd", ["abcx", "abxy"]), Some("abcx"));
    // Substitution, insertion and deletion each cost one.
    assert_eq!(suggest("kitten", ["sitten"]), Some("sitten"));
    assert_eq!(suggest("kitten", ["kittens"]), Some("kittens"));
    assert_eq!(suggest("kitten", ["itten"]), Some("itten"));
    assert_eq!(suggest("kitten", ["sittin"]), Some("sittin"));
    assert_eq!(suggest("kitten", ["sitting"]), None);
    // Three deletions at the start are three edits.
    assert_eq!(suggest("xyzabc", ["abc"]), None);
    assert_eq!(suggest("xyabc", ["abc"]), Some("abc"));
    // A candidate is not "close" when the edits rewrite all of it.
    assert_eq!(suggest("ab", ["x"]), None);
    assert_eq!(suggest("a", ["b"]), Some("b"));
    assert_eq!(suggest("xy", ["ab"]), None);
    assert_eq!(suggest("xyz", ["abz"]), Some("abz"));
    assert_eq!(suggest("", ["ab"]), None);
    assert_eq!(suggest("same", ["same"]), Some("same"));
    assert_eq!(suggest("héllo", ["hello"]), Some("hello"));
}
