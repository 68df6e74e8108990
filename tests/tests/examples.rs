//! Runs every example of the `ipc` crate, with each start method (fork,
//! spawn, forkserver), and `outlast`'s ipc-channel peer, and checks what
//! they print. The examples are built by `cargo test --workspace`.

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
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("hello", method);
        assert!(out.contains("hello bob"), "{out}");
        assert!(out.contains("process name: bob-greeter"), "{out}");
        assert!(out.contains("process name: MainProcess"), "{out}");
        assert!(out.contains("child exit code: Some(0)"), "{out}");
    }
}

#[test]
fn pipe_messages_arrive_in_order_until_the_end_marker() {
    for method in ["fork", "spawn", "forkserver"] {
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
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("ping_pong", method);
        assert!(
            out.contains("1000 rounds, final value 1000, child answered 1000"),
            "{out}"
        );
    }
}

#[test]
fn value_array_counts_five_processes() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("value_array", method);
        assert!(out.contains("Value: 5"), "{out}");
        assert!(out.contains("Array: [5, 5, 5, 5, 5]"), "{out}");
    }
}

#[test]
fn locked_counter_reaches_exactly_a_million() {
    let out = run_example("locked_counter", "fork");
    assert!(
        out.contains("10 processes x 100000 increments: counter = 1000000, reported 1000000"),
        "{out}"
    );
}

#[test]
fn value_pi_is_set_and_the_array_negated_by_a_child() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("value_pi", method);
        assert!(out.contains("3.1415927\n"), "{out}");
        assert!(
            out.contains("[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]"),
            "{out}"
        );
    }
}

#[test]
fn bounded_buffer_passes_every_item_once() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("bounded_buffer", method);
        assert!(
            out.contains("consumed 1000 items through 4 slots, sum 500500 (expected 500500)"),
            "{out}"
        );
    }
}

#[test]
fn barrier_phases_see_every_quarter() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("barrier_phases", method);
        for party in 0..4 {
            assert!(
                out.contains(&format!("party {party} saw sum 8002000 (expected 8002000)")),
                "{out}"
            );
        }
    }
}

#[test]
fn queue_items_arrive_in_order_until_the_end_marker() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("queue_items", method);
        for i in 0..5 {
            assert!(out.contains(&format!("Consuming: Item-{i}")), "{out}");
        }
        assert!(out.contains("produced 5, consumed 5"), "{out}");
    }
}

#[test]
fn task_distributor_collects_every_result() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("task_distributor", method);
        // 1^2 + ... + 30^2 = 9455
        assert!(
            out.contains("30 tasks, 30 handled by 3 workers, sum of squares 9455"),
            "{out}"
        );
    }
}

#[test]
fn joinable_pool_joins_after_every_task_is_done() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("joinable_pool", method);
        assert!(
            out.contains("all tasks done: total 5050 (unfinished 0)"),
            "{out}"
        );
    }
}

#[test]
fn pool_map_squares_one_two_three() {
    for method in ["fork", "spawn", "forkserver"] {
        assert_eq!(run_example("pool_map", method), "[1, 4, 9]\n");
    }
}

#[test]
fn pool_primes_counts_each_range_and_the_total() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("pool_primes", method);
        for line in [
            "primes in [0, 100000): 9592",
            "primes in [700000, 800000): 7408",
            "total: 63951",
        ] {
            assert!(out.contains(line), "{line} missing:\n{out}");
        }
        assert_eq!(out.lines().count(), 9, "{out}");
    }
}

#[test]
fn pool_initializer_scales_every_chunk() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("pool_initializer", method);
        assert!(out.contains("[999000, 999000, 999000, 999000]"), "{out}");
        assert!(out.contains("total: 3996000"), "{out}");
    }
}

#[test]
fn custom_job_sums_the_squares() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("custom_job", method);
        assert!(
            out.contains("sum of squares below 1e6: 333332833333500000"),
            "{out}"
        );
    }
}

#[test]
fn manager_workers_share_a_count_a_list_and_a_dict() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("manager_workers", method);
        assert!(out.contains("count: 3\n"), "{out}");
        assert!(
            out.contains(r#"names: ["Worker-0", "Worker-1", "Worker-2"]"#),
            "{out}"
        );
        assert!(out.contains("dict: 3 entries"), "{out}");
        for name in ["Worker-0", "Worker-1", "Worker-2"] {
            assert!(out.contains(&format!("  {name}: ")), "{out}");
        }
    }
}

#[test]
fn manager_remote_clients_share_a_job_queue_and_a_results_dict_over_tcp() {
    let out = run_example("manager_remote", "demo");
    assert!(out.contains("manager serving on 127.0.0.1:"), "{out}");
    assert!(out.contains("results: 20 entries"), "{out}");
    assert!(out.contains("sum of squares: 2870\n"), "{out}");
    assert!(out.contains("  3^2 = 9\n"), "{out}");
    assert!(out.contains("a wrong key: the manager refused us"), "{out}");
}

#[test]
fn async_manager_adds_exactly_from_tasks_and_processes_under_one_lock() {
    for method in ["fork", "spawn", "forkserver"] {
        let out = run_example("async_manager", method);
        assert!(
            out.contains("a take timed out while the lock was held: true\n"),
            "{out}"
        );
        assert!(out.contains("barrier passed"), "{out}");
        assert!(out.contains("count: 600\n"), "{out}");
    }
}

/// `outlast`'s comparison with the ipc-channel crate (here, not beside the
/// `supervisor` binary's tests: a plain `cargo test` at the root tests the
/// binary alone and builds no example of another crate).
#[test]
fn the_ipc_channel_peer_example_measures_three_sizes() {
    let path = tests::example_path("ipc_channel_peer");
    let out = Command::new(&path)
        .arg("--quick")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (built by `cargo test --workspace`)",
                path.display()
            )
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|r| r["msgs_per_s"].as_f64().is_some_and(|v| v > 0.0)));
}
