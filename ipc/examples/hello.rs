//! The classic first `multiprocessing` program: a child process says hello
//! and tells who it is.
//!
//! ```text
//! cargo run -p outlast-ipc --example hello            # fork
//! cargo run -p outlast-ipc --example hello -- spawn   # spawn
//! ```

use outlast_ipc::{Process, StartMethod};

fn info(title: &str) {
    let me = outlast_ipc::current_process();
    println!("{title}");
    println!("  process name: {}", me.name);
    println!("  parent process: {}", me.parent_pid);
    println!("  process id: {}", me.pid);
}

fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    info("main line");
    let mut p = Process::new(f, "bob".to_string())
        .named("bob-greeter")
        .start_method(method);
    p.start()?;
    p.join()?;
    println!("child exit code: {:?}", p.exit_code());
    Ok(())
}
