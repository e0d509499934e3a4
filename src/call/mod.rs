//! The vocabulary every stage shares: who is calling ([`Caller`]), what a
//! call is about and what policies decided ([`Target`], [`Query`],
//! [`Decision`], [`Gate`]), why a call failed ([`CallError`]), what a
//! kind of call is ([`CallKind`], [`CallContext`]), what it gives back
//! ([`Reply`]), and the view of its payload that inspectors read and
//! rewrite ([`Part`], [`Inspect`]).

mod caller;
mod error;
mod kind;
mod payload;
mod policy;
mod reply;

pub use caller::{Caller, Credential};
pub use error::{CallError, Fault, NotAdmitted, Rejection};
pub use kind::{CallContext, CallId, CallKind, Cleared, Confirmation, PolicyQuestion};
pub use payload::{Channel, Gathered, Hold, Inspect, Inspected, Noted, Part, Report};
pub use policy::{Action, Annotations, Decision, Gate, ModelRequest, Query, Target};
pub use reply::{NeverStreams, NoStream, Reply};
