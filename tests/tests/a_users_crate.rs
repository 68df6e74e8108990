//! The project as a user meets it: a crate outside the workspace, made in a
//! temp dir, that depends on `outlast` by path with default features and
//! runs a `Pool` map in a debug build. What it compiles is checked with
//! `cargo tree`: none of the binary's crates may be there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates only the `supervisor` binary (or an opt-in feature) may pull in.
const BINARY_ONLY: [&str; 6] = [
    "ratatui",
    "redis",
    "prometheus-client",
    "clap",
    "indicatif",
    "hdrhistogram",
];

const MAIN: &str = r#"use outlast::pool::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    outlast::ipc::init();
    let pool = Pool::new(2).expect("a pool of two workers");
    let squares = pool.map(square, 0..10_000u64).expect("map");
    println!("sum of squares: {}", squares.iter().sum::<u64>());
}
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the tests crate")
        .to_path_buf()
}

/// A crate named `users_program` in a fresh temp dir, locked to the
/// workspace's versions (so no registry is asked for anything new).
fn users_crate(features: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "outlast-users-crate-{}-{}",
        std::process::id(),
        features.replace([',', ' ', '"'], "")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).expect("make the crate's dir");
    let manifest = format!(
        "[package]\nname = \"users_program\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\noutlast = {{ path = {:?}{features} }}\n\n[workspace]\n",
        workspace().join("supervisor"),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), MAIN).expect("write main.rs");
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy the lock");
    dir
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        // Its own target dir (shared between runs): the workspace's is
        // locked by the `cargo test` running this.
        .env("CARGO_TARGET_DIR", workspace().join("target/users-crate"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo")
}

/// The crates (names) in the user's dependency graph, normal edges only.
fn tree(dir: &Path) -> Vec<String> {
    let out = cargo(
        dir,
        &[
            "tree", "--edges", "normal", "--prefix", "none", "--format", "{p}",
        ],
    );
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn a_pool_user_compiles_none_of_the_binarys_crates_and_gets_the_exact_answer() {
    let dir = users_crate("");
    let crates = tree(&dir);
    assert!(crates.iter().any(|c| c == "outlast"), "{crates:?}");
    for banned in BINARY_ONLY {
        assert!(
            !crates.iter().any(|c| c == banned),
            "a Pool user compiles {banned}: {crates:?}"
        );
    }
    let out = cargo(&dir, &["run", "--quiet"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // sum of x^2 for x < 10,000 = (n-1) n (2n-1) / 6 with n = 10,000.
    assert_eq!(stdout.trim(), "sum of squares: 333283335000");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_feature_brings_only_its_own_crate() {
    for (feature, brings) in [
        ("progress", "indicatif"),
        ("metrics", "prometheus-client"),
        ("broker", "redis"),
    ] {
        let dir = users_crate(&format!(", features = [\"{feature}\"]"));
        let crates = tree(&dir);
        assert!(crates.iter().any(|c| c == brings), "{feature}: {crates:?}");
        for banned in BINARY_ONLY.iter().filter(|&&c| c != brings) {
            assert!(
                !crates.iter().any(|c| c == banned),
                "feature {feature} brings {banned}: {crates:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
