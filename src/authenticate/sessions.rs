//! MCP sessions belong to whoever opened them: a request that names a
//! session opened by another caller gets the same 404 as an unknown session
//! (so a leaked or guessed session id is worth nothing, and says nothing).

use crate::util::sync::LockExt;
use std::collections::HashMap;
use std::sync::Mutex;

/// Session id → the subject that opened it, and whether its client said
/// at `initialize` that it takes elicitation (the fast lane asks users to
/// confirm calls only then).
pub struct SessionOwners {
    owners: Mutex<HashMap<String, Opened>>,
    capacity: usize,
}

struct Opened {
    subject: String,
    elicits: bool,
}

/// What to do with a request naming a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    /// The caller opened it (or nobody is recorded: it is claimed now).
    Theirs,
    /// Someone else's: answer as if it did not exist.
    Foreign,
}

impl SessionOwners {
    /// Remembers up to `capacity` sessions; beyond that, sessions rmcp no
    /// longer knows are forgotten first (see [`Self::prune`]).
    pub fn new(capacity: usize) -> Self {
        Self {
            owners: Mutex::default(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Opened>> {
        self.owners.locked()
    }

    /// Check (or claim) `session` for `subject`.
    pub fn check(&self, session: &str, subject: &str) -> Ownership {
        let mut owners = self.lock();
        match owners.get(session) {
            Some(owner) if owner.subject == subject => Ownership::Theirs,
            Some(_) => Ownership::Foreign,
            None => {
                if owners.len() < self.capacity {
                    let subject = subject.to_string();
                    owners.insert(
                        session.to_string(),
                        Opened {
                            subject,
                            elicits: false,
                        },
                    );
                }
                Ownership::Theirs
            }
        }
    }

    /// Record the opener of a new session, and whether its client takes
    /// elicitation.
    pub fn opened(&self, session: &str, subject: &str, elicits: bool) {
        let mut owners = self.lock();
        if owners.len() < self.capacity {
            let subject = subject.to_string();
            owners.insert(session.to_string(), Opened { subject, elicits });
        }
    }

    /// Whether the client of `session` said it takes elicitation.
    pub fn elicits(&self, session: &str) -> bool {
        self.lock().get(session).is_some_and(|o| o.elicits)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget sessions that are gone.
    pub fn prune(&self, alive: impl Fn(&str) -> bool) {
        self.lock().retain(|session, _| alive(session));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_belong_to_their_opener() {
        let owners = SessionOwners::new(2);
        owners.opened("s1", "alice", true);
        assert!(owners.elicits("s1"));
        assert_eq!(owners.check("s1", "alice"), Ownership::Theirs);
        assert_eq!(owners.check("s1", "bob"), Ownership::Foreign);
        // Unknown to us (opened before a restart of this map): claimed.
        assert_eq!(owners.check("s2", "bob"), Ownership::Theirs);
        assert_eq!(owners.check("s2", "alice"), Ownership::Foreign);
        assert!(!owners.elicits("s2"), "claimed, not seen opening");
        // At the bound nothing more is recorded until pruned.
        owners.opened("s3", "carol", false);
        assert_eq!(owners.len(), 2);
        owners.prune(|s| s != "s1");
        owners.opened("s3", "carol", false);
        assert_eq!(owners.check("s3", "dave"), Ownership::Foreign);
    }
}
