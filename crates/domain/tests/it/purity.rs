//! Architecture invariant: the domain does no I/O. Its manifest may not
//! depend on a runtime, a database driver, an HTTP stack or a clock crate,
//! and its sources may not reach for the file system, the network, the
//! process environment or the wall clock.

const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
    "async-std",
    "reqwest",
    "hyper",
    "axum",
    "rusqlite",
    "tokio-postgres",
    "sqlx",
    "chrono",
    "time",
    "lettre",
    "rand",
];

const FORBIDDEN_CALLS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::env::var",
    "SystemTime::now",
    "Instant::now",
    "std::process",
    "std::thread::spawn",
];

#[test]
fn the_manifest_has_no_io_dependencies() {
    let manifest = include_str!("../../Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    for line in deps.lines() {
        let name = line.split(['.', '=', ' ']).next().unwrap_or("").trim();
        assert!(
            !FORBIDDEN_CRATES.contains(&name),
            "domain depends on `{name}`, which does I/O or reads a clock; keep it in the engine or an adapter"
        );
    }
}

#[test]
fn the_sources_do_no_io() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut checked = 0;
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for call in FORBIDDEN_CALLS {
                assert!(
                    !text.contains(call),
                    "{} uses `{call}`: the domain takes time, randomness and files as arguments",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "found only {checked} source files under {dir}"
    );
}
