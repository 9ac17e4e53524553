//! Trust calibration's evidence rules and figures, from the outside:
//! which acts count, who is credited, how samples are sliced, tallied,
//! grouped into rows and weeks, and the text measures.

use std::collections::BTreeMap;

use countersign_domain::calibration::{
    Act, Approved, Evidence, Excluded, Interval, Key, MODEL, NONE, Outcome, PROVIDER, Query,
    Sample, State, Tally, Task, evidence, is_text, latest_changes, levenshtein, normalise, rows,
    week_of, wilson,
};
use countersign_domain::event::SYSTEM;
use countersign_domain::review::{Field, bulk_comment};
use serde_json::{Value as Json, json};

fn field(name: &str, step: &str, draft: Json, schema: Option<Json>) -> Field {
    Field {
        name: name.into(),
        step: step.into(),
        draft,
        schema,
    }
}

fn act(actor: &str, decision: &str, at_ms: i64) -> Act {
    Act {
        actor: actor.into(),
        decision: decision.into(),
        comment: None,
        at_ms,
    }
}

/// A task approved by ann at `at`, drafting `intent` (by step `llm`) and
/// `note` (free text, by step `other`), every value approved as drafted.
fn task(id: &str, at: i64) -> Task {
    let fields = vec![
        field(
            "intent",
            "llm",
            json!("sales"),
            Some(json!({"type": "string", "enum": ["sales", "spam"]})),
        ),
        field("note", "other", json!("Hello  there"), None),
    ];
    Task {
        review_id: id.into(),
        run_id: format!("run-{id}"),
        workflow: "w".into(),
        version: 2,
        step: "rev".into(),
        state: State::Approved,
        approved: fields
            .iter()
            .map(|f| Approved {
                field: f.name.clone(),
                value: f.draft.clone(),
                by: "user:ann".into(),
                at_ms: at,
            })
            .collect(),
        fields,
        acts: vec![act("user:ann", "approve", at)],
        models: BTreeMap::from([
            (
                "llm".to_string(),
                (Some("openai".to_string()), Some("gpt-x".to_string())),
            ),
            ("other".to_string(), (None, Some("local".to_string()))),
        ]),
    }
}

fn set(t: &mut Task, field: &str, value: Json) {
    t.approved
        .iter_mut()
        .find(|a| a.field == field)
        .unwrap()
        .value = value;
}

fn sample(draft: Json, value: Option<Json>, text: bool) -> Sample {
    Sample {
        review_id: "r".into(),
        run_id: "run".into(),
        workflow: "w".into(),
        version: 1,
        step: "s".into(),
        field: "f".into(),
        slice: None,
        text,
        draft,
        value,
        outcome: Outcome::Approved,
        by: "user:ann".into(),
        at_ms: 0,
    }
}

#[test]
fn names_of_outcomes_and_exclusions() {
    let outcomes: Vec<&str> = [
        Outcome::Approved,
        Outcome::Rejected,
        Outcome::Escalated,
        Outcome::HandedOff,
    ]
    .iter()
    .map(|o| o.as_str())
    .collect();
    assert_eq!(
        outcomes,
        ["approved", "rejected", "escalated", "handed_off"]
    );
    let excluded: Vec<&str> = Excluded::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(excluded, ["undecided", "expired", "bulk", "before_window"]);
}

#[test]
fn an_approved_task_gives_one_sample_per_field_credited_to_the_editor() {
    let mut t = task("a", 1_000);
    set(&mut t, "note", json!("hello there"));
    // Someone else edited the note before ann's final approval.
    t.approved[1].by = "user:bob".into();
    t.acts.insert(0, act("user:bob", "approve", 900));
    let ev = evidence(&[t], &Query::default());
    assert_eq!(ev.tasks, 1);
    assert!(ev.excluded.is_empty());
    assert!(!ev.slice_found);
    assert_eq!(
        ev.samples[1],
        Sample {
            review_id: "a".into(),
            run_id: "run-a".into(),
            workflow: "w".into(),
            version: 2,
            step: "rev".into(),
            field: "note".into(),
            slice: None,
            text: true,
            draft: json!("Hello  there"),
            value: Some(json!("hello there")),
            outcome: Outcome::Approved,
            by: "user:bob".into(),
            at_ms: 1_000,
        }
    );
    assert_eq!(ev.samples[0].by, "user:ann");
    assert!(!ev.samples[0].text);
    assert!(ev.samples[0].agrees());
    let note = &ev.samples[1];
    assert!(!note.agrees());
    assert!(note.agrees_normalised());
    assert_eq!(note.edit_distance(), Some(2));
}

