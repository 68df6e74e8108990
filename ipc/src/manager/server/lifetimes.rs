//! Who holds proxies to which objects, so that an object nobody can reach
//! any more is freed, as Python's manager frees one when its last proxy is
//! gone.
//!
//! Only objects made anonymously (`Create`) are counted: a named object
//! lives until it is deleted, a nested one as long as its key. References
//! belong to a client *process*, named by the token it announces on each
//! of its connections (one per thread), so a thread that ends, or a
//! connection the server drops for idleness, takes nothing with it. A
//! process's references go when it is gone: for a local process, once its
//! last connection closed and its pid is dead (a zombie counts as dead);
//! for a remote one, a grace period after its last connection closed. A
//! connection that announced no token holds its references itself, until
//! it closes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::step::ClientId;

/// A client process, as it names itself.
pub(super) type Token = u64;

/// The most objects one process may hold references to (as many as the
/// manager keeps).
const MAX_REFS: usize = 1 << 20;

struct Owner {
    /// Its references, by object.
    refs: HashMap<u64, u32>,
    /// Its connections open now.
    connections: u32,
    /// Its pid, for a local process (from the socket's credentials).
    pid: Option<u32>,
    /// It announced itself: a process, not one connection.
    announced: bool,
    /// Since when it has no connection.
    orphaned_since: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Lifetimes {
    owner_of: HashMap<ClientId, Token>,
    owners: HashMap<Token, Owner>,
    /// Every reference to each counted object, all owners together.
    counts: HashMap<u64, u64>,
}

/// The token of a connection that announced none (the top bit set, so
/// that it never meets an announced one by chance).
fn own_token(client: ClientId) -> Token {
    client | 1 << 63
}

impl Lifetimes {
    /// `client` says it belongs to process `token` (whose pid the socket
    /// says, if local). Once per connection.
    pub fn announce(
        &mut self,
        client: ClientId,
        token: Token,
        pid: Option<u32>,
    ) -> Result<(), String> {
        if self.owner_of.contains_key(&client) {
            return Err("this connection's owner is known already".into());
        }
        let token = token & !(1 << 63);
        let owner = self.owners.entry(token).or_insert_with(|| Owner {
            refs: HashMap::new(),
            connections: 0,
            pid,
            announced: true,
            orphaned_since: None,
        });
        // A token is only as good as the process that shows it: another
        // local process claiming it cannot take over its references.
        if owner.pid.is_some() && pid.is_some() && owner.pid != pid && owner.connections > 0 {
            return Err("that owner is another process".into());
        }
        owner.pid = pid.or(owner.pid);
        owner.connections += 1;
        owner.orphaned_since = None;
        self.owner_of.insert(client, token);
        Ok(())
    }

    /// The owner `client` holds references for (its own, if it announced none).
    fn owner(&mut self, client: ClientId) -> Token {
        if let Some(&token) = self.owner_of.get(&client) {
            return token;
        }
        let token = own_token(client);
        self.owners.insert(
            token,
            Owner {
                refs: HashMap::new(),
                connections: 1,
                pid: None,
                announced: false,
                orphaned_since: None,
            },
        );
        self.owner_of.insert(client, token);
        token
    }

    /// Object `id` was just made by `client`: counted, with its reference.
    pub fn made(&mut self, client: ClientId, id: u64) {
        self.counts.insert(id, 0);
        // A first reference always fits: the object was just admitted.
        let _ = self.incref(client, id);
    }

    /// Whether `id` is counted (made anonymously, not yet freed).
    pub fn counted(&self, id: u64) -> bool {
        self.counts.contains_key(&id)
    }

    /// One more reference from `client`'s process (an object that is not
    /// counted needs none: nothing happens).
    pub fn incref(&mut self, client: ClientId, id: u64) -> Result<(), String> {
        if !self.counted(id) {
            return Ok(());
        }
        let token = self.owner(client);
        let Some(owner) = self.owners.get_mut(&token) else {
            return Ok(());
        };
        if owner.refs.len() >= MAX_REFS && !owner.refs.contains_key(&id) {
            return Err(format!(
                "a process holds references to at most {MAX_REFS} objects"
            ));
        }
        let mine = owner.refs.entry(id).or_default();
        *mine = mine.saturating_add(1);
        if let Some(total) = self.counts.get_mut(&id) {
            *total = total.saturating_add(1);
        }
        Ok(())
    }

    /// One reference fewer from `client`'s process: whether that was the
    /// object's last (it is to be freed). A process that holds none gives
    /// nothing back.
    pub fn decref(&mut self, client: ClientId, id: u64) -> bool {
        let token = self.owner(client);
        let Some(owner) = self.owners.get_mut(&token) else {
            return false;
        };
        let Some(mine) = owner.refs.get_mut(&id) else {
            return false;
        };
        *mine -= 1;
        if *mine == 0 {
            owner.refs.remove(&id);
        }
        self.release(id, 1)
    }

