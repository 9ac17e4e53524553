//! The mistakes a new user made in the reference workflow, each refused by
//! `countersign validate` with exit 2, its exact message and the position
//! of the mistake (issue: authoring; a misspelled name used to load and
//! be silently empty or false at run time).

use std::path::Path;
use std::process::Command;

use crate::{TempDir, bin};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

/// The reference workflow with `from` replaced by `to` (exactly once),
/// written beside a copy of its prompt; returns validate's exit code, its
/// stderr and the 1-based line and column where `to`'s `mark` sits.
fn validate_variant(from: &str, to: &str, mark: &str) -> (Option<i32>, String, String) {
    let src = std::fs::read_to_string(Path::new(EXAMPLES).join("inbound-request.yaml")).unwrap();
    assert_eq!(src.matches(from).count(), 1, "{from:?} must occur once");
    let bad = src.replacen(from, to, 1);
    let dir = TempDir::new("newcomer");
    std::fs::create_dir_all(dir.0.join("prompts")).unwrap();
    std::fs::copy(
        Path::new(EXAMPLES).join("prompts/triage.md.j2"),
        dir.0.join("prompts/triage.md.j2"),
    )
    .unwrap();
    let file = dir.0.join("wf.yaml");
    std::fs::write(&file, &bad).unwrap();
    let at = bad.find(to).unwrap() + to.find(mark).unwrap();
    let line = bad[..at].matches('\n').count() + 1;
    let col = at - bad[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    let out = Command::new(bin())
        .arg("validate")
        .arg(&file)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "wf.yaml");
    (out.status.code(), stderr, format!("wf.yaml:{line}:{col}"))
}

#[track_caller]
fn assert_refused(from: &str, to: &str, mark: &str, message: &str) {
    let (code, stderr, at) = validate_variant(from, to, mark);
    assert_eq!(code, Some(2), "{stderr}");
    let want = format!("{at}: {message}");
    assert!(
        stderr.lines().any(|l| l == want),
        "want the line\n  {want}\ngot\n{stderr}"
    );
}

#[test]
fn a_misspelled_approved_field_in_the_email_is_refused() {
    assert_refused(
        "body: \"{{ approved.customer_reply_draft }}\"",
        "body: \"{{ approved.customer_reply }}\"",
        "\"{{",
        "steps[6].email.body: `approved` has no field \"customer_reply\" (did you mean \"customer_reply_draft\"?)",
    );
}

#[test]
fn a_misspelled_output_field_in_a_rule_is_refused() {
    assert_refused(
        "- when: triage.human_review_required\n",
        "- when: triage.human_review_requried\n",
        "triage.",
        "steps[1].rules[4].when: `triage` has no field \"human_review_requried\" (did you mean \"human_review_required\"?)",
    );
}

#[test]
fn a_misspelled_input_field_in_a_condition_is_refused() {
    assert_refused(
        "when: approved.crm_update_required or",
        "when: input.compnay and approved.crm_update_required or",
        "input.",
        "steps[4].when: `input` has no field \"compnay\" (did you mean \"company\"?)",
    );
}

#[test]
fn a_misspelled_step_kind_is_reported_at_its_key() {
    assert_refused(
        "  - id: triage\n    llm:\n",
        "  - id: triage\n    lml:\n",
        "lml:",
        "steps[0].lml: unknown step kind `lml` (did you mean `llm`?)",
    );
}

#[test]
fn a_misspelled_review_field_suggests_the_declared_one() {
    assert_refused(
        "fields: [summary, intent,",
        "fields: [summary, intnet,",
        "intnet",
        "steps[2].review.fields[1]: no earlier step declares an output `intnet` (did you mean `intent`?)",
    );
}

#[test]
fn a_control_level_on_a_step_that_ignores_it_is_refused() {
    assert_refused(
        "  - id: record\n    validate:\n",
        "  - id: record\n    control: review\n    validate:\n",
        "validate:",
        "steps[3].validate: `control: review` has no effect on a `validate` step: only crm, email, slack steps act on their control level (put a `review` step before this one instead)",
    );
}

#[test]
fn notify_email_without_email_notification_is_refused() {
    assert_refused(
        "      notify: [slack]                  # posts the task",
        "      notify_email: [ops@example.com]\n      notify: [slack]                  # posts the task",
        "[ops@",
        "steps[2].review.notify_email: notify_email needs `notify: [email]`",
    );
}