#[test]
fn an_approval_without_a_stored_value_keeps_the_draft() {
    let mut t = task("a", 1_000);
    t.approved.clear();
    let ev = evidence(&[t], &Query::default());
    assert_eq!(ev.samples[0].value, Some(json!("sales")));
    assert_eq!(ev.samples[1].value, Some(json!("Hello  there")));
    assert_eq!(ev.samples[1].by, "user:ann");
}

#[test]
fn rejections_hand_offs_and_escalations_disagree_on_every_field() {
    let mut rejected = task("rej", 10);
    rejected.state = State::Rejected;
    rejected.acts = vec![act("user:ann", "approve", 5), act("user:bob", "reject", 10)];
    let mut handed = task("hand", 20);
    handed.state = State::HandedOff;
    handed.acts = vec![act("user:cy", "hand_off", 20)];
    // Escalated by a person, then rejected at the deadline: still the
    // person's escalation, at its own time.
    let mut escalated = task("esc", 40);
    escalated.state = State::Rejected;
    escalated.acts = vec![
        act(SYSTEM, "escalate", 25),
        act("user:dee", "escalate", 30),
        act(SYSTEM, "reject", 40),
    ];
    let ev = evidence(&[rejected, handed, escalated], &Query::default());
    type Seen<'a> = (&'a str, &'a str, Outcome, Option<&'a Json>, &'a str, i64);
    let seen: Vec<Seen<'_>> = ev
        .samples
        .iter()
        .map(|s| {
            (
                s.review_id.as_str(),
                s.field.as_str(),
                s.outcome,
                s.value.as_ref(),
                s.by.as_str(),
                s.at_ms,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("rej", "intent", Outcome::Rejected, None, "user:bob", 10),
            ("rej", "note", Outcome::Rejected, None, "user:bob", 10),
            ("hand", "intent", Outcome::HandedOff, None, "user:cy", 20),
            ("hand", "note", Outcome::HandedOff, None, "user:cy", 20),
            ("esc", "intent", Outcome::Escalated, None, "user:dee", 30),
            ("esc", "note", Outcome::Escalated, None, "user:dee", 30),
        ]
    );
    assert!(
        ev.samples
            .iter()
            .all(|s| !s.agrees() && !s.agrees_normalised())
    );
    assert!(ev.samples.iter().all(|s| s.edit_distance().is_none()));
}

#[test]
fn tasks_left_out_are_counted_by_reason() {
    let mut pending = task("p", 10);
    pending.state = State::Pending;
    // Pending with acts (a deadline escalation) is still undecided.
    pending.acts = vec![act(SYSTEM, "escalate", 5)];
    let mut no_acts = task("n", 10);
    no_acts.acts.clear();
    let mut expired = task("e", 10);
    // One approval of two by the deadline: the task is expired.
    expired.acts = vec![act("user:ann", "approve", 5), act(SYSTEM, "approve", 10)];
    // Every approval counts, not only the last: one by the deadline
    // before a person's is expired, one in bulk before a person's is bulk.
    let mut expired_first = task("e2", 10);
    expired_first.acts = vec![act(SYSTEM, "approve", 5), act("user:ann", "approve", 10)];
    let mut bulk_first = task("b3", 10);
    bulk_first.acts = vec![
        Act {
            comment: Some(bulk_comment(false, 3)),
            ..act("user:bob", "approve", 5)
        },
        act("user:ann", "approve", 10),
    ];
    let mut handed_by_system = task("h", 10);
    handed_by_system.state = State::HandedOff;
    handed_by_system.acts = vec![act(SYSTEM, "hand_off", 10)];
    let mut bulk = task("b", 10);
    bulk.state = State::Rejected;
    bulk.acts = vec![Act {
        comment: Some(bulk_comment(true, 3)),
        ..act("user:ann", "reject", 10)
    }];
    let mut bulk_approval = task("b2", 10);
    bulk_approval.acts = vec![
        act("user:ann", "approve", 5),
        Act {
            comment: Some(bulk_comment(false, 3)),
            ..act("user:bob", "approve", 10)
        },
    ];
    // A commented rejection is not bulk.
    let mut commented = task("c", 10);
    commented.state = State::Rejected;
    commented.acts = vec![Act {
        comment: Some("wrong intent".into()),
        ..act("user:ann", "reject", 10)
    }];
    let early = task("old", 9);
    let on_time = task("new", 10);
    let ev = evidence(
        &[
            pending,
            no_acts,
            expired,
            expired_first,
            bulk_first,
            handed_by_system,
            bulk,
            bulk_approval,
            commented,
            early,
            on_time,
        ],
        &Query {
            since_ms: Some(10),
            by: None,
        },
    );
    assert_eq!(ev.tasks, 2);
    assert_eq!(
        ev.excluded,
        BTreeMap::from([
            (Excluded::Undecided, 2),
            (Excluded::Expired, 3),
            (Excluded::Bulk, 3),
            (Excluded::BeforeWindow, 1),
        ])
    );
    let ids: Vec<&str> = ev.samples.iter().map(|s| s.review_id.as_str()).collect();
    assert_eq!(ids, ["c", "c", "new", "new"]);
}

#[test]
fn slices_by_provider_model_or_a_drafted_field() {
    let mut a = task("a", 1);
    a.fields[0].draft = json!(3);
    let mut b = task("b", 2);
    b.fields[0].draft = Json::Null;
    let mut c = task("c", 3);
    c.fields[0].draft = json!({"k": true});
    c.models.clear();
    let tasks = [a, b, c];
    let slices = |by: &str| -> (Vec<Option<String>>, bool) {
        let ev = evidence(
            &tasks,
            &Query {
                since_ms: None,
                by: Some(by.into()),
            },
        );
        (
            ev.samples.into_iter().map(|s| s.slice).collect(),
            ev.slice_found,
        )
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        slices(PROVIDER),
        (
            vec![s("openai"), s(NONE), s("openai"), s(NONE), s(NONE), s(NONE)],
            true
        )
    );
    assert_eq!(
        slices(MODEL),
        (
            vec![
                s("gpt-x"),
                s("local"),
                s("gpt-x"),
                s("local"),
                s(NONE),
                s(NONE)
            ],
            true
        )
    );
    assert_eq!(
        slices("intent"),
        (
            vec![
                s("3"),
                s("3"),
                s(NONE),
                s(NONE),
                s("{\"k\":true}"),
                s("{\"k\":true}")
            ],
            true
        )
    );
    assert_eq!(slices("note"), (vec![s("Hello  there"); 6], true));
    assert_eq!(slices("colour"), (vec![s(NONE); 6], false));
    // Found in one task of several is found.
    let ev = evidence(
        &tasks[1..],
        &Query {
            since_ms: None,
            by: Some("intent".into()),
        },
    );
    assert!(ev.slice_found);
    let ev = evidence(
        &[tasks[0].clone(), tasks[2].clone()],
        &Query {
            since_ms: None,
            by: Some("intent".into()),
        },
    );
    assert!(ev.slice_found, "two tasks that both have the slice");
}

#[test]
fn free_text_is_declared_or_drafted_as_a_string() {
    let f = |draft: Json, schema: Option<Json>| is_text(&field("f", "s", draft, schema));
    assert!(f(json!("x"), None));
    assert!(!f(json!(1), None));
    assert!(f(json!(1), Some(json!({"type": "string"}))));
    assert!(!f(json!("x"), Some(json!({"type": "integer"}))));
    assert!(f(Json::Null, Some(json!({"type": ["null", "string"]}))));
    assert!(!f(json!("x"), Some(json!({"type": ["null", "integer"]}))));
    assert!(!f(
        json!("x"),
        Some(json!({"type": "string", "const": "x"}))
    ));
    assert!(!f(
        json!("x"),
        Some(json!({"type": "string", "enum": ["x"]}))
    ));
    assert!(!f(json!("x"), Some(json!({}))));
    assert!(!f(json!("x"), Some(json!({"type": 3}))));
}

#[test]
fn sample_comparisons() {
    let s = sample(json!("A  b"), Some(json!("a b")), true);
    assert!(!s.agrees() && s.agrees_normalised());
    assert_eq!(s.edit_distance(), Some(2));
    // Not free text: exact only, and no distance.
    let s = sample(json!("A  b"), Some(json!("a b")), false);
    assert!(!s.agrees() && !s.agrees_normalised());
    assert_eq!(s.edit_distance(), None);
    let s = sample(json!(1), Some(json!(1)), true);
    assert!(s.agrees() && s.agrees_normalised());
    assert_eq!(s.edit_distance(), None);
    let s = sample(json!("x"), None, true);
    assert!(!s.agrees() && !s.agrees_normalised());
    assert_eq!(s.edit_distance(), None);
    let s = sample(json!("x"), Some(json!(2)), true);
    assert_eq!(s.edit_distance(), None);
}

fn four(i: Interval) -> (String, String) {
    (format!("{:.4}", i.low), format!("{:.4}", i.high))
}

#[test]
fn wilson_intervals() {
    let w = |k, n| four(wilson(k, n).unwrap());
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(w(5, 10), s("0.2366", "0.7634"));
    assert_eq!(w(1, 3), s("0.0615", "0.7923"));
    assert_eq!(w(2, 7), s("0.0822", "0.6411"));
    assert_eq!(w(1, 1), s("0.2065", "1.0000"));
    assert_eq!(w(0, 1), s("0.0000", "0.7935"));
    // More successes than trials count as all.
    assert_eq!(w(12, 10), s("0.7225", "1.0000"));
    assert_eq!(wilson(3, 0), None);
    let i = wilson(10, 10).unwrap();
    assert!(i.high <= 1.0 && i.low >= 0.0);
    let i = wilson(0, 10).unwrap();
    assert!(i.low >= 0.0 && i.low < 1e-12);
}

#[test]
fn tallies_count_outcomes_agreement_and_edits() {
    let s = |draft: Json, value: Option<Json>, text: bool, outcome: Outcome| Sample {
        outcome,
        ..sample(draft, value, text)
    };
    let samples = [
        s(json!("Ab"), Some(json!("Ab")), true, Outcome::Approved),
        s(json!("Ab"), Some(json!("ab")), true, Outcome::Approved),
        s(json!("Ab"), Some(json!("xyz")), true, Outcome::Approved),
        s(json!("Ab"), None, true, Outcome::Rejected),
        s(json!("Ab"), None, true, Outcome::Escalated),
        s(json!("Ab"), None, true, Outcome::HandedOff),
        s(json!("Ab"), None, true, Outcome::HandedOff),
    ];
    let grouped = rows(&samples);
    assert_eq!(grouped.len(), 1);
    let t = &grouped[0].total;
    assert_eq!(
        *t,
        Tally {
            n: 7,
            agree: 1,
            approved: 3,
            rejected: 1,
            escalated: 1,
            handed_off: 2,
            agree_normalised: 2,
            distance_sum: 4,
            distances: 3,
        }
    );
    assert_eq!(t.agreement(), Some(1.0 / 7.0));
    assert_eq!(t.normalised_agreement(), Some(2.0 / 7.0));
    assert_eq!(t.mean_edit_distance(), Some(4.0 / 3.0));
    assert_eq!(t.interval(), wilson(1, 7));
    let empty = Tally::default();
    assert_eq!(
        (
            empty.agreement(),
            empty.normalised_agreement(),
            empty.mean_edit_distance(),
            empty.interval()
        ),
        (None, None, None, None)
    );
    // Not free text: no normalised agreement, no distances.
    let grouped = rows(&[s(json!("Ab"), Some(json!("ab")), false, Outcome::Approved)]);
    let t = &grouped[0].total;
    assert_eq!((t.agree_normalised, t.distances, t.distance_sum), (0, 0, 0));
    assert!(!grouped[0].text);
}

#[test]
fn rows_group_by_workflow_version_step_slice_and_keep_field_order() {
    let mk = |wf: &str, v: i64, step: &str, field: &str, slice: Option<&str>, at: i64| Sample {
        workflow: wf.into(),
        version: v,
        step: step.into(),
        field: field.into(),
        slice: slice.map(str::to_string),
        at_ms: at,
        ..sample(json!(1), Some(json!(1)), false)
    };
    let week = 7 * 86_400_000;
    let monday = 4 * 86_400_000;
    let samples = [
        mk("w", 2, "s", "zeta", None, monday),
        mk("w", 2, "s", "alpha", None, monday + week + 5),
        mk("w", 2, "s", "zeta", None, monday + 1),
        mk("w", 1, "s", "only", None, monday),
        mk("a", 9, "s", "f", None, monday),
        mk("w", 2, "r", "f", None, monday),
        mk("w", 2, "s", "zeta", Some("b"), monday),
        mk("w", 2, "s", "alpha", Some("a"), monday),
        mk("w", 2, "s", "zeta", None, monday + 2 * week),
    ];
    let grouped = rows(&samples);
    type Seen<'a> = (&'a str, i64, &'a str, &'a str, Option<&'a str>, usize);
    let keys: Vec<Seen<'_>> = grouped
        .iter()
        .map(|r| {
            (
                r.key.workflow.as_str(),
                r.key.version,
                r.key.step.as_str(),
                r.key.field.as_str(),
                r.key.slice.as_deref(),
                r.position,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("a", 9, "s", "f", None, 0),
            ("w", 1, "s", "only", None, 0),
            ("w", 2, "r", "f", None, 0),
            ("w", 2, "s", "zeta", None, 0),
            ("w", 2, "s", "alpha", None, 1),
            ("w", 2, "s", "alpha", Some("a"), 1),
            ("w", 2, "s", "zeta", Some("b"), 0),
        ]
    );
    let zeta = &grouped[3];
    assert_eq!(zeta.total.n, 3);
    let weeks: Vec<(i64, u64)> = zeta.weeks.iter().map(|(w, t)| (*w, t.n)).collect();
    assert_eq!(weeks, [(monday, 2), (monday + 2 * week, 1)]);
    assert_eq!(grouped[4].weeks[0].0, monday + week);
    assert_eq!(
        grouped[0].key,
        Key {
            workflow: "a".into(),
            version: 9,
            step: "s".into(),
            field: "f".into(),
            slice: None,
        }
    );
    // A row is free text when any of its samples is.
    let mut text = mk("w", 1, "s", "f", None, 0);
    text.text = true;
    let grouped = rows(&[mk("w", 1, "s", "f", None, 0), text]);
    assert!(grouped[0].text);
}

#[test]
fn weeks_start_on_mondays_before_and_after_the_epoch() {
    let day = 86_400_000;
    // 1970-01-01 was a Thursday: its week began on Monday 1969-12-29.
    assert_eq!(week_of(0), -3 * day);
    assert_eq!(week_of(4 * day - 1), -3 * day);
    assert_eq!(week_of(4 * day), 4 * day);
    assert_eq!(week_of(11 * day - 1), 4 * day);
    assert_eq!(week_of(11 * day), 11 * day);
    assert_eq!(week_of(-3 * day - 1), -10 * day);
}

#[test]
fn latest_changes_are_the_newest_edits_first() {
    let mk = |id: &str, field: &str, at: i64, value: Option<Json>| Sample {
        review_id: id.into(),
        field: field.into(),
        at_ms: at,
        ..sample(json!("d"), value, true)
    };
    let samples = [
        mk("r1", "a", 10, Some(json!("x"))),
        mk("r2", "a", 30, Some(json!("d"))),
        mk("r3", "a", 20, None),
        mk("r4", "b", 20, Some(json!("y"))),
        mk("r4", "a", 20, Some(json!("y"))),
        mk("r5", "a", 20, Some(json!("y"))),
        mk("r6", "a", 5, Some(json!("y"))),
    ];
    let got: Vec<(&str, &str)> = latest_changes(&samples, 4)
        .iter()
        .map(|s| (s.review_id.as_str(), s.field.as_str()))
        .collect();
    assert_eq!(got, [("r5", "a"), ("r4", "a"), ("r4", "b"), ("r1", "a")]);
    assert_eq!(latest_changes(&samples, 10).len(), 5);
    assert!(latest_changes(&samples, 0).is_empty());
}

#[test]
fn text_measures() {
    assert_eq!(normalise(" A\tb\n\nC "), "a b c");
    assert_eq!(normalise(""), "");
    let cases = [
        ("", "", 0),
        ("abc", "", 3),
        ("", "ab", 2),
        ("abc", "abc", 0),
        ("abc", "abd", 1),
        ("xbc", "abc", 1),
        ("abc", "ab", 1),
        ("ab", "abc", 1),
        ("bc", "abc", 1),
        ("kitten", "sitting", 3),
        ("sitting", "kitten", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        ("abcdef", "azced", 3),
        ("xabcx", "xbcax", 2),
        ("aXbYc", "aZbWc", 2),
        ("ab", "ba", 2),
        ("héllo wörld", "hello world", 2),
    ];
    for (a, b, d) in cases {
        assert_eq!(levenshtein(a, b), d, "{a:?} {b:?}");
    }
}

#[test]
fn an_empty_evidence_is_the_default() {
    let ev = evidence(&[], &Query::default());
    assert_eq!(ev, Evidence::default());
    assert!(rows(&ev.samples).is_empty());
}
