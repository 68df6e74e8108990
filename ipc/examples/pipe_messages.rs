//! A sender process and a receiver process joined by a one-way pipe: the
//! sender sends four words and an end marker; the receiver prints what it gets.
//!
//! ```text
//! cargo run -p outlast-ipc --example pipe_messages [-- spawn]
//! ```

use outlast_ipc::{Connection, Pipe, Process, StartMethod};

fn sender(mut conn: Connection) -> usize {
    let words = ["Hello", "World", "Python", "Concurrency"];
    for word in words {
        if conn.send(&Some(word)).is_err() {
            break;
        }
        println!("Sent the message: {word}");
    }
    // The end marker: Python's version sends None.
    let _ = conn.send(&None::<String>);
    words.len()
}

fn receiver(mut conn: Connection) -> Vec<String> {
    let mut got = Vec::new();
    // Stops at the end marker, or when the sender is gone.
    while let Ok(Some(word)) = conn.recv::<Option<String>>() {
        println!("Received the message: {word}");
        got.push(word);
    }
    got
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let (rx, tx) = Pipe::simplex()?;
    let mut send_proc = Process::new(sender, tx)
        .named("sender")
        .start_method(method);
    let mut recv_proc = Process::new(receiver, rx)
        .named("receiver")
        .start_method(method);
    send_proc.start()?;
    recv_proc.start()?;
    let sent = send_proc.join()?;
    let received = recv_proc.join()?;
    println!(
        "sent {sent}, received {}: {}",
        received.len(),
        received.join(" ")
    );
    Ok(())
}
