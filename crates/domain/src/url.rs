//! URL templates for outbound calls: each `{{ value }}` is percent-encoded
//! for the URL component it sits in (a path segment, a query value), so a
//! value can never change the path's shape, add a query or reach another
//! host. The scheme, host and port are written in the workflow file; a
//! placeholder before the path is allowed only with an explicit host
//! allow-list, checked again at run time by the caller.

use crate::diag::Diagnostic;
use crate::expr::{Scope, Template, Vars};
use crate::yaml::Node;

/// Where a placeholder sits, which decides how its value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Before the path (scheme, host, port) or the whole URL: inserted as
    /// is; only allowed with `allow_hosts`.
    Origin,
    /// Inside a path segment: `/`, `?`, `#`, `%` and the rest are encoded.
    Path,
    /// Inside the query: `&`, `=`, `+`, `#` and the rest are encoded.
    Query,
    /// Inside the fragment.
    Fragment,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Value(Template, Component),
}

/// A compiled URL template.
#[derive(Debug, Clone)]
pub struct UrlTemplate {
    source: String,
    parts: Vec<Part>,
}

impl UrlTemplate {
    /// Compiles `node`'s string; placeholders are `{{ expr }}` only.
    pub fn compile(node: &Node, scope: &Scope) -> Result<UrlTemplate, Diagnostic> {
        let source = node.as_str()?.to_string();
        if source.contains("{%") {
            return Err(node.error(
                "url takes `{{ value }}` placeholders only (no `{% %}` blocks): \
                 compute the value in an earlier step",
            ));
        }
        let mut parts = Vec::new();
        // The literal text so far, each placeholder as one `MARK`, to tell
        // which component the next placeholder sits in.
        let mut shape = String::new();
        let mut rest = source.as_str();
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                return Err(node.error("invalid template: `{{` without `}}`"));
            };
            let literal = &rest[..start];
            if !literal.is_empty() {
                parts.push(Part::Literal(literal.to_string()));
                shape.push_str(literal);
            }
            let expr = &rest[start..start + len + 2];
            let t = Template::compile_str(node, expr.to_string(), scope)?;
            parts.push(Part::Value(t, component_after(&shape)));
            shape.push(MARK);
            rest = &rest[start + len + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(UrlTemplate { source, parts })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a placeholder decides the scheme, host or port.
    pub fn host_from_data(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Value(_, Component::Origin)))
    }

    /// `scheme://host[:port]` as written in the file, when no placeholder
    /// comes before the path.
    pub fn fixed_origin(&self) -> Option<&str> {
        if self.host_from_data() {
            return None;
        }
        let Some(Part::Literal(first)) = self.parts.first() else {
            return None;
        };
        let after = first.find("://")? + 3;
        let end = first[after..]
            .find(['/', '?', '#'])
            .map_or(first.len(), |i| after + i);
        Some(&first[..end])
    }

    /// Renders the URL, each value encoded for its component.
    pub fn render(&self, vars: &Vars) -> Result<String, String> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Value(t, at) => {
                    let v = t.render(vars)?;
                    match at {
                        Component::Origin => out.push_str(&v),
                        Component::Path => {
                            if v == "." || v == ".." {
                                return Err(format!("url value {v:?} cannot be a path segment"));
                            }
                            encode_into(&mut out, &v);
                        }
                        Component::Query | Component::Fragment => encode_into(&mut out, &v),
                    }
                }
            }
        }
        // Values next to each other could still spell `..` together.
        let path = path_of(&out);
        if path.split('/').any(|s| s == "." || s == "..")
            && !path_of(&self.source)
                .split('/')
                .any(|s| s == "." || s == "..")
        {
            return Err("url values form a `.` or `..` path segment".into());
        }
        Ok(out)
    }
}

/// Stands for a placeholder in the shape (never valid in a URL).
const MARK: char = '\u{0}';

/// The component a placeholder would sit in after `shape`.
fn component_after(shape: &str) -> Component {
    let Some(scheme_end) = shape.find("://") else {
        return Component::Origin;
    };
    let after = &shape[scheme_end + 3..];
    let Some(i) = after.find(['/', '?', '#']) else {
        return Component::Origin;
    };
    // A placeholder in the host or port: `https://{{ h }}/…`.
    if after[..i].contains(MARK) {
        return Component::Origin;
    }
    let tail = &after[i..];
    if tail.contains('#') {
        Component::Fragment
    } else if tail.contains('?') {
        Component::Query
    } else {
        Component::Path
    }
}

/// The path of a URL string: after the authority, before `?` or `#`.
fn path_of(url: &str) -> &str {
    let after = url.find("://").map_or(url, |i| &url[i + 3..]);
    let start = after.find('/').unwrap_or(after.len());
    let path = &after[start..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_into(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::value_from_json;
    use crate::yaml;
    use serde_json::json;

    fn compile(src: &str) -> Result<UrlTemplate, Diagnostic> {
        let root = yaml::parse(&format!("x: {src:?}\n"), &|_| None).unwrap();
        UrlTemplate::compile(&root.as_map().unwrap()[0].1, &Scope::new(["input"]))
    }

    fn render(src: &str, input: serde_json::Value) -> Result<String, String> {
        let mut vars = Vars::new();
        vars.insert("input".into(), value_from_json(&input));
        compile(src).unwrap().render(&vars)
    }

    #[test]
    fn a_path_value_stays_one_segment() {
        assert_eq!(
            render(
                "http://h:8080/echo/{{ input.name }}",
                json!({"name": "../../internal-metadata?stolen="})
            )
            .unwrap(),
            "http://h:8080/echo/..%2F..%2Finternal-metadata%3Fstolen%3D"
        );
        assert!(render("http://h/a/{{ input.n }}/b", json!({"n": ".."})).is_err());
        assert!(render("http://h/a/{{ input.n }}{{ input.n }}", json!({"n": "."})).is_err());
    }

    #[test]
    fn a_query_value_stays_one_value() {
        assert_eq!(
            render(
                "https://h/s?q={{ input.q }}&page=1",
                json!({"q": "a&admin=1 #x"})
            )
            .unwrap(),
            "https://h/s?q=a%26admin%3D1%20%23x&page=1"
        );
    }

    #[test]
    fn the_origin_is_fixed_unless_a_placeholder_makes_it() {
        let t = compile("https://api.example.test:8443/v1/{{ input.id }}").unwrap();
        assert!(!t.host_from_data());
        assert_eq!(t.fixed_origin(), Some("https://api.example.test:8443"));
        for src in [
            "{{ input.url }}",
            "https://{{ input.host }}/x",
            "https://api.{{ input.tenant }}.example.test/x",
            "http://h:{{ input.port }}/x",
        ] {
            let t = compile(src).unwrap();
            assert!(t.host_from_data(), "{src}");
            assert_eq!(t.fixed_origin(), None, "{src}");
        }
        assert!(compile("https://h/{% if input.a %}a{% endif %}").is_err());
    }
}
