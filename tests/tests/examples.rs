//! Runs every example of the `ipc` crate, with each start method, and checks
//! what it prints. The examples are built by `cargo test --workspace`.

use std::process::Command;

fn run_example(name: &str, method: &str) -> String {
    let path = tests::example_path(name);
    let output = Command::new(&path)
        .arg(method)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (built by `cargo test --workspace`)",
                path.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} {method} failed: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn hello_greets_bob_from_a_child() {
    for method in ["fork", "spawn"] {
        let out = run_example("hello", method);
        assert!(out.contains("hello bob"), "{out}");
        assert!(out.contains("process name: bob-greeter"), "{out}");
        assert!(out.contains("process name: MainProcess"), "{out}");
        assert!(out.contains("child exit code: Some(0)"), "{out}");
    }
}

#[test]
fn pipe_messages_arrive_in_order_until_the_end_marker() {
    for method in ["fork", "spawn"] {
        let out = run_example("pipe_messages", method);
        assert!(
            out.contains("sent 4, received 4: Hello World Python Concurrency"),
            "{out}"
        );
        for word in ["Hello", "World", "Python", "Concurrency"] {
            assert!(
                out.contains(&format!("Received the message: {word}")),
                "{out}"
            );
        }
    }
}

#[test]
fn ping_pong_counts_every_round() {
    for method in ["fork", "spawn"] {
        let out = run_example("ping_pong", method);
        assert!(
            out.contains("1000 rounds, final value 1000, child answered 1000"),
            "{out}"
        );
    }
}
