//! The `check` helper: a workflow and an input in, a deterministic text
//! transcript of what the run did out, for snapshot tests with `expect-test`.
//!
//! A transcript is the run's final state, then one line per audit event:
//! `kind actor {data}`. Data is rendered as compact JSON with sorted keys,
//! and what changes from one execution to the next is replaced by a
//! placeholder: the run id (`<run>`), other UUIDs (`<id>`), digests
//! (`<hash>`), times and durations (`*_ms` → `<ms>`), and local ports
//! (`127.0.0.1:<port>`).

use std::sync::Arc;

use engine::SubmitError;
use serde_json::Value as Json;
use store::Store;

use crate::fixture;

/// Runs `workflow_yaml` once on `input` until the run settles, and renders
/// what happened.
pub async fn check(workflow_yaml: &str, input: Json) -> String {
    check_env(workflow_yaml, input, &[]).await
}

/// [`check`] with `${env:NAME}` values (e.g. a fake's URL).
pub async fn check_env(workflow_yaml: &str, input: Json, env: &[(&str, &str)]) -> String {
    let (engine, store) = fixture::engine_with_env(workflow_yaml, env).await;
    let name = fixture::workflow_name(&engine);
    let submitted = match engine.submit(&name, input, None, "test").await {
        Ok(s) => s,
        Err(SubmitError::InvalidInput(fields)) => {
            let mut out = String::from("rejected: invalid input\n");
            for f in fields {
                out.push_str(&format!("  {}: {}\n", f.pointer, f.message));
            }
            let runs = store
                .list_runs(&store::RunFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("list runs");
            out.push_str(&format!("runs created: {}\n", runs.len()));
            return out;
        }
        Err(e) => panic!("submit failed: {e}"),
    };
    fixture::wait_settled(&store, &submitted.run_id).await;
    fixture::assert_chain(&store, &submitted.run_id).await;
    let out = transcript(&store, &submitted.run_id).await;
    engine.shutdown(std::time::Duration::from_secs(1)).await;
    out
}

/// Renders a run's current state and its audit events (see the module doc).
pub async fn transcript(store: &Arc<dyn Store>, run_id: &str) -> String {
    let run = store
        .run(run_id)
        .await
        .expect("read the run")
        .unwrap_or_else(|| panic!("run {run_id} not found"));
    let mut out = format!("status: {}", run.status);
    if let Some(w) = run.wait {
        out.push_str(&format!(" ({})", w.as_str()));
    }
    if let Some(o) = &run.outcome {
        out.push_str(&format!(", outcome: {o}"));
    }
    if let Some(e) = &run.error {
        out.push_str(&format!(", error: {}", scrub_str(e, run_id)));
    }
    out.push('\n');
    for e in fixture::events(store, run_id).await {
        let data = serde_json::from_str::<Json>(&e.data).unwrap_or(Json::String(e.data.clone()));
        out.push_str(&format!(
            "{} {} {}\n",
            e.kind,
            e.actor,
            render(&scrub(&data, run_id))
        ));
    }
    out
}

/// Keys whose values are digests.
const HASH_KEYS: &[&str] = &[
    "request_digest",
    "digest",
    "hash",
    "prev_hash",
    "prompt_hash",
];

/// Replaces volatile values with placeholders.
pub fn scrub(v: &Json, run_id: &str) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if k.ends_with("_ms") && v.is_number() {
                        Json::String("<ms>".into())
                    } else if HASH_KEYS.contains(&k.as_str()) && v.is_string() {
                        Json::String("<hash>".into())
                    } else {
                        scrub(v, run_id)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(|i| scrub(i, run_id)).collect()),
        Json::String(s) => Json::String(scrub_str(s, run_id)),
        other => other.clone(),
    }
}

/// Replaces the run id, other UUIDs and local ports inside a string.
pub fn scrub_str(s: &str, run_id: &str) -> String {
    let s = if run_id.is_empty() {
        s.to_string()
    } else {
        s.replace(run_id, "<run>")
    };
    let s = replace_uuids(&s);
    replace_ports(&s)
}

fn replace_uuids(s: &str) -> String {
    const SHAPE: [usize; 5] = [8, 4, 4, 4, 12];
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'scan: while i < b.len() {
        if i + 36 <= b.len() && s.is_char_boundary(i) {
            let mut j = i;
            let mut ok = true;
            for (n, len) in SHAPE.iter().enumerate() {
                if !b[j..j + len].iter().all(u8::is_ascii_hexdigit) {
                    ok = false;
                    break;
                }
                j += len;
                if n < 4 {
                    if b[j] != b'-' {
                        ok = false;
                        break;
                    }
                    j += 1;
                }
            }
            if ok {
                out.push_str("<id>");
                i += 36;
                continue 'scan;
            }
        }
        let ch = s[i..].chars().next().expect("inside the string");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn replace_ports(s: &str) -> String {
    const HOSTS: [&str; 2] = ["127.0.0.1:", "localhost:"];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((at, host)) = HOSTS
        .iter()
        .filter_map(|h| rest.find(h).map(|at| (at, *h)))
        .min_by_key(|(at, _)| *at)
    {
        let after = at + host.len();
        let digits = rest[after..].bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..after]);
        if digits > 0 {
            out.push_str("<port>");
        }
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

/// Compact JSON with object keys sorted, whatever map order serde_json uses.
pub fn render(v: &Json) -> String {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Json::String(k.clone()), render(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scrubs_volatile_values() {
        let run = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let v = json!({
            "key": format!("{run}:call"),
            "other": "see 0190a1b2-c3d4-7e5f-8a9b-ffffffffffff now",
            "until_ms": 1_700_000_000_000i64,
            "retry_after_ms": null,
            "request_digest": "abc",
            "error": "POST http://127.0.0.1:41234/hook answered 503",
            "z": [1, "é"],
        });
        assert_eq!(
            render(&scrub(&v, run)),
            r#"{"error":"POST http://127.0.0.1:<port>/hook answered 503","key":"<run>:call","other":"see <id> now","request_digest":"<hash>","retry_after_ms":null,"until_ms":"<ms>","z":[1,"é"]}"#
        );
    }
}