    /// Takes `n` references off `id`'s total: whether none is left.
    fn release(&mut self, id: u64, n: u64) -> bool {
        match self.counts.get_mut(&id) {
            Some(total) => {
                *total = total.saturating_sub(n);
                *total == 0
            }
            None => false,
        }
    }

    /// `id` is freed: it is counted no more.
    pub fn forget(&mut self, id: u64) {
        self.counts.remove(&id);
    }

    /// `client`'s connection closed: the objects whose last references
    /// went with it.
    pub fn client_gone(&mut self, client: ClientId, now: Instant) -> Vec<u64> {
        let Some(token) = self.owner_of.remove(&client) else {
            return Vec::new();
        };
        let Some(owner) = self.owners.get_mut(&token) else {
            return Vec::new();
        };
        owner.connections = owner.connections.saturating_sub(1);
        if owner.connections > 0 {
            return Vec::new();
        }
        let gone = !owner.announced || owner.pid.is_some_and(|pid| !alive(pid));
        if gone {
            return self.drop_owner(token);
        }
        owner.orphaned_since = Some(now);
        Vec::new()
    }

    /// Processes with no connection: a local one whose pid is dead, a
    /// remote one past `grace`, give their references back. The objects
    /// whose last references went.
    pub fn sweep(&mut self, now: Instant, grace: Duration) -> Vec<u64> {
        let done: Vec<Token> = self
            .owners
            .iter()
            .filter(|(_, o)| {
                o.orphaned_since.is_some_and(|since| match o.pid {
                    Some(pid) => !alive(pid),
                    None => now.saturating_duration_since(since) >= grace,
                })
            })
            .map(|(&t, _)| t)
            .collect();
        done.into_iter().flat_map(|t| self.drop_owner(t)).collect()
    }

    fn drop_owner(&mut self, token: Token) -> Vec<u64> {
        let Some(owner) = self.owners.remove(&token) else {
            return Vec::new();
        };
        owner
            .refs
            .into_iter()
            .filter(|&(id, n)| self.release(id, u64::from(n)))
            .map(|(id, _)| id)
            .collect()
    }

    /// Whether `client` is a connection that announced no process and
    /// holds references: dropping it would free them (the server does not
    /// drop such a client for idleness or to make room; an announced
    /// process's references outlive its connections).
    pub fn connection_holds_refs(&self, client: ClientId) -> bool {
        self.owner_of
            .get(&client)
            .and_then(|t| self.owners.get(t))
            .is_some_and(|o| !o.refs.is_empty() && !o.announced)
    }
}

/// Whether process `pid` is still running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_reference_of_the_last_process_frees() {
        let mut l = Lifetimes::default();
        let now = Instant::now();
        let me = std::process::id();
        l.announce(1, 7, Some(me)).unwrap();
        l.announce(2, 7, Some(me)).unwrap();
        l.made(1, 100);
        l.incref(2, 100).unwrap();
        // Two references of one process, from two of its threads.
        assert!(!l.decref(1, 100));
        // A thread's connection closes: the process lives, its refs stay.
        assert!(l.client_gone(1, now).is_empty());
        assert!(l.decref(2, 100), "the last reference");
        // A process that holds nothing gives nothing back.
        l.made(2, 101);
        l.announce(3, 8, Some(me)).unwrap();
        assert!(!l.decref(3, 101));
        assert!(l.counted(101));
    }

    #[test]
    fn a_connection_without_a_token_holds_until_it_closes() {
        let mut l = Lifetimes::default();
        l.made(5, 200);
        l.made(5, 201);
        l.incref(6, 201).unwrap();
        let mut freed = l.client_gone(5, Instant::now());
        freed.sort();
        assert_eq!(freed, [200]);
        assert_eq!(l.client_gone(6, Instant::now()), [201]);
    }

    #[test]
    fn a_dead_local_process_and_a_silent_remote_one_give_back() {
        let mut l = Lifetimes::default();
        let now = Instant::now();
        // No process has pid 0x7fff_fff0 here: dead.
        l.announce(1, 9, Some(0x7fff_fff0)).unwrap();
        l.made(1, 300);
        assert_eq!(l.client_gone(1, now), [300]);
        // A remote process: kept for the grace period, then given back.
        l.announce(2, 10, None).unwrap();
        l.made(2, 301);
        assert!(l.client_gone(2, now).is_empty());
        assert!(l.sweep(now, Duration::from_secs(60)).is_empty());
        assert_eq!(
            l.sweep(now + Duration::from_secs(61), Duration::from_secs(60)),
            [301]
        );
    }
}
