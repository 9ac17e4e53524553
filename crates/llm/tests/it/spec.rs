//! The fake speaks the real format, and can tell a bad request: without
//! that, the other tests would prove nothing about the wire.

use countersign_llm::heuristic::{Spec, Task};
use countersign_llm::openai::OpenAi;
use countersign_llm::provider::{Message, Request};
use countersign_llm::schema::Output;
use serde_json::json;
use test_kit::fake_openai::request_problems;

/// The request body the provider sends for an `output:` block.
fn body_for(output_yaml: &str) -> serde_json::Value {
    let root = domain::yaml::parse(output_yaml, &|_| None).unwrap();
    let node = root.as_map().unwrap()[0].1.clone();
    let mut cx = domain::workflow::Cx::default();
    let output = Output::parse(&node, &mut cx).unwrap_or_else(|| panic!("{:?}", cx.errors));
    let vars = Default::default();
    let heuristic = Spec::default();
    let task = Task {
        fields: &output.fields,
        spec: &heuristic,
        vars: &vars,
        text: String::new(),
    };
    let messages = [
        Message {
            role: "system",
            content: "s".into(),
        },
        Message {
            role: "user",
            content: "u".into(),
        },
    ];
    OpenAi::body(&Request {
        model: "gpt-4o-mini",
        messages: &messages,
        schema_name: "triage_2",
        schema: &output.strict,
        max_tokens: 100,
        temperature: Some(0.0),
        timeout: std::time::Duration::from_secs(1),
        task: &task,
    })
}

#[test]
fn strict_schemas_we_generate_pass_the_api_rules() {
    let body = body_for(
        "output:\n  a: { type: string, minLength: 1, maxLength: 5, format: uri, pattern: '^h' }\n  b: { type: integer, optional: true, minimum: 1 }\n  c: { type: array, items: { enum: [x, y] }, uniqueItems: true, maxItems: 2 }\n  d: { type: object, properties: { e: { type: boolean }, f: { anyOf: [{ type: string }, { type: number }] } }, required: [e] }\n  g: { const: fixed, optional: true }\n",
    );
    assert_eq!(request_problems(&body), Vec::<String>::new(), "{body:#}");
}

#[test]
fn the_fake_refuses_what_the_api_refuses() {
    let problems = request_problems(&json!({ "model": "gpt-4o-mini" }));
    assert!(
        problems.iter().any(|p| p.contains("messages")),
        "{problems:?}"
    );

    let mut body = body_for("output:\n  a: string\n");
    body["response_format"]["json_schema"]["schema"]["properties"]["a"]["maxLength"] = json!(3);
    body["response_format"]["json_schema"]["schema"]["required"] = json!([]);
    body["response_format"]["json_schema"]["name"] = json!("has space");
    let problems = request_problems(&body).join("\n");
    assert!(
        problems.contains("keyword `maxLength` is not supported"),
        "{problems}"
    );
    assert!(
        problems.contains("property `a` must be listed in required"),
        "{problems}"
    );
    assert!(
        problems.contains("must be 1-64 of [a-zA-Z0-9_-]"),
        "{problems}"
    );

    let mut body = body_for("output:\n  a: string\n");
    body["messages"][0]["role"] = json!("wizard");
    assert!(
        !request_problems(&body).is_empty(),
        "an unknown role breaks the spec's schema"
    );
}
