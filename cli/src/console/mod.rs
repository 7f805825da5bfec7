//! The console: a read-only inspector in the browser (`terima serve`'s own
//! loopback address, and `terima console`).

pub mod recent;
