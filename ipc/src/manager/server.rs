//! The manager's server process: one thread, one `poll` over the listener
//! and every client, one request answered at a time. A client that sends
//! garbage is dropped; one that disconnects takes nothing with it.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::protocol::{Kind, Op, Reply, Request};
use crate::net::{Address, Listener};
use crate::pipe::{Connection, TryRecvError};
use crate::{Readable, Waitable};

/// Each accepted client gets this long to authenticate.
const HANDSHAKE: Duration = Duration::from_secs(1);
/// The most requests one batch may hold.
const MAX_BATCH: usize = 4096;

/// A shared object on the server.
enum Object {
    /// Keys in order, so `keys()` and `items()` are stable.
    Map(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// What the server process runs: `(socket path, key, ready)`; `ready`
/// gets `true` once it listens (or `false` and it exits).
pub(super) fn serve((path, key, mut ready): (std::path::PathBuf, Vec<u8>, Connection)) {
    let mut listener = match Listener::bind(&Address::Unix(path), &key) {
        Ok(l) => l,
        Err(_) => {
            let _ = ready.send(&false);
            return;
        }
    };
    listener.set_handshake_timeout(HANDSHAKE);
    if ready.send(&true).is_err() {
        return;
    }
    drop(ready);
    let mut objects: HashMap<u64, Object> = HashMap::new();
    let mut next_id = 1u64;
    let mut clients: Vec<Connection> = Vec::new();
    loop {
        let listening = Readable(listener.as_raw_fd());
        let mut waitables: Vec<&dyn Waitable> = vec![&listening];
        waitables.extend(clients.iter().map(|c| c as &dyn Waitable));
        let Ok(ready) = crate::wait(&waitables, Some(Duration::from_secs(1))) else {
            continue;
        };
        let mut gone = Vec::new();
        for index in ready {
            if index == 0 {
                if let Ok(conn) = listener.accept_timeout(Duration::ZERO) {
                    clients.push(conn);
                }
                continue;
            }
            let client = &mut clients[index - 1];
            loop {
                match client.try_recv::<Request>() {
                    Ok(request) => {
                        let reply = handle(&mut objects, &mut next_id, request);
                        if client.send(&reply).is_err() {
                            gone.push(index - 1);
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    // Gone, or garbage: either way it is dropped.
                    Err(_) => {
                        gone.push(index - 1);
                        break;
                    }
                }
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for index in gone.into_iter().rev() {
            clients.swap_remove(index);
        }
    }
}

fn handle(objects: &mut HashMap<u64, Object>, next_id: &mut u64, request: Request) -> Reply {
    match request {
        Request::Create(Kind::Namespace | Kind::Dict) => {
            let id = *next_id;
            *next_id += 1;
            objects.insert(id, Object::Map(BTreeMap::new()));
            Reply::Created(id)
        }
        Request::On { id, op } => match objects.get_mut(&id) {
            Some(Object::Map(map)) => apply(map, op),
            None => Reply::Error(format!("no object {id}")),
        },
        Request::Batch(requests) if requests.len() > MAX_BATCH => {
            Reply::Error(format!("a batch holds at most {MAX_BATCH} requests"))
        }
        Request::Batch(requests) => Reply::Batch(
            requests
                .into_iter()
                .map(|r| match r {
                    Request::Batch(_) => Reply::Error("batches do not nest".into()),
                    r => handle(objects, next_id, r),
                })
                .collect(),
        ),
    }
}

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: Op) -> Reply {
    match op {
        Op::Get(key) => Reply::Value(map.get(&key).cloned()),
        Op::Set(key, value) => {
            map.insert(key, value);
            Reply::Done
        }
        Op::Pop(key) => Reply::Value(map.remove(&key)),
        Op::Contains(key) => Reply::Bool(map.contains_key(&key)),
        Op::Len => Reply::Len(map.len() as u64),
        Op::Keys => Reply::Keys(map.keys().cloned().collect()),
        Op::Items => Reply::Items(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Op::Clear => {
            map.clear();
            Reply::Done
        }
        Op::FetchAdd(key, delta) => {
            let now = match map.get(&key) {
                None => 0,
                Some(bytes) => match postcard::from_bytes::<i64>(bytes) {
                    Ok(n) => n,
                    Err(_) => return Reply::Error("the value there is not an i64".into()),
                },
            };
            let new = now.wrapping_add(delta);
            match postcard::to_allocvec(&new) {
                Ok(bytes) => {
                    map.insert(key, bytes);
                    Reply::Int(new)
                }
                Err(e) => Reply::Error(e.to_string()),
            }
        }
    }
}
