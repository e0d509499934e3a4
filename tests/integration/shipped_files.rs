//! Every shipped config file loads and validates.

use std::path::Path;

use toolgate::config::Config;

#[test]
fn shipped_servers_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("toolgate.toml");
    std::fs::write(
        &cfg,
        format!("servers_dir = \"{}\"\n", root.join("servers").display()),
    )
    .unwrap();
    let config = Config::load(Some(&cfg), "toolgate").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.servers.len() >= 2,
        "at least two upstreams out of the box"
    );
}

#[test]
fn shipped_examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let cfg = entry.path().join("toolgate.toml");
        if cfg.is_file() {
            // Example servers may reference env vars; give them harmless values.
            Config::load(Some(&cfg), "toolgate")
                .unwrap_or_else(|e| panic!("{}: {e}", cfg.display()));
            checked += 1;
        }
    }
    assert!(
        checked >= 1,
        "no example configs found under {}",
        root.display()
    );
}
