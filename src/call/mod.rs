//! The vocabulary every stage shares: who is calling ([`Caller`]), what a
//! call is about and what policies decided ([`Target`], [`Query`],
//! [`Decision`], [`Gate`]), why a call failed ([`CallError`]), and what a
//! kind of call is ([`CallKind`], [`CallContext`]).

mod caller;
mod error;
mod kind;
mod policy;

pub use caller::{Caller, Credential};
pub use error::{CallError, Fault, NotAdmitted, Rejection};
pub use kind::{CallContext, CallId, CallKind, Cleared, Confirmation, PolicyQuestion};
pub use policy::{Action, Annotations, Decision, Gate, Query, Target};
