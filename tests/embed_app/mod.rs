//! The MiniLM example's modules (`examples/embed/`), compiled into the tests that drive them, as
//! the example's `main.rs` declares them.
#![allow(dead_code)]

#[path = "../../examples/embed/bert.rs"]
pub mod bert;
#[path = "../../examples/embed/config.rs"]
pub mod config;
#[path = "../../examples/embed/cpu.rs"]
pub mod cpu;
#[path = "../../examples/embed/forward.rs"]
pub mod forward;
#[path = "../../examples/embed/ops.rs"]
pub mod ops;
#[path = "../../examples/embed/tokens.rs"]
pub mod tokens;
#[path = "../../examples/embed/weights.rs"]
pub mod weights;
