//! The vocabulary every stage shares: who is calling ([`Caller`]), what a
//! call is about and what policies decided ([`Target`], [`Query`],
//! [`Decision`], [`Gate`]), and why a call failed ([`CallError`]).

mod caller;
mod error;
mod policy;

pub use caller::{Caller, Credential};
pub use error::{CallError, Fault, NotAdmitted};
pub use policy::{Action, Annotations, Decision, Gate, Query, Target};
