//! Loading `llm` steps: located errors at `validate` time, prompt files read
//! relative to the workflow, and a prompt's content stored with the
//! workflow version so an old version keeps its prompt.

use std::sync::Arc;

use engine::{Catalog, Files};
use expect_test::expect;
use store::Store;
use store_sqlite::SqliteStore;
use test_kit::fake_openai::{FakeOpenAi, Reply};
use test_kit::fixture;

use crate::{PROMPT, engine_on, events_of, good_answer, input, kinds, run, workflow};

fn load_errors(yaml: &str, files: &[(&str, &str)]) -> String {
    let files = Files::Given(
        files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect(),
    );
    match engine::compile_with(
        yaml,
        "wf.yaml",
        &kinds("http://127.0.0.1:9/v1", None),
        &fixture::env(&[]),
        &files,
    ) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mistakes_are_reported_with_their_location() {
    let yaml = r#"name: bad
steps:
  - id: triage
    llm:
      provider: opneai
      model: gpt-4o-mini
      fallback: [heuristic, heuristic]
      prompt: prompts/missing.md.j2
      repair_attempts: 9
      temperature: 3
      output:
        intent: { enum: [a, b], default: a }
        note: { type: string, minLenght: 3 }
      heuristic:
        words: { intent: { c: [x] } }
  - id: inline
    llm:
      model: m
      prompt: "Hello {{ inptu.name }}"
      output: { x: string }
"#;
    expect![[r#"
        wf.yaml:5:17: steps[0].llm.provider: unknown provider `opneai` (did you mean `openai`?)
        wf.yaml:7:29: steps[0].llm.fallback[1]: `heuristic` is already in the chain
        wf.yaml:8:15: steps[0].llm.prompt: cannot read "prompts/missing.md.j2": no such file in this workflow version
        wf.yaml:9:24: steps[0].llm.repair_attempts: repair_attempts must be 0 to 5
        wf.yaml:10:20: steps[0].llm.temperature: temperature must be between 0 and 2
        wf.yaml:12:42: steps[0].llm.output.intent.default: `default`: a model's answer has no default (and strict mode rejects `default`); mark the field `optional: true` instead
        wf.yaml:13:42: steps[0].llm.output.note.minLenght: unknown schema keyword `minLenght` (did you mean `minLength`?)
        wf.yaml:19:15: steps[1].llm.prompt: prompt template: unknown variable "inptu""#]]
    .assert_eq(&load_errors(yaml, &[]));
}

#[test]
fn the_reference_prompt_shapes_load() {
    assert_eq!(
        load_errors(
            &workflow("[heuristic]", ""),
            &[("prompts/triage.md.j2", PROMPT)]
        ),
        "ok"
    );
    let inline = workflow("[heuristic]", "").replace(
        "prompt: prompts/triage.md.j2",
        "prompt: { text: 'Classify {{ input.message }}' }",
    );
    assert_eq!(load_errors(&inline, &[]), "ok");
    let errors = load_errors(
        &workflow("[heuristic]", "").replace("prompts/triage.md.j2", "../outside.md.j2"),
        &[],
    );
    assert!(errors.contains("`..` is not allowed"), "{errors}");
}

#[tokio::test]
async fn prompt_files_are_read_relative_to_the_workflow_file_on_disk() {
    let dir = std::env::temp_dir().join(format!("countersign-llm-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    std::fs::write(dir.join("prompts/triage.md.j2"), PROMPT).unwrap();
    let file = dir.join("wf.yaml");
    std::fs::write(&file, workflow("[heuristic]", "")).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().unwrap());
    let catalog = Catalog::new(
        kinds("http://127.0.0.1:9/v1", None),
        fixture::env(&[]),
        store.clone(),
    );
    let c = catalog
        .load_file(&file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        c.source.contains("# countersign:bundle v1"),
        "the prompt is stored with the version"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_old_version_keeps_its_prompt_after_the_file_changes() {
    let fake = FakeOpenAi::start(Reply::Json(good_answer())).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().unwrap());
    let yaml = workflow("[heuristic]", "");
    let v1_prompt = PROMPT;
    let v2_prompt = "NEW PROMPT. Message: {{ input.message }}";

    let engine = engine_on(
        store.clone(),
        &yaml,
        &[("prompts/triage.md.j2", v1_prompt)],
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r1 = run(&engine, &store, input()).await;
    engine.shutdown(std::time::Duration::from_secs(1)).await;

    // Same workflow file, changed prompt: a new version.
    let engine = engine_on(
        store.clone(),
        &yaml,
        &[("prompts/triage.md.j2", v2_prompt)],
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r2 = run(&engine, &store, input()).await;
    assert_eq!(
        (r1.version, r2.version),
        (1, 2),
        "a changed prompt is a new version"
    );
    let h1 = events_of(&store, &r1.id, "llm.requested").await[0]["prompt_hash"].clone();
    let h2 = events_of(&store, &r2.id, "llm.requested").await[0]["prompt_hash"].clone();
    assert_ne!(h1, h2);

    // A node that has neither file compiles version 1 from the store, with
    // version 1's prompt: its hash matches what was stored.
    let stored = store
        .workflow_version("triage-test", 1)
        .await
        .unwrap()
        .unwrap();
    let (_, files) = engine::unbundle(&stored.source);
    assert_eq!(
        files,
        [("prompts/triage.md.j2".to_string(), v1_prompt.to_string())]
    );
    let fresh = Catalog::new(kinds(&fake.url(), None), fixture::env(&[]), store.clone());
    let v1 = fresh
        .version("triage-test", 1)
        .await
        .unwrap()
        .expect("version 1");
    assert_eq!(
        v1.hash, stored.hash,
        "recompiled from the stored bundle, byte for byte"
    );
    assert!(v1.source.contains("Triage this inbound request."));
}
