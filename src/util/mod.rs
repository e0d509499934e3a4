//! The ground floor: small tools every other module may use. Nothing here
//! imports a module of toolgate's own.

pub mod cases;
pub mod dates;
pub mod digest;
pub mod html;
pub mod json;
pub mod signal;
pub mod sync;
pub mod trace;
